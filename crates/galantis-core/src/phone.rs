//! `PhoneE164`: a phone number in E.164 form, the only form WhatsApp accepts.
//!
//! Numbers that come from people (Shopify payloads, CSV files, the API, the
//! storefront) are validated per country with libphonenumber's metadata (the
//! `phonenumber` crate): a number of the right shape can still be one no
//! telephone network has ever assigned (`+52155500`), and messaging it only
//! costs the merchant a failed send. Numbers Galantis already holds (stored
//! contacts, job payloads) and Meta's `wa_id` are shape-checked only: Meta
//! vouches that a WhatsApp account answers at a `wa_id`, and a metadata update
//! must never make a stored contact unreachable.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;
use serde::{Deserialize, Serialize};

/// `+` then 8 to 15 digits, the first not zero. Input may contain spaces, dots,
/// dashes and parentheses, which are dropped. A number without a leading `+`
/// (or `00`) is resolved only with a country given by its source (an address
/// country, the customer's country, the shop's): without one it has no
/// country calling code and is refused, since guessing a country would
/// message the wrong person.
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

/// An ISO 3166-1 alpha-2 country that libphonenumber has metadata for, in
/// upper case (`MX`, `CA`, `GB`): the country a national-format number is
/// dialled in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode(Id);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a two-letter country code (ISO 3166-1, e.g. MX)")]
pub struct InvalidCountry(pub String);

