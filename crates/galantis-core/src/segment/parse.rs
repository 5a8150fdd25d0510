//! JSON → [`SegmentRules`]: every value checked against its field and
//! operator, every failure recorded with its path.

use chrono::{DateTime, NaiveDate};
use serde_json::Value;
use uuid::Uuid;

use super::*;

fn err(errors: &mut Vec<RuleError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(RuleError {
        path: path.into(),
        message: message.into(),
    });
}

pub(super) fn parse_rules(v: &Value, errors: &mut Vec<RuleError>) -> Option<SegmentRules> {
    let Some(obj) = v.as_object() else {
        err(
            errors,
            "rules",
            "expected an object with `groups` (a list of condition groups)",
        );
        return None;
    };
    for k in obj.keys().filter(|k| k.as_str() != "groups") {
        err(errors, k.clone(), "unknown key; expected only `groups`");
    }
    let Some(groups) = obj.get("groups").and_then(Value::as_array) else {
        err(errors, "groups", "expected a list of condition groups");
        return None;
    };
    if groups.is_empty() {
        err(errors, "groups", "at least one group is required");
    }
    if groups.len() > MAX_GROUPS {
        err(
            errors,
            "groups",
            format!("at most {MAX_GROUPS} groups are allowed"),
        );
    }
    let mut out = Vec::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        let gpath = format!("groups[{gi}]");
        let Some(gobj) = g.as_object() else {
            err(errors, gpath, "expected an object with `conditions`");
            continue;
        };
        for k in gobj.keys().filter(|k| k.as_str() != "conditions") {
            err(
                errors,
                format!("{gpath}.{k}"),
                "unknown key; expected only `conditions`",
            );
        }
        let Some(conds) = gobj.get("conditions").and_then(Value::as_array) else {
            err(
                errors,
                format!("{gpath}.conditions"),
                "expected a list of conditions",
            );
            continue;
        };
        if conds.is_empty() {
            err(
                errors,
                format!("{gpath}.conditions"),
                "at least one condition is required",
            );
        }
        if conds.len() > MAX_CONDITIONS_PER_GROUP {
            err(
                errors,
                format!("{gpath}.conditions"),
                format!("at most {MAX_CONDITIONS_PER_GROUP} conditions per group are allowed"),
            );
        }
        let mut parsed = Vec::with_capacity(conds.len());
        for (ci, c) in conds.iter().enumerate() {
            let cpath = format!("{gpath}.conditions[{ci}]");
            if let Some(c) = parse_condition(c, &cpath, errors) {
                parsed.push(c);
            }
        }
        out.push(RuleGroup { conditions: parsed });
    }
    Some(SegmentRules { groups: out })
}

