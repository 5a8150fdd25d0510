//! Text columns that hold a core enum or newtype, decoded into it.
//!
//! Core has no sqlx (it is the pure domain), so its types cannot implement
//! `Decode` themselves; this wrapper decodes the text and parses it with the
//! type's `FromStr`, on either engine. A value the type does not know is a
//! decode error, never silently a default: a row with an unknown consent
//! state must not turn into "unknown, may be asked again".

use std::fmt::Display;
use std::str::FromStr;

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

/// A text column parsed into `T` (`Option<Parsed<T>>` for a nullable one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<T> Parsed<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<DB: Database, T> Type<DB> for Parsed<T>
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database, T> Decode<'r, DB> for Parsed<T>
where
    String: Decode<'r, DB>,
    T: FromStr,
    T::Err: Display,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<'r, DB>>::decode(value)?;
        text.parse()
            .map(Parsed)
            .map_err(|e: T::Err| e.to_string().into())
    }
}