impl CountryCode {
    pub fn parse(input: &str) -> Result<Self, InvalidCountry> {
        let t = input.trim();
        if t.len() != 2 || !t.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(InvalidCountry(t.to_owned()));
        }
        Id::from_str(&t.to_ascii_uppercase())
            .map(Self)
            .map_err(|_| InvalidCountry(t.to_owned()))
    }

    /// The first of several candidates that is a country: payloads give
    /// countries in order of preference and any of them may be absent or junk.
    pub fn first_of<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Option<Self> {
        candidates
            .into_iter()
            .flatten()
            .find_map(|c| Self::parse(c).ok())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The digits of `input` after dropping the separators people type, or `None`
/// when anything else is in it (letters, an extension).
fn separators_dropped(input: &str) -> Option<String> {
    let mut digits = String::with_capacity(16);
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    Some(digits)
}

fn shape_ok(digits: &str) -> bool {
    (8..=15).contains(&digits.len()) && !digits.starts_with('0')
}

/// libphonenumber's verdict on international digits (no `+`).
fn valid(digits: &str) -> bool {
    phonenumber::parse(None, format!("+{digits}")).is_ok_and(|n| phonenumber::is_valid(&n))
}

/// Forms of one number that people and WhatsApp still use although the
/// numbering plan dropped them, mapped to the current E.164 form, and only
/// when the current form is valid: Mexico's mobile `1` after `52` (abolished
/// in 2019, still in Meta's `wa_id` for older accounts) and Brazil's mobiles
/// without the ninth digit (added 2012–2016). Argentina's mobile `9` after
/// `54` is part of the E.164 form itself (libphonenumber turns a national
/// `15` into it), so there is nothing to repair.
fn current_form(digits: &str) -> Option<String> {
    let repaired = if let Some(rest) = digits.strip_prefix("521").filter(|r| r.len() == 10) {
        format!("52{rest}")
    } else if let Some(rest) = digits.strip_prefix("55").filter(|r| r.len() == 10) {
        let (area, subscriber) = rest.split_at(2);
        if !matches!(subscriber.as_bytes()[0], b'6'..=b'9') {
            return None;
        }
        format!("55{area}9{subscriber}")
    } else {
        return None;
    };
    valid(&repaired).then_some(repaired)
}

impl PhoneE164 {
    /// A number typed by a person, which must carry its country calling code.
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        Self::parse_with_country(input, None)
    }

    /// A number typed by a person; a national-format number (no `+` or `00`)
    /// is read as dialled in `country`. The number must be valid for the
    /// country it ends up in.
    pub fn parse_with_country(
        input: &str,
        country: Option<CountryCode>,
    ) -> Result<Self, InvalidPhone> {
        let trimmed = input.trim();
        let international = trimmed
            .strip_prefix('+')
            .or_else(|| trimmed.strip_prefix("00"));
        let digits = separators_dropped(international.unwrap_or(trimmed))
            .filter(|d| !d.is_empty())
            .ok_or(InvalidPhone::Malformed)?;
        let digits = match (international, country) {
            (Some(_), _) => digits,
            (None, None) => return Err(InvalidPhone::MissingCallingCode),
            (None, Some(country)) => {
                let n = phonenumber::parse(Some(country.0), &digits)
                    .map_err(|_| InvalidPhone::Malformed)?;
                let e164 = n.format().mode(phonenumber::Mode::E164).to_string();
                e164.trim_start_matches('+').to_owned()
            }
        };
        if !shape_ok(&digits) {
            return Err(InvalidPhone::Malformed);
        }
        if valid(&digits) {
            return Ok(Self(format!("+{digits}")));
        }
        current_form(&digits)
            .map(|d| Self(format!("+{d}")))
            .ok_or(InvalidPhone::Malformed)
    }

    /// The number behind Meta's `wa_id` (digits, no `+`), in the form a
    /// merchant's store holds for the same person, so one person is one
    /// contact: Mexico's legacy `1` removed, Brazil's ninth digit added.
    /// Otherwise shape-checked only, since Meta vouches for it.
    pub fn from_wa_id(wa_id: &str) -> Result<Self, InvalidPhone> {
        let digits = wa_id.trim().trim_start_matches('+');
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !shape_ok(digits) {
            return Err(InvalidPhone::Malformed);
        }
        let digits = current_form(digits)
            .filter(|_| !valid(digits))
            .unwrap_or_else(|| digits.to_owned());
        Ok(Self(format!("+{digits}")))
    }

    /// A number Galantis already accepted (a stored contact, a job payload):
    /// shape-checked only, so that newer metadata cannot strand it.
    pub fn stored(e164: &str) -> Result<Self, InvalidPhone> {
        let digits = e164.strip_prefix('+').ok_or(InvalidPhone::Malformed)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !shape_ok(digits) {
            return Err(InvalidPhone::Malformed);
        }
        Ok(Self(e164.to_owned()))
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
    // Serialized phones are Galantis's own output (job payloads, events).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::stored(&s)
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

    fn cc(c: &str) -> Option<CountryCode> {
        Some(CountryCode::parse(c).unwrap())
    }

    /// (input, country, expected E.164 or error). Numbers are of real formats
    /// that libphonenumber's metadata accepts.
    #[test]
    fn validates_per_country() {
        use InvalidPhone::{Malformed, MissingCallingCode};
        let table: &[(&str, Option<&str>, Result<&str, InvalidPhone>)] = &[
            // The right shape, but too short for Mexico.
            ("+52155500", None, Err(Malformed)),
            ("+52 (55) 1234-5678", None, Ok("+525512345678")),
            // Mexico's abolished mobile `1` still reaches the same person.
            ("+52 1 55 1234 5678", None, Ok("+525512345678")),
            ("55 1234 5678", Some("MX"), Ok("+525512345678")),
            // Area code 123 is not Mexican.
            ("+521234567890", None, Err(Malformed)),
            // Canada in national format, with the country the payload gives.
            ("613-555-0123", Some("CA"), Ok("+16135550123")),
            ("(613) 555-0123", Some("ca"), Ok("+16135550123")),
            ("+1 613 555 0123", Some("GB"), Ok("+16135550123")),
            // 555 is no North American area code.
            ("555-555-5555", Some("CA"), Err(Malformed)),
            ("+15555555555", None, Err(Malformed)),
            ("613-555-0123", None, Err(MissingCallingCode)),
            // Argentina: a national mobile (`15`) gets its international `9`.
            ("011 15 2345-6789", Some("AR"), Ok("+5491123456789")),
            ("+54 9 11 2345-6789", None, Ok("+5491123456789")),
            // Brazil, with and without the ninth digit.
            ("+55 11 98765-4321", None, Ok("+5511987654321")),
            ("+55 11 8765-4321", None, Ok("+5511987654321")),
            ("(11) 98765-4321", Some("BR"), Ok("+5511987654321")),
            // United Kingdom in national format, and international with `00`.
            ("020 7946 0958", Some("GB"), Ok("+442079460958")),
            ("0044 20 7946 0958", None, Ok("+442079460958")),
            ("07700 900123", Some("GB"), Err(Malformed)),
            ("", None, Err(Malformed)),
            ("+", None, Err(Malformed)),
            ("+12", None, Err(Malformed)),
            ("+0123456789", None, Err(Malformed)),
            ("+1234567890123456", None, Err(Malformed)),
            ("+12345abc89", None, Err(Malformed)),
            ("abc", None, Err(Malformed)),
            ("555 0123 ext 4", Some("CA"), Err(Malformed)),
        ];
        for (input, country, expected) in table {
            let got = PhoneE164::parse_with_country(input, country.and_then(cc));
            assert_eq!(
                got.as_ref().map(PhoneE164::as_str).map_err(Clone::clone),
                expected.clone(),
                "{input} with {country:?}"
            );
        }
    }

    #[test]
    fn wa_ids_map_to_the_number_the_store_holds() {
        for (wa_id, expected) in [
            ("5215512345678", "+525512345678"),
            ("525512345678", "+525512345678"),
            ("551187654321", "+5511987654321"),
            ("5511987654321", "+5511987654321"),
            ("5491123456789", "+5491123456789"),
            ("16135550123", "+16135550123"),
            // Meta's own test numbers are not in libphonenumber, but Meta
            // vouches for them.
            ("15550001111", "+15550001111"),
        ] {
            assert_eq!(PhoneE164::from_wa_id(wa_id).unwrap().as_str(), expected);
        }
        for bad in ["", "12", "0123456789", "52 1234", "+"] {
            assert!(PhoneE164::from_wa_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_numbers_are_shape_checked_only() {
        assert!(PhoneE164::stored("+15550001111").is_ok());
        let back: PhoneE164 = serde_json::from_str("\"+521234567890\"").unwrap();
        assert_eq!(back.as_str(), "+521234567890");
        for bad in ["15550001111", "+0123456789", "+1 555", "+12"] {
            assert!(PhoneE164::stored(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries() {
        assert_eq!(CountryCode::parse(" mx ").unwrap().as_str(), "MX");
        assert!(CountryCode::parse("XX").is_err());
        assert!(CountryCode::parse("MEX").is_err());
        assert_eq!(
            CountryCode::first_of([None, Some(""), Some("Canada"), Some("CA")]),
            cc("CA")
        );
    }

    #[test]
    fn debug_masks_the_number() {
        let p = PhoneE164::parse("+525512345678").unwrap();
        assert!(!format!("{p:?}").contains("1234567"));
    }
}
