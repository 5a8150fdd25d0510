//! Back in stock: subscription statuses, the storefront widget's settings
//! (typed, parsed from JSON with every error naming its path), and the
//! attribution window of the analytics.
//!
//! A subscription is per contact and Shopify variant; at most one is open
//! (`PENDING` or `ACTIVE`) per pair. `PENDING` waits for the contact to
//! confirm on WhatsApp (confirmation mode `whatsapp`); `ACTIVE` is what a
//! restock notifies; `NOTIFIED` and `CANCELLED` are final.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Orders by the notified contact containing the notified variant within
/// this many days of the notification count as converted (design.md §4).
pub const ATTRIBUTION_DAYS: i64 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionStatus {
    Pending,
    Active,
    Notified,
    Cancelled,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 4] = [
        SubscriptionStatus::Pending,
        SubscriptionStatus::Active,
        SubscriptionStatus::Notified,
        SubscriptionStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Pending => "PENDING",
            SubscriptionStatus::Active => "ACTIVE",
            SubscriptionStatus::Notified => "NOTIFIED",
            SubscriptionStatus::Cancelled => "CANCELLED",
        }
    }

    /// Open subscriptions: at most one per contact and variant.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Pending | SubscriptionStatus::Active
        )
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("`{s}` is not a subscription status (PENDING, ACTIVE, NOTIFIED, CANCELLED)")
            })
    }
}

/// How a widget subscription becomes `ACTIVE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationMode {
    /// The widget's explicit consent is enough: `ACTIVE` at once.
    #[default]
    None,
    /// `PENDING` until the contact confirms on WhatsApp (unless already
    /// `SUBSCRIBED`).
    Whatsapp,
}

/// Where the widget places its button relative to the add-to-cart form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WidgetPosition {
    #[default]
    BelowAddToCart,
    AboveAddToCart,
    /// A floating button in the bottom-right corner.
    Floating,
}

/// A tenant's widget appearance and confirmation mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetSettings {
    pub button_text: String,
    pub button_color: String,
    pub text_color: String,
    pub position: WidgetPosition,
    pub confirmation_mode: ConfirmationMode,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        Self {
            button_text: "Notify me on WhatsApp".into(),
            button_color: "#25d366".into(),
            text_color: "#ffffff".into(),
            position: WidgetPosition::default(),
            confirmation_mode: ConfirmationMode::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        path: path.to_owned(),
        message: message.into(),
    }
}

const MAX_BUTTON_TEXT: usize = 60;

fn color(v: &Value, path: &str) -> Result<String, SettingsError> {
    let s = v
        .as_str()
        .ok_or_else(|| err(path, "expected a colour string like \"#25d366\""))?;
    let hex = s
        .strip_prefix('#')
        .filter(|h| (h.len() == 6 || h.len() == 3) && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| err(path, format!("`{s}` is not a #rgb or #rrggbb colour")))?;
    Ok(format!("#{}", hex.to_ascii_lowercase()))
}

fn enum_of<T: for<'de> Deserialize<'de>>(
    v: &Value,
    path: &str,
    expected: &str,
) -> Result<T, SettingsError> {
    serde_json::from_value(v.clone()).map_err(|_| err(path, format!("expected one of {expected}")))
}

impl WidgetSettings {
    /// Applies a (partial) JSON object on top of `self`: absent keys keep
    /// their value; unknown keys are refused.
    pub fn merged(&self, patch: &Value) -> Result<Self, SettingsError> {
        let obj = patch
            .as_object()
            .ok_or_else(|| err("$", "expected a JSON object"))?;
        let mut out = self.clone();
        for (k, v) in obj {
            let path = format!("$.{k}");
            match k.as_str() {
                "button_text" => {
                    let s = v.as_str().ok_or_else(|| err(&path, "expected a string"))?;
                    let s = crate::text::check_field(k, s, MAX_BUTTON_TEXT)
                        .map_err(|e| err(&path, e.to_string()))?;
                    out.button_text = s.to_owned();
                }
                "button_color" => out.button_color = color(v, &path)?,
                "text_color" => out.text_color = color(v, &path)?,
                "position" => {
                    out.position =
                        enum_of(v, &path, "below_add_to_cart, above_add_to_cart, floating")?
                }
                "confirmation_mode" => out.confirmation_mode = enum_of(v, &path, "none, whatsapp")?,
                _ => return Err(err(&path, "unknown setting")),
            }
        }
        Ok(out)
    }