fn parse_condition(v: &Value, path: &str, errors: &mut Vec<RuleError>) -> Option<Condition> {
    let Some(obj) = v.as_object() else {
        err(
            errors,
            path,
            "expected an object with `field`, `operator` and `value`",
        );
        return None;
    };
    for k in obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "field" | "operator" | "value"))
    {
        err(
            errors,
            format!("{path}.{k}"),
            "unknown key; expected `field`, `operator` and `value`",
        );
    }
    let fpath = format!("{path}.field");
    let field = match obj.get("field").and_then(Value::as_str) {
        Some(name) => match Field::parse(name) {
            Some(f) => f,
            None => {
                let names: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
                err(
                    errors,
                    fpath,
                    format!(
                        "unknown field `{}`; expected one of {}",
                        clip(name),
                        names.join(", ")
                    ),
                );
                return None;
            }
        },
        None => {
            err(errors, fpath, "required (a field name)");
            return None;
        }
    };
    let opath = format!("{path}.operator");
    let op = match obj.get("operator").and_then(Value::as_str) {
        Some(name) => match Operator::parse(name) {
            Some(op) if field.operators().contains(&op) => op,
            _ => {
                let ops: Vec<&str> = field.operators().iter().map(|o| o.as_str()).collect();
                err(
                    errors,
                    opath,
                    format!(
                        "`{}` is not an operator for field `{field}`; expected one of {}",
                        clip(name),
                        ops.join(", ")
                    ),
                );
                return None;
            }
        },
        None => {
            err(errors, opath, "required (an operator)");
            return None;
        }
    };
    let vpath = format!("{path}.value");
    let Some(value) = obj.get("value") else {
        err(errors, vpath, "required");
        return None;
    };
    match parse_value(field, op, value) {
        Ok(c) => Some(c),
        Err(message) => {
            err(errors, vpath, message);
            None
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_value(field: Field, op: Operator, v: &Value) -> Result<Condition, String> {
    match field {
        Field::OrdersCount => number(NumberField::OrdersCount, op, v, count),
        Field::TotalSpent => number(NumberField::TotalSpent, op, v, money),
        Field::AverageOrderValue => number(NumberField::AverageOrderValue, op, v, money),
        Field::DaysSinceFirstOrder => number(NumberField::DaysSinceFirstOrder, op, v, days),
        Field::DaysSinceLastOrder => number(NumberField::DaysSinceLastOrder, op, v, days),
        Field::LastMessageReceived => time(TimeField::LastMessageReceived, op, v),
        Field::LastEngagedAt => time(TimeField::LastEngagedAt, op, v),
        Field::Phone => {
            let (negate, states) = set(op, v, |x| {
                let s = x.as_str().ok_or("expected a phone state")?;
                PhoneState::ALL
                    .into_iter()
                    .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        format!(
                            "`{}` is not a phone state; expected valid, missing_calling_code, invalid or missing",
                            clip(s)
                        )
                    })
            })?;
            Ok(Condition::Phone { negate, states })
        }
        Field::List => {
            let (negate, lists) = set(op, v, |x| {
                x.as_str()
                    .and_then(|s| Uuid::parse_str(s.trim()).ok())
                    .ok_or_else(|| "expected a list id".to_owned())
            })?;
            Ok(Condition::List { negate, lists })
        }
        Field::Consent => consent(op, v),
        Field::Country => {
            let (negate, codes) = set(op, v, |x| {
                let s = x.as_str().ok_or("expected a country code")?.trim();
                if s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()) {
                    Ok(s.to_ascii_uppercase())
                } else {
                    Err(format!(
                        "`{}` is not a two-letter country code (ISO 3166-1, e.g. MX)",
                        clip(s)
                    ))
                }
            })?;
            Ok(Condition::Country { negate, codes })
        }
        Field::Language => {
            let (negate, tags) = set(op, v, |x| {
                let s = x.as_str().ok_or("expected a language code")?.trim();
                let (primary, rest) = s.split_once(['-', '_']).unwrap_or((s, ""));
                let ok = (2..=3).contains(&primary.len())
                    && primary.chars().all(|c| c.is_ascii_alphabetic())
                    && rest.len() <= 8
                    && rest.chars().all(|c| c.is_ascii_alphanumeric());
                if ok {
                    Ok(if rest.is_empty() {
                        primary.to_ascii_lowercase()
                    } else {
                        format!("{}-{}", primary, rest).to_ascii_lowercase()
                    })
                } else {
                    Err(format!(
                        "`{}` is not a language code (e.g. es, pt-BR)",
                        clip(s)
                    ))
                }
            })?;
            Ok(Condition::Language { negate, tags })
        }
        Field::CustomerTag => {
            let (negate, tags) = set(op, v, |x| text(x, "a tag"))?;
            Ok(Condition::CustomerTag { negate, tags })
        }
        Field::PurchasedBrand => {
            let (negate, vendors) = set(op, v, |x| text(x, "a brand (vendor)"))?;
            Ok(Condition::PurchasedBrand { negate, vendors })
        }
        Field::PurchasedCollection => {
            let (negate, collections) = set(op, v, |x| {
                let n = match x {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                n.filter(|n| *n > 0)
                    .ok_or_else(|| "expected a Shopify collection id".to_owned())
            })?;
            Ok(Condition::PurchasedCollection {
                negate,
                collections,
            })
        }
    }
}

fn text(x: &Value, what: &str) -> Result<String, String> {
    let s = x
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("expected {what} (non-empty text)"))?;
    if s.chars().count() > 255 {
        return Err(format!("{what} is longer than 255 characters"));
    }
    Ok(s.to_lowercase())
}

