//! `PhoneE164`: a phone number in E.164 form, the only form WhatsApp accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `+` then 8 to 15 digits, the first not zero. Input may contain spaces, dots,
/// dashes and parentheses, which are dropped. A number without a leading `+`
/// (or `00`) has no country calling code and is refused: WhatsApp cannot reach
/// it, and guessing a country would message the wrong person.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneE164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    #[error("the phone number has no country calling code (expected +<country><number>)")]
    MissingCallingCode,
    #[error("the phone number is not a valid E.164 number")]
    Malformed,
}

impl PhoneE164 {
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let trimmed = input.trim();
        let rest = if let Some(r) = trimmed.strip_prefix('+') {
            r
        } else if let Some(r) = trimmed.strip_prefix("00") {
            r
        } else if trimmed.chars().any(|c| c.is_ascii_digit()) {
            return Err(InvalidPhone::MissingCallingCode);
        } else {
            return Err(InvalidPhone::Malformed);
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(InvalidPhone::Malformed),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(InvalidPhone::Malformed);
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`, as Meta's `wa_id` writes them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl TryFrom<String> for PhoneE164 {
    type Error = InvalidPhone;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneE164> for String {
    fn from(p: PhoneE164) -> Self {
        p.0
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneE164 {
    // Phone numbers are personal data: Debug output (which reaches logs) masks them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = &self.0[self.0.len().saturating_sub(2)..];
        write!(f, "PhoneE164(+…{tail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_formatting() {
        assert_eq!(
            PhoneE164::parse("+52 (123) 456-7890").unwrap().as_str(),
            "+521234567890"
        );
        assert_eq!(
            PhoneE164::parse("0044 20 7946 0958").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn refuses_numbers_without_calling_code() {
        assert_eq!(
            PhoneE164::parse("1234567890"),
            Err(InvalidPhone::MissingCallingCode)
        );
    }

    #[test]
    fn refuses_malformed_numbers() {
        for bad in [
            "",
            "+",
            "+12",
            "+0123456789",
            "+1234567890123456",
            "+12345abc89",
            "abc",
        ] {
            assert_eq!(PhoneE164::parse(bad), Err(InvalidPhone::Malformed), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_number() {
        let p = PhoneE164::parse("+521234567890").unwrap();
        assert!(!format!("{p:?}").contains("1234567"));
    }
}
