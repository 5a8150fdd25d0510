//! Abandoned checkouts: when an open checkout counts as abandoned, and what
//! the `CheckoutAbandoned` event carries (recovery URL, line items, total).
//!
//! A checkout with a phone arms a timer (`[automations]
//! checkout_abandoned_after_secs` after the last stored update). Every new
//! version of the checkout moves the due time; completion, deletion, an
//! order with the checkout's token or losing the phone disarm it. When the
//! timer's job runs, [`decide`] looks at the checkout as stored *then* — the
//! job's own schedule is only a hint — and says whether to fire, wait or
//! drop. One event per abandonment episode: an episode is a checkout
//! version (Shopify's `updated_at`), so duplicated or reordered webhooks
//! (which store no new version) and retried jobs never fire twice, while a
//! customer who comes back, changes the checkout and leaves again starts a
//! new episode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of an abandoned checkout, as automations use it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckoutLineItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The variant's own title (`"Red / M"`); `None` for a default variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<i64>,
    #[serde(default)]
    pub quantity: i64,
    /// Unit price as Shopify wrote it (a decimal string, e.g. `"19.90"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl CheckoutLineItem {
    /// Reads Shopify's checkout `line_items` (the REST webhook shape; prices
    /// as strings or numbers). Anything that is not an object is skipped.
    pub fn from_shopify(items: &Value) -> Vec<CheckoutLineItem> {
        items
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i.is_object())
            .map(|i| CheckoutLineItem {
                title: text(i.get("title")).or_else(|| text(i.get("presentment_title"))),
                variant_title: text(i.get("variant_title"))
                    .filter(|t| t != "Default Title")
                    .or_else(|| text(i.get("presentment_variant_title"))),
                variant_id: int(i.get("variant_id")),
                product_id: int(i.get("product_id")),
                quantity: int(i.get("quantity")).unwrap_or(1).max(0),
                price: text(i.get("price")).or_else(|| text(i.get("variant_price"))),
            })
            .collect()
    }
}

/// The checkout as stored when its abandonment timer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbandonmentState {
    pub deleted: bool,
    pub completed: bool,
    pub has_phone: bool,
    /// When the timer is due (epoch ms); `None`: disarmed.
    pub due_at: Option<i64>,
    /// The stored version (Shopify's `updated_at`, epoch ms).
    pub version: Option<i64>,
    /// The version a `CheckoutAbandoned` was already recorded for.
    pub abandoned_version: Option<i64>,
}

/// What the timer does when its job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandonment {
    /// Record `CheckoutAbandoned` for this version.
    Fire { version: i64 },
    /// Not due yet (the checkout changed after the job was scheduled):
    /// run again at this time (epoch ms).
    Wait { until: i64 },
    /// Nothing to do, and why.
    Drop(&'static str),
}

/// Decides at `now` (epoch ms); see the module doc.
pub fn decide(s: Option<&AbandonmentState>, now: i64) -> Abandonment {
    let Some(s) = s else {
        return Abandonment::Drop("the checkout no longer exists");
    };
    if s.deleted {
        return Abandonment::Drop("the checkout was deleted");
    }
    if s.completed {
        return Abandonment::Drop("the checkout was completed");
    }
    if !s.has_phone {
        return Abandonment::Drop("the checkout has no phone number");
    }
    let (Some(due), Some(version)) = (s.due_at, s.version) else {
        return Abandonment::Drop("the timer was disarmed");
    };
    if s.abandoned_version == Some(version) {
        return Abandonment::Drop("already recorded for this checkout version");
    }
    if due > now {
        return Abandonment::Wait { until: due };
    }
    Abandonment::Fire { version }
}

