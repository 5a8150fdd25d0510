//! Ready flows (design.md §4 "Recipes"). Each returns the flow JSON (as the
//! API stores it) and its frequency cap; every recipe parses and, with
//! approved templates in every slot, validates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::gate::FrequencyCap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipeKind {
    AbandonedCheckout,
    Welcome,
    VipWinback,
    CrossSell,
    BackInStock,
    OrderConfirmation,
    ShippingUpdate,
}

impl RecipeKind {
    pub const ALL: [RecipeKind; 7] = [
        RecipeKind::AbandonedCheckout,
        RecipeKind::Welcome,
        RecipeKind::VipWinback,
        RecipeKind::CrossSell,
        RecipeKind::BackInStock,
        RecipeKind::OrderConfirmation,
        RecipeKind::ShippingUpdate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecipeKind::AbandonedCheckout => "abandoned_checkout",
            RecipeKind::Welcome => "welcome",
            RecipeKind::VipWinback => "vip_winback",
            RecipeKind::CrossSell => "cross_sell",
            RecipeKind::BackInStock => "back_in_stock",
            RecipeKind::OrderConfirmation => "order_confirmation",
            RecipeKind::ShippingUpdate => "shipping_update",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }

    /// The template slots (`template_ids` keys); the first is required,
    /// a missing later one reuses the first.
    pub fn slots(self) -> &'static [&'static str] {
        match self {
            RecipeKind::AbandonedCheckout => &["standard", "vip", "reminder"],
            RecipeKind::Welcome => &["welcome"],
            RecipeKind::VipWinback => &["winback"],
            RecipeKind::CrossSell => &["cross_sell", "fallback"],
            RecipeKind::BackInStock => &["back_in_stock"],
            RecipeKind::OrderConfirmation => &["confirmation"],
            RecipeKind::ShippingUpdate => &["shipping"],
        }
    }

    /// A readable default name for the automation.
    pub fn title(self) -> &'static str {
        match self {
            RecipeKind::AbandonedCheckout => "Abandoned checkout recovery",
            RecipeKind::Welcome => "New customer welcome",
            RecipeKind::VipWinback => "VIP win-back",
            RecipeKind::CrossSell => "Post-purchase cross-sell",
            RecipeKind::BackInStock => "Back in stock",
            RecipeKind::OrderConfirmation => "Order confirmation",
            RecipeKind::ShippingUpdate => "Shipping update",
        }
    }
}

/// What a recipe is given: templates per slot, and the parameters of
/// parameterised recipes (`segment_id` for VIP win-back, `tag` for
/// cross-sell, default `cross-sell`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RecipeTemplates {
    pub template_ids: BTreeMap<String, Uuid>,
    pub segment_id: Option<Uuid>,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub name: &'static str,
    /// `{nodes, edges}`; parses with `Flow::parse`.
    pub flow: Value,
    pub frequency_cap: FrequencyCap,
}

fn pos(x: i32, y: i32) -> Value {
    json!({"x": x, "y": y})
}

fn first_name() -> Value {
    json!({"source": "customer.first_name", "fallback": "there"})
}

fn action(id: &str, template: Option<Uuid>, vars: Value, y: i32) -> Value {
    let mut a = json!({"id": id, "type": "action", "variables": vars, "position": pos(0, y)});
    if let Some(t) = template {
        a["template_id"] = json!(t);
    }
    a
}