    /// Reads stored settings; anything unreadable falls back to defaults key
    /// by key (settings written by this version always read back).
    pub fn from_stored(v: Option<&Value>) -> Self {
        let d = Self::default();
        let Some(obj) = v.and_then(Value::as_object) else {
            return d;
        };
        let mut out = d.clone();
        for (k, v) in obj {
            let one = serde_json::json!({ k.clone(): v.clone() });
            if let Ok(s) = out.merged(&one) {
                out = s;
            }
        }
        out
    }
}

/// Decimal text with at most two decimals → cents; no exponent, no sign.
fn cents(s: &str) -> Option<i64> {
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty()
        || whole.len() > 13
        || !whole.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 2
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    w.checked_mul(100)?.checked_add(f)
}

/// The revenue (cents) of an order's Shopify `line_items` for one variant:
/// price × quantity of its lines; None when no line is for the variant.
pub fn variant_revenue_cents(line_items: &Value, shopify_variant_id: i64) -> Option<i64> {
    let lines = line_items.as_array()?;
    let mut found = false;
    let mut total: i64 = 0;
    for l in lines {
        if l.get("variant_id").and_then(Value::as_i64) != Some(shopify_variant_id) {
            continue;
        }
        found = true;
        let price = match l.get("price") {
            Some(Value::String(s)) => cents(s),
            Some(Value::Number(n)) => cents(&n.to_string()),
            _ => None,
        }
        .unwrap_or(0);
        let qty = l
            .get("quantity")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0);
        total = total.saturating_add(price.saturating_mul(qty));
    }
    found.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_round_trip() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(s.as_str().parse::<SubscriptionStatus>().unwrap(), s);
        }
        assert!("nope".parse::<SubscriptionStatus>().is_err());
        assert!(SubscriptionStatus::Pending.is_open());
        assert!(!SubscriptionStatus::Notified.is_open());
    }

    #[test]
    fn settings_merge_validates_each_field_with_its_path() {
        let d = WidgetSettings::default();
        let s = d
            .merged(&json!({"button_text": " Tell me ", "button_color": "#ABC", "confirmation_mode": "whatsapp"}))
            .unwrap();
        assert_eq!(s.button_text, "Tell me");
        assert_eq!(s.button_color, "#abc");
        assert_eq!(s.confirmation_mode, ConfirmationMode::Whatsapp);
        assert_eq!(s.text_color, d.text_color);
        for (bad, path) in [
            (json!({"button_color": "red"}), "$.button_color"),
            (json!({"position": "top"}), "$.position"),
            (json!({"confirmation_mode": "sms"}), "$.confirmation_mode"),
            (json!({"button_text": ""}), "$.button_text"),
            (json!({"button_text": "x".repeat(61)}), "$.button_text"),
            (json!({"colour": "#fff"}), "$.colour"),
            (json!([1]), "$"),
        ] {
            assert_eq!(d.merged(&bad).unwrap_err().path, path, "{bad}");
        }
    }

    #[test]
    fn revenue_of_a_variant_in_an_order() {
        let lines = json!([
            {"variant_id": 7, "price": "19.90", "quantity": 2},
            {"variant_id": 8, "price": "5.00", "quantity": 1},
            {"variant_id": 7, "price": 3, "quantity": 1}
        ]);
        assert_eq!(variant_revenue_cents(&lines, 7), Some(4280));
        assert_eq!(variant_revenue_cents(&lines, 9), None);
        assert_eq!(variant_revenue_cents(&json!({}), 7), None);
    }

    #[test]
    fn stored_settings_fall_back_key_by_key() {
        let s =
            WidgetSettings::from_stored(Some(&json!({"button_color": "bad", "button_text": "Hi"})));
        assert_eq!(s.button_text, "Hi");
        assert_eq!(s.button_color, WidgetSettings::default().button_color);
        assert_eq!(WidgetSettings::from_stored(None), WidgetSettings::default());
    }
}
