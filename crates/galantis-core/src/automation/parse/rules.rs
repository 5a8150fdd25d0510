//! Condition groups and conditions of a flow's condition nodes.

use serde_json::Value;
use uuid::Uuid;

use super::super::Span;
use super::super::condition::{Cmp, Condition, DeliveryStatus, Group, GroupOp, Rule};
use super::{Ctx, MAX_DEPTH, MAX_RULES, clip, opt_text, opt_uuid, parse_span};
use crate::segment::money;

pub(super) fn parse_group(cx: &mut Ctx<'_>, v: &Value, path: &str, depth: usize) -> Option<Group> {
    let Some(o) = v.as_object() else {
        cx.err(
            path,
            "expected a group {\"op\": \"and\"|\"or\", \"rules\": […]}",
        );
        return None;
    };
    if depth >= MAX_DEPTH {
        cx.err(path, format!("groups nest at most {MAX_DEPTH} deep"));
        return None;
    }
    cx.unknown_keys(o, path, &["op", "rules"]);
    let op = match o
        .get("op")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
    {
        Some(s) if s == "and" => GroupOp::And,
        Some(s) if s == "or" => GroupOp::Or,
        _ => {
            cx.err(format!("{path}.op"), "expected \"and\" or \"or\"");
            return None;
        }
    };
    let rules = match o.get("rules") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) if a.len() <= MAX_RULES => a,
        Some(_) => {
            cx.err(
                format!("{path}.rules"),
                format!("expected a list of at most {MAX_RULES} rules"),
            );
            return None;
        }
    };
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let is_group = r.as_object().is_some_and(|o| o.contains_key("op"));
        if is_group {
            if let Some(g) = parse_group(cx, r, &rpath, depth + 1) {
                out.push(Rule::Group(g));
            }
        } else if let Some(c) = parse_condition(cx, r, &rpath) {
            out.push(Rule::Condition(c));
        }
    }
    Some(Group { op, rules: out })
}