/// Builds a recipe's flow. A slot without a template leaves its action
/// without one (a draft that validation blocks); the API requires the
/// first slot. Variables map `{{1}}` to the first name (fallback "there")
/// and, where the recipe has one, `{{2}}` to its link; back in stock maps
/// `{{1}}` name, `{{2}}` product, `{{3}}` variant, `{{4}}` the tracked link.
pub fn recipe(kind: RecipeKind, given: &RecipeTemplates) -> Recipe {
    let slot = |i: usize| -> Option<Uuid> {
        let slots = kind.slots();
        given
            .template_ids
            .get(slots[i])
            .or_else(|| given.template_ids.get(slots[0]))
            .copied()
    };
    let trigger =
        |t: &str| json!({"id": "trigger", "type": "trigger", "trigger": t, "position": pos(0, 0)});
    let edge = |a: &str, b: &str| json!({"from": a, "to": b});
    let (flow, cap) = match kind {
        RecipeKind::AbandonedCheckout => {
            let vars = json!({"1": first_name(), "2": {"source": "checkout.recovery_url"}});
            (
                json!({
                    "nodes": [
                        trigger("ABANDONED_CHECKOUT"),
                        {"id": "wait_30m", "type": "delay", "amount": 30, "unit": "minutes", "position": pos(0, 120)},
                        {"id": "is_vip", "type": "condition", "position": pos(0, 240),
                         "group": {"op": "and", "rules": [{"condition": "ORDER_VALUE", "operator": ">", "value": 100}]}},
                        action("send_vip", slot(1), vars.clone(), 360),
                        action("send_standard", slot(0), vars.clone(), 360),
                        {"id": "wait_24h", "type": "delay", "amount": 24, "unit": "hours", "position": pos(0, 480)},
                        action("send_reminder", slot(2), vars, 600),
                    ],
                    "edges": [
                        edge("trigger", "wait_30m"),
                        edge("wait_30m", "is_vip"),
                        {"from": "is_vip", "to": "send_vip", "branch": "yes"},
                        {"from": "is_vip", "to": "send_standard", "branch": "no"},
                        edge("send_vip", "wait_24h"),
                        edge("send_standard", "wait_24h"),
                        edge("wait_24h", "send_reminder"),
                    ]
                }),
                FrequencyCap::Days7,
            )
        }
        RecipeKind::Welcome => (
            json!({
                "nodes": [
                    trigger("CUSTOMER_CREATED"),
                    {"id": "wait_10m", "type": "delay", "amount": 10, "unit": "minutes", "position": pos(0, 120)},
                    action("send_welcome", slot(0), json!({"1": first_name()}), 240),
                ],
                "edges": [edge("trigger", "wait_10m"), edge("wait_10m", "send_welcome")]
            }),
            FrequencyCap::Ever,
        ),
        RecipeKind::VipWinback => {
            let mut t = trigger("USER_ADDED_TO_SEGMENT");
            if let Some(s) = given.segment_id {
                t["segment_id"] = json!(s);
            }
            (
                json!({
                    "nodes": [t, action("send_winback", slot(0), json!({"1": first_name()}), 120)],
                    "edges": [edge("trigger", "send_winback")]
                }),
                FrequencyCap::Days30,
            )
        }
        RecipeKind::CrossSell => {
            let tag = given.tag.clone().unwrap_or_else(|| "cross-sell".into());
            let vars = json!({"1": first_name()});
            (
                json!({
                    "nodes": [
                        trigger("ORDER_PLACED"),
                        {"id": "wait_3d", "type": "delay", "amount": 3, "unit": "days", "position": pos(0, 120)},
                        {"id": "has_tag", "type": "condition", "position": pos(0, 240),
                         "group": {"op": "and", "rules": [{"condition": "PRODUCT_IN_ORDER_HAS_TAG", "tag": tag}]}},
                        action("send_cross_sell", slot(0), vars.clone(), 360),
                        action("send_fallback", slot(1), vars, 360),
                    ],
                    "edges": [
                        edge("trigger", "wait_3d"),
                        edge("wait_3d", "has_tag"),
                        {"from": "has_tag", "to": "send_cross_sell", "branch": "yes"},
                        {"from": "has_tag", "to": "send_fallback", "branch": "no"},
                    ]
                }),
                FrequencyCap::Days7,
            )
        }
        RecipeKind::BackInStock => (
            json!({
                "nodes": [
                    trigger("BACK_IN_STOCK"),
                    action("send_back_in_stock", slot(0),
                        json!({"1": first_name(),
                               "2": {"source": "product.title", "fallback": "your product"},
                               "3": {"source": "variant.title", "fallback": "-"},
                               "4": {"source": "variant.url"}}), 120),
                ],
                "edges": [edge("trigger", "send_back_in_stock")]
            }),
            FrequencyCap::Hours24,
        ),
        RecipeKind::OrderConfirmation => (
            json!({
                "nodes": [
                    trigger("ORDER_PLACED"),
                    action("send_confirmation", slot(0),
                        json!({"1": first_name(), "2": {"source": "order.order_number"}}), 120),
                ],
                "edges": [edge("trigger", "send_confirmation")]
            }),
            FrequencyCap::Hours24,
        ),
        RecipeKind::ShippingUpdate => (
            json!({
                "nodes": [
                    trigger("ORDER_SHIPPED"),
                    action("send_shipping", slot(0),
                        json!({"1": first_name(), "2": {"source": "order.tracking_url", "fallback": "-"}}), 120),
                ],
                "edges": [edge("trigger", "send_shipping")]
            }),
            FrequencyCap::Hours24,
        ),
    };
    Recipe {
        name: kind.title(),
        flow,
        frequency_cap: cap,
    }
}