/// `=`/`is`/`is not` take one value; `in`/`not in` a non-empty list.
fn set<T: PartialEq>(
    op: Operator,
    v: &Value,
    one: impl Fn(&Value) -> Result<T, String>,
) -> Result<(bool, Vec<T>), String> {
    let negate = matches!(op, Operator::IsNot | Operator::NotIn);
    let items = match op {
        Operator::In | Operator::NotIn => {
            let arr = v
                .as_array()
                .ok_or_else(|| format!("`{op}` expects a list of values"))?;
            if arr.is_empty() {
                return Err(format!("`{op}` expects at least one value"));
            }
            if arr.len() > MAX_VALUES {
                return Err(format!("at most {MAX_VALUES} values are allowed"));
            }
            arr.iter()
                .enumerate()
                .map(|(i, x)| one(x).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => {
            if v.is_array() {
                return Err(format!("`{op}` expects one value; use `in` for a list"));
            }
            vec![one(v)?]
        }
    };
    let mut dedup: Vec<T> = Vec::with_capacity(items.len());
    for i in items {
        if !dedup.contains(&i) {
            dedup.push(i);
        }
    }
    Ok((negate, dedup))
}

fn consent(op: Operator, v: &Value) -> Result<Condition, String> {
    // "Consent = Yes" / "is no": yes means SUBSCRIBED, no means anything else.
    let yes_no = match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if let Some(yes) = yes_no {
        if matches!(op, Operator::In | Operator::NotIn) {
            return Err(format!("`{op}` expects a list of consent states"));
        }
        let negate = matches!(op, Operator::IsNot) == yes;
        return Ok(Condition::Consent {
            negate,
            states: vec![MarketingState::Subscribed],
        });
    }
    let (negate, states) = set(op, v, |x| {
        let s = x.as_str().ok_or("expected a consent state")?;
        if s.trim().eq_ignore_ascii_case("yes") {
            return Ok(MarketingState::Subscribed);
        }
        s.parse::<MarketingState>().map_err(|_| {
            format!(
                "`{}` is not a consent state; expected yes, no, SUBSCRIBED, PENDING, NOT_SUBSCRIBED, UNSUBSCRIBED, UNKNOWN, INVALID or REDACTED",
                clip(s)
            )
        })
    })?;
    Ok(Condition::Consent { negate, states })
}

fn number(
    field: NumberField,
    op: Operator,
    v: &Value,
    scalar: fn(&Value) -> Result<i64, String>,
) -> Result<Condition, String> {
    let test = match op {
        Operator::Between => {
            let (a, b) = pair(v, scalar)?;
            NumberTest::Between(a, b)
        }
        _ => {
            let cmp = match op {
                Operator::Gt => Comparison::Gt,
                Operator::Lt => Comparison::Lt,
                Operator::Ge => Comparison::Ge,
                Operator::Le => Comparison::Le,
                _ => Comparison::Eq,
            };
            NumberTest::Compare(cmp, scalar(v)?)
        }
    };
    Ok(Condition::Number { field, test })
}

fn pair(v: &Value, scalar: impl Fn(&Value) -> Result<i64, String>) -> Result<(i64, i64), String> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => {
            let a = scalar(a).map_err(|e| format!("[0]: {e}"))?;
            let b = scalar(b).map_err(|e| format!("[1]: {e}"))?;
            if a > b {
                return Err("`between` expects [low, high] with low <= high".into());
            }
            Ok((a, b))
        }
        _ => Err("`between` expects a list of two values [low, high]".into()),
    }
}

fn count(v: &Value) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| (0..=1_000_000_000).contains(n))
        .ok_or_else(|| "expected a whole number of orders (0 or more)".to_owned())
}

fn days(v: &Value) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| (0..=MAX_DAYS).contains(n))
        .ok_or_else(|| format!("expected a whole number of days between 0 and {MAX_DAYS}"))
}

/// An amount in the store's currency ("500", 500, 499.99) → cents.
pub fn money(v: &Value) -> Result<i64, String> {
    let bad = || "expected an amount of money (e.g. 500 or \"499.99\")".to_owned();
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(bad()),
    };
    parse_cents(&text).ok_or_else(bad)
}

/// Decimal text with at most two decimals → cents; no exponent, no sign.
fn parse_cents(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
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

fn time(field: TimeField, op: Operator, v: &Value) -> Result<Condition, String> {
    let test = match op {
        Operator::InLastDays => {
            let n = days(v)?;
            if n == 0 {
                return Err("expected at least 1 day".into());
            }
            TimeTest::InLastDays(n)
        }
        Operator::Before => TimeTest::Before(instant(v)?.0),
        Operator::After => TimeTest::From(instant(v)?.1),
        _ => {
            let arr = v.as_array().map(Vec::as_slice);
            let Some([a, b]) = arr else {
                return Err("`between` expects a list of two dates [from, to]".into());
            };
            let from = instant(a).map_err(|e| format!("[0]: {e}"))?.0;
            let until = instant(b).map_err(|e| format!("[1]: {e}"))?.1;
            if from >= until {
                return Err("`between` expects [from, to] with from before to".into());
            }
            TimeTest::Range(from, until)
        }
    };
    Ok(Condition::Time { field, test })
}

/// A date (`2025-01-31`, the whole UTC day) or an RFC 3339 instant. Returns
/// (start, end): for a date the day's first millisecond and the next day's;
/// for an instant, the instant and the next millisecond.
fn instant(v: &Value) -> Result<(i64, i64), String> {
    let s = v
        .as_str()
        .map(str::trim)
        .ok_or("expected a date (YYYY-MM-DD) or an RFC 3339 time")?;
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let start = d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or("date out of range")?;
        return Ok((start, start + DAY_MS));
    }
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => {
            let ms = t.timestamp_millis();
            Ok((ms, ms + 1))
        }
        Err(_) => Err(format!(
            "`{}` is not a date (YYYY-MM-DD) or an RFC 3339 time",
            clip(s)
        )),
    }
}
