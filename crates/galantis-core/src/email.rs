//! `Email`: a team member's or contact's address, lower-cased and sanity-checked.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

impl Email {
    /// One `@`, a non-empty local part, a dotted domain, no spaces, at most
    /// 254 characters. Deliverability is not our concern; typos like a missing
    /// domain are.
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let s = input.trim().to_lowercase();
        let (local, domain) = s.split_once('@').ok_or(InvalidEmail)?;
        let ok = !local.is_empty()
            && s.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok { Ok(Self(s)) } else { Err(InvalidEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    // Personal data: Debug (which reaches logs) shows only the domain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.split_once('@').map(|(_, d)| d).unwrap_or("");
        write!(f, "Email(…@{domain})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        assert_eq!(
            Email::parse(" Ana@Shop.MX ").unwrap().as_str(),
            "ana@shop.mx"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@shop.mx",
            "ana@shop",
            "a b@shop.mx",
            "a@b@c.mx",
            "ana@.mx",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", Email::parse("ana@shop.mx").unwrap()).contains("ana"));
    }
}