/// The variables an automation's ActionNode can map from a
/// `CheckoutAbandoned` event: `checkout.recovery_url`,
/// `checkout.total_price`, `checkout.currency`, `checkout.product_name`
/// (the first line's title), `checkout.item_count` (units) and
/// `checkout.items` (`"2 × Tee (M), 1 × Mug"`). Absent data is absent, so
/// the mapping's fallback applies.
pub fn variables(
    recovery_url: Option<&str>,
    total_price: Option<&str>,
    currency: Option<&str>,
    items: &[CheckoutLineItem],
) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    let mut put = |k: &'static str, s: Option<&str>| {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            v.insert(k, s.to_owned());
        }
    };
    put("checkout.recovery_url", recovery_url);
    put("checkout.total_price", total_price);
    put("checkout.currency", currency);
    put(
        "checkout.product_name",
        items.iter().find_map(|i| i.title.as_deref()),
    );
    if !items.is_empty() {
        let units: i64 = items.iter().map(|i| i.quantity).sum();
        v.insert("checkout.item_count", units.to_string());
        let listed: Vec<String> = items
            .iter()
            .filter_map(|i| {
                let title = i.title.as_deref()?;
                Some(match &i.variant_title {
                    Some(vt) => format!("{} × {title} ({vt})", i.quantity),
                    None => format!("{} × {title}", i.quantity),
                })
            })
            .collect();
        if !listed.is_empty() {
            v.insert("checkout.items", listed.join(", "));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(due: i64) -> AbandonmentState {
        AbandonmentState {
            deleted: false,
            completed: false,
            has_phone: true,
            due_at: Some(due),
            version: Some(7),
            abandoned_version: None,
        }
    }

    #[test]
    fn fires_once_per_version_and_only_when_due() {
        assert_eq!(
            decide(Some(&open(100)), 99),
            Abandonment::Wait { until: 100 }
        );
        assert_eq!(
            decide(Some(&open(100)), 100),
            Abandonment::Fire { version: 7 }
        );
        let fired = AbandonmentState {
            abandoned_version: Some(7),
            ..open(100)
        };
        assert!(matches!(decide(Some(&fired), 500), Abandonment::Drop(_)));
        // A newer version after an abandonment is a new episode.
        let again = AbandonmentState {
            version: Some(8),
            ..fired
        };
        assert_eq!(decide(Some(&again), 500), Abandonment::Fire { version: 8 });
    }

    #[test]
    fn closed_checkouts_never_fire() {
        let cases = [
            AbandonmentState {
                completed: true,
                ..open(0)
            },
            AbandonmentState {
                deleted: true,
                ..open(0)
            },
            AbandonmentState {
                has_phone: false,
                ..open(0)
            },
            AbandonmentState {
                due_at: None,
                ..open(0)
            },
        ];
        for c in cases {
            assert!(matches!(decide(Some(&c), 1), Abandonment::Drop(_)), "{c:?}");
        }
        assert!(matches!(decide(None, 1), Abandonment::Drop(_)));
    }

    #[test]
    fn line_items_and_variables_from_a_shopify_checkout() {
        let items = CheckoutLineItem::from_shopify(&json!([
            {"title": "Tee", "variant_title": "M", "variant_id": 11, "product_id": 1,
             "quantity": 2, "price": "19.90"},
            {"title": "Mug", "variant_title": "Default Title", "variant_id": "12",
             "quantity": 1, "price": 7.5},
            "not an item"
        ]));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].variant_title.as_deref(), Some("M"));
        assert_eq!(items[1].variant_title, None);
        assert_eq!(items[1].variant_id, Some(12));
        assert_eq!(items[1].price.as_deref(), Some("7.5"));
        let v = variables(Some("https://s/r"), Some("47.30"), Some("EUR"), &items);
        assert_eq!(v["checkout.recovery_url"], "https://s/r");
        assert_eq!(v["checkout.product_name"], "Tee");
        assert_eq!(v["checkout.item_count"], "3");
        assert_eq!(v["checkout.items"], "2 × Tee (M), 1 × Mug");
        assert!(variables(None, None, None, &[]).is_empty());
    }
}
