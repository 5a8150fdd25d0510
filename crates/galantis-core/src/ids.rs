//! Identifiers. All are UUID v7 so they sort by creation time, which keeps
//! B-tree inserts local and makes cursors stable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| InvalidId { what: $what })
            }
        }
    };
}

/// A parse failure for any id type; says which kind of id was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {what} id")]
pub struct InvalidId {
    pub what: &'static str,
}

uuid_id!(
    /// One installed Shopify store: the unit of isolation.
    TenantId,
    "tenant"
);
uuid_id!(
    /// A team member of one tenant.
    MemberId,
    "member"
);
uuid_id!(
    /// An API token of one member.
    TokenId,
    "token"
);

uuid_id!(
    /// A job in the durable queue.
    JobId,
    "job"
);

impl TenantId {
    /// The PostgreSQL schema holding this tenant's tables. Derived from the id
    /// alone (hex digits only), so it is always a safe identifier.
    pub fn schema_name(&self) -> String {
        format!("tenant_{}", self.0.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        assert!("nope".parse::<TenantId>().is_err());
    }

    #[test]
    fn schema_name_is_a_safe_identifier() {
        let name = TenantId::new().schema_name();
        assert!(name.starts_with("tenant_"));
        assert!(name.len() < 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = MemberId::new();
        let b = MemberId::new();
        assert!(a < b);
    }
}