fn parse_condition(cx: &mut Ctx<'_>, v: &Value, path: &str) -> Option<Condition> {
    let Some(o) = v.as_object() else {
        cx.err(
            path,
            "expected a condition {\"condition\": KIND, …} or a group",
        );
        return None;
    };
    let kind = o
        .get("condition")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let keys: &[&str] = match kind.as_str() {
        "MESSAGE_DELIVERY_STATUS" => &["condition", "status", "window"],
        "USER_REPLY_STATUS" => &["condition", "replied", "button_id", "window"],
        "ORDER_RECENCY" => &["condition", "operator", "days"],
        "ORDER_VALUE" | "TOTAL_SPENT" | "ITEM_COUNT_IN_ORDER" => {
            &["condition", "operator", "value"]
        }
        "PRODUCT_IN_ORDER_HAS_TAG" | "CUSTOMER_TAG" => &["condition", "tag", "negate"],
        "IN_SEGMENT" => &["condition", "segment_id", "negate"],
        "IN_LIST" => &["condition", "list_id", "negate"],
        _ => {
            cx.err(
                format!("{path}.condition"),
                format!(
                    "unknown condition `{}`; expected one of {}",
                    clip(&kind),
                    Condition::KINDS.join(", ")
                ),
            );
            return None;
        }
    };
    cx.unknown_keys(o, path, keys);
    let negate = match o.get("negate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            cx.err(format!("{path}.negate"), "expected true or false");
            return None;
        }
    };
    let cmp = |cx: &mut Ctx<'_>| -> Option<Cmp> {
        let c = o
            .get("operator")
            .and_then(Value::as_str)
            .and_then(Cmp::parse);
        if c.is_none() {
            cx.err(
                format!("{path}.operator"),
                "expected one of >, >=, <, <=, =, !=",
            );
        }
        c
    };
    let window = |cx: &mut Ctx<'_>| -> Result<Option<Span>, ()> {
        match o.get("window") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(w)) => {
                let wpath = format!("{path}.window");
                cx.unknown_keys(w, &wpath, &["amount", "unit"]);
                parse_span(cx, w, &wpath).map(Some).ok_or(())
            }
            Some(_) => {
                cx.err(
                    format!("{path}.window"),
                    "expected {\"amount\": N, \"unit\": \"hours\"}",
                );
                Err(())
            }
        }
    };
    let whole = |cx: &mut Ctx<'_>, key: &str, max: i64| -> Option<i64> {
        let n = match o.get(key) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let ok = n.filter(|n| (0..=max).contains(n));
        if ok.is_none() {
            cx.err(
                format!("{path}.{key}"),
                format!("expected a whole number from 0 to {max}"),
            );
        }
        ok
    };
    let amount = |cx: &mut Ctx<'_>| -> Option<i64> {
        match o.get("value").map(money) {
            Some(Ok(c)) => Some(c),
            Some(Err(m)) => {
                cx.err(format!("{path}.value"), m);
                None
            }
            None => {
                cx.err(
                    format!("{path}.value"),
                    "required (an amount, e.g. 100 or \"99.90\")",
                );
                None
            }
        }
    };
    let tag = |cx: &mut Ctx<'_>| -> Option<String> {
        match opt_text(cx, o, "tag", path) {
            Ok(Some(t)) => Some(t.to_lowercase()),
            Ok(None) => {
                cx.err(format!("{path}.tag"), "required (a tag)");
                None
            }
            Err(()) => None,
        }
    };
    let id = |cx: &mut Ctx<'_>, key: &str| -> Option<Uuid> {
        match opt_uuid(cx, o, key, path) {
            Ok(Some(u)) => Some(u),
            Ok(None) => {
                cx.err(format!("{path}.{key}"), "required (an id)");
                None
            }
            Err(()) => None,
        }
    };
    Some(match kind.as_str() {
        "MESSAGE_DELIVERY_STATUS" => {
            let status = o
                .get("status")
                .and_then(Value::as_str)
                .and_then(DeliveryStatus::parse);
            let window = window(cx).ok()?;
            let Some(status) = status else {
                cx.err(
                    format!("{path}.status"),
                    "expected sent, delivered, read or failed",
                );
                return None;
            };
            Condition::MessageDeliveryStatus { status, window }
        }
        "USER_REPLY_STATUS" => {
            let replied = match o.get("replied") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    cx.err(format!("{path}.replied"), "expected true or false");
                    return None;
                }
            };
            let button_id = opt_text(cx, o, "button_id", path).ok()?;
            let window = window(cx).ok()?;
            Condition::UserReplyStatus {
                replied,
                button_id,
                window,
            }
        }
        "ORDER_RECENCY" => {
            let c = cmp(cx);
            let days = whole(cx, "days", crate::segment::MAX_DAYS)?;
            Condition::OrderRecency { cmp: c?, days }
        }
        "ORDER_VALUE" => {
            let c = cmp(cx);
            let cents = amount(cx)?;
            Condition::OrderValue { cmp: c?, cents }
        }
        "TOTAL_SPENT" => {
            let c = cmp(cx);
            let cents = amount(cx)?;
            Condition::TotalSpent { cmp: c?, cents }
        }
        "ITEM_COUNT_IN_ORDER" => {
            let c = cmp(cx);
            let count = whole(cx, "value", 1_000_000)?;
            Condition::ItemCountInOrder { cmp: c?, count }
        }
        "PRODUCT_IN_ORDER_HAS_TAG" => Condition::ProductInOrderHasTag {
            tag: tag(cx)?,
            negate,
        },
        "CUSTOMER_TAG" => Condition::CustomerTag {
            tag: tag(cx)?,
            negate,
        },
        "IN_SEGMENT" => Condition::InSegment {
            segment_id: id(cx, "segment_id")?,
            negate,
        },
        _ => Condition::InList {
            list_id: id(cx, "list_id")?,
            negate,
        },
    })
}
