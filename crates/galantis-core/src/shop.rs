//! `ShopDomain`: a Shopify store's permanent `*.myshopify.com` domain.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const SUFFIX: &str = ".myshopify.com";

/// A validated, lower-cased `name.myshopify.com` domain. Shopify store names are
/// letters, digits and hyphens; anything else (custom domains, paths, ports,
/// schemes) is refused, because OAuth and webhooks key tenants on this value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShopDomain(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a Shopify store domain: expected STORE.myshopify.com (letters, digits and hyphens)"
)]
pub struct InvalidShopDomain {
    pub input: String,
}

impl ShopDomain {
    pub fn parse(input: &str) -> Result<Self, InvalidShopDomain> {
        let err = || InvalidShopDomain {
            input: input.chars().take(100).collect(),
        };
        let lower = input.trim().to_ascii_lowercase();
        let store = lower.strip_suffix(SUFFIX).ok_or_else(err)?;
        let valid_store = !store.is_empty()
            && store.len() <= 60
            && store
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !store.starts_with('-')
            && !store.ends_with('-');
        if valid_store {
            Ok(Self(lower))
        } else {
            Err(err())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The store handle, e.g. `acme` for `acme.myshopify.com`.
    pub fn store_name(&self) -> &str {
        &self.0[..self.0.len() - SUFFIX.len()]
    }
}

impl FromStr for ShopDomain {
    type Err = InvalidShopDomain;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ShopDomain {
    type Error = InvalidShopDomain;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ShopDomain> for String {
    fn from(d: ShopDomain) -> Self {
        d.0
    }
}

impl fmt::Display for ShopDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShopDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShopDomain({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_store_domains_and_normalises_case() {
        let d = ShopDomain::parse(" Acme-Store.MyShopify.com ").unwrap();
        assert_eq!(d.as_str(), "acme-store.myshopify.com");
        assert_eq!(d.store_name(), "acme-store");
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "acme",
            ".myshopify.com",
            "acme.com",
            "acme.myshopify.com.evil.com",
            "https://acme.myshopify.com",
            "acme.myshopify.com/admin",
            "ac_me.myshopify.com",
            "a.b.myshopify.com",
            "-acme.myshopify.com",
            "acme.myshopify.com:443",
        ] {
            assert!(ShopDomain::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
