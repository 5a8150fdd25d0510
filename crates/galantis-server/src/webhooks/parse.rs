//! Small parsers for webhook payload fields.

use chrono::DateTime;
use galantis_core::phone::InvalidPhone;
use galantis_core::{CountryCode, PhoneE164};
use serde_json::Value;

/// RFC 3339 (Shopify's `updated_at`) to epoch milliseconds.
pub fn time_ms(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp_millis())
}

/// Shopify's comma-separated tags (or an array) to a list.
pub fn tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A decimal money string ("149.00") to hundredths, exactly.
pub fn cents(v: Option<&Value>) -> Option<i64> {
    let s = match v? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let s = s.trim();
    let (neg, s) = s.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, s));
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut frac2: String = frac.chars().take(2).collect();
    while frac2.len() < 2 {
        frac2.push('0');
    }
    let frac: i64 = frac2.parse().ok()?;
    let v = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if neg { -v } else { v })
}

pub fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A phone as stored: (E.164 if valid, raw, status).
pub fn phone(raw: Option<&str>) -> (Option<String>, Option<String>, Option<&'static str>) {
    phone_in(raw, None)
}

/// A phone as stored, a national-format one read as dialled in `country`
/// (the address's, then the customer's: whatever the payload gives).
pub fn phone_in(
    raw: Option<&str>,
    country: Option<CountryCode>,
) -> (Option<String>, Option<String>, Option<&'static str>) {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return (None, None, None);
    };
    match PhoneE164::parse_with_country(raw, country) {
        Ok(p) => (
            Some(p.as_str().to_owned()),
            Some(raw.to_owned()),
            Some("valid"),
        ),
        Err(InvalidPhone::MissingCallingCode) => {
            (None, Some(raw.to_owned()), Some("missing_calling_code"))
        }
        Err(InvalidPhone::Malformed) => (None, Some(raw.to_owned()), Some("invalid")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(cents(Some(&json!("149.00"))), Some(14900));
        assert_eq!(cents(Some(&json!("149.5"))), Some(14950));
        assert_eq!(cents(Some(&json!("0.07"))), Some(7));
        assert_eq!(cents(Some(&json!("1500"))), Some(150000));
        assert_eq!(cents(Some(&json!(12.25))), Some(1225));
        assert_eq!(cents(Some(&json!("abc"))), None);
    }

    #[test]
    fn tags_and_times() {
        assert_eq!(
            tags(Some(&json!("vip, newsletter,"))),
            vec!["vip", "newsletter"]
        );
        assert_eq!(
            time_ms(Some(&json!("2025-01-15T10:00:00-05:00"))),
            Some(1_736_953_200_000)
        );
        assert_eq!(phone(Some("1234567")).2, Some("missing_calling_code"));
        assert_eq!(
            phone(Some("+52 55 1234 5678")).0.as_deref(),
            Some("+525512345678")
        );
        assert_eq!(phone(Some("+52155500")).2, Some("invalid"));
        let ca = CountryCode::parse("CA").ok();
        assert_eq!(
            phone_in(Some("613-555-0123"), ca).0.as_deref(),
            Some("+16135550123")
        );
    }
}
