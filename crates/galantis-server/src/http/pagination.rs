//! Cursor pagination. Cursors are opaque to clients (base64url of the last
//! row's id); lists are ordered by id, newest first.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::error::AppError;

pub struct Cursor;

impl Cursor {
    pub fn encode(id: impl std::fmt::Display) -> String {
        URL_SAFE_NO_PAD.encode(id.to_string())
    }

    pub fn decode<T: FromStr>(cursor: &str) -> Result<T, AppError> {
        let invalid =
            || AppError::bad_request("invalid_cursor", "the cursor is not one this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        text.parse().map_err(|_| invalid())
    }
}

/// One page: `data` plus the cursor of the next page (absent on the last).
#[derive(Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` was fetched with `limit + 1`; the extra row only tells that
    /// there is a next page.
    pub fn from_rows<I: std::fmt::Display>(
        mut rows: Vec<T>,
        limit: usize,
        id: impl Fn(&T) -> I,
    ) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| Cursor::encode(id(r)))
        } else {
            None
        };
        Self {
            data: rows,
            next_cursor,
        }
    }
}
