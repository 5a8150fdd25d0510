//! Segment rules: the typed model of a dynamic segment, parsed and validated
//! from JSON. Pure: no IO; the store compiles a [`SegmentRules`] to SQL.
//!
//! The JSON shape is
//!
//! ```json
//! {"groups": [
//!   {"conditions": [{"field": "total_spent", "operator": ">", "value": 500},
//!                   {"field": "country", "operator": "=", "value": "MX"}]},
//!   {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3},
//!                   {"field": "consent", "operator": "is", "value": "yes"}]}
//! ]}
//! ```
//!
//! Conditions inside a group are combined with AND, groups with OR. Every
//! validation error names the rule's path (`groups[1].conditions[0].operator`).

use std::fmt;

use chrono::{DateTime, NaiveDate};
use serde_json::Value;
use uuid::Uuid;

use crate::MarketingState;

/// Limits that keep a rule set cheap to compile and run.
pub const MAX_GROUPS: usize = 20;
pub const MAX_CONDITIONS_PER_GROUP: usize = 20;
pub const MAX_VALUES: usize = 500;
/// `in last N days` and day counts stay within ten years.
pub const MAX_DAYS: i64 = 3650;
pub const DAY_MS: i64 = 86_400_000;

/// A field a condition can test (design.md §4, "Lists and segments").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Phone,
    List,
    LastMessageReceived,
    LastEngagedAt,
    OrdersCount,
    TotalSpent,
    AverageOrderValue,
    DaysSinceFirstOrder,
    DaysSinceLastOrder,
    Country,
    Language,
    Consent,
    PurchasedCollection,
    PurchasedBrand,
    CustomerTag,
}

impl Field {
    pub const ALL: [Field; 15] = [
        Field::Phone,
        Field::List,
        Field::LastMessageReceived,
        Field::LastEngagedAt,
        Field::OrdersCount,
        Field::TotalSpent,
        Field::AverageOrderValue,
        Field::DaysSinceFirstOrder,
        Field::DaysSinceLastOrder,
        Field::Country,
        Field::Language,
        Field::Consent,
        Field::PurchasedCollection,
        Field::PurchasedBrand,
        Field::CustomerTag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Phone => "phone",
            Field::List => "list",
            Field::LastMessageReceived => "last_message_received",
            Field::LastEngagedAt => "last_engaged_at",
            Field::OrdersCount => "orders_count",
            Field::TotalSpent => "total_spent",
            Field::AverageOrderValue => "average_order_value",
            Field::DaysSinceFirstOrder => "days_since_first_order",
            Field::DaysSinceLastOrder => "days_since_last_order",
            Field::Country => "country",
            Field::Language => "language",
            Field::Consent => "consent",
            Field::PurchasedCollection => "purchased_collection",
            Field::PurchasedBrand => "purchased_brand",
            Field::CustomerTag => "customer_tag",
        }
    }

    fn parse(s: &str) -> Option<Field> {
        let norm = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Field::ALL.into_iter().find(|f| f.as_str() == norm)
    }

    /// The operators this field accepts.
    pub fn operators(self) -> &'static [Operator] {
        use Operator::*;
        match self {
            Field::OrdersCount
            | Field::TotalSpent
            | Field::AverageOrderValue
            | Field::DaysSinceFirstOrder
            | Field::DaysSinceLastOrder => &[Gt, Lt, Ge, Le, Eq, Between],
            Field::LastMessageReceived | Field::LastEngagedAt => {
                &[Before, After, Between, InLastDays]
            }
            Field::Phone
            | Field::List
            | Field::Country
            | Field::Language
            | Field::Consent
            | Field::PurchasedCollection
            | Field::PurchasedBrand
            | Field::CustomerTag => &[Eq, Is, IsNot, In, NotIn],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Between,
    In,
    NotIn,
    Is,
    IsNot,
    Before,
    After,
    InLastDays,
}

impl Operator {
    pub const ALL: [Operator; 13] = [
        Operator::Gt,
        Operator::Lt,
        Operator::Ge,
        Operator::Le,
        Operator::Eq,
        Operator::Between,
        Operator::In,
        Operator::NotIn,
        Operator::Is,
        Operator::IsNot,
        Operator::Before,
        Operator::After,
        Operator::InLastDays,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Gt => ">",
            Operator::Lt => "<",
            Operator::Ge => ">=",
            Operator::Le => "<=",
            Operator::Eq => "=",
            Operator::Between => "between",
            Operator::In => "in",
            Operator::NotIn => "not in",
            Operator::Is => "is",
            Operator::IsNot => "is not",
            Operator::Before => "before",
            Operator::After => "after",
            Operator::InLastDays => "in last N days",
        }
    }

    fn parse(s: &str) -> Option<Operator> {
        let norm: String = s
            .trim()
            .to_ascii_lowercase()
            .replace('_', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let norm = match norm.as_str() {
            "==" => "=",
            "in last n days" | "in the last n days" | "in last days" => "in last n days",
            other => other,
        };
        Operator::ALL
            .into_iter()
            .find(|o| o.as_str().to_ascii_lowercase() == norm)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contact's phone, as a segment sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneState {
    /// E.164, can be messaged.
    Valid,
    /// Digits without a country calling code.
    MissingCallingCode,
    Invalid,
    /// No phone at all.
    Missing,
}

impl PhoneState {
    pub const ALL: [PhoneState; 4] = [
        PhoneState::Valid,
        PhoneState::MissingCallingCode,
        PhoneState::Invalid,
        PhoneState::Missing,
    ];

    /// The stored `contacts.phone_status` (`missing` stands for NULL).
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneState::Valid => "valid",
            PhoneState::MissingCallingCode => "missing_calling_code",
            PhoneState::Invalid => "invalid",
            PhoneState::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberField {
    OrdersCount,
    /// In cents.
    TotalSpent,
    /// In cents (integer division of total by count).
    AverageOrderValue,
    DaysSinceFirstOrder,
    DaysSinceLastOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberTest {
    Compare(Comparison, i64),
    /// Inclusive on both ends.
    Between(i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    LastMessageReceived,
    LastEngagedAt,
}

/// Times are epoch milliseconds; bounds are half-open `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeTest {
    Before(i64),
    /// At or after.
    From(i64),
    Range(i64, i64),
    InLastDays(i64),
}

/// One typed condition. `negate` turns `is`/`in` into `is not`/`not in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Phone {
        negate: bool,
        states: Vec<PhoneState>,
    },
    List {
        negate: bool,
        lists: Vec<Uuid>,
    },
    Consent {
        negate: bool,
        states: Vec<MarketingState>,
    },
    /// ISO 3166-1 alpha-2, upper case.
    Country {
        negate: bool,
        codes: Vec<String>,
    },
    /// BCP 47 language tags, lower case; `es` also matches `es-MX`.
    Language {
        negate: bool,
        tags: Vec<String>,
    },
    /// Lower case; compared case-insensitively.
    CustomerTag {
        negate: bool,
        tags: Vec<String>,
    },
    /// Vendors, lower case; compared case-insensitively with
    /// `orders.line_items[].vendor` of the contact's uncancelled orders.
    PurchasedBrand {
        negate: bool,
        vendors: Vec<String>,
    },
    /// Shopify collection ids.
    PurchasedCollection {
        negate: bool,
        collections: Vec<i64>,
    },
    Number {
        field: NumberField,
        test: NumberTest,
    },
    Time {
        field: TimeField,
        test: TimeTest,
    },
}

impl Condition {
    /// Whether membership can change with the passing of time alone (or
    /// through data that does not flow through contact and order changes:
    /// messages, collection contents), so a periodic job must re-evaluate.
    pub fn needs_periodic_refresh(&self) -> bool {
        matches!(
            self,
            Condition::Number {
                field: NumberField::DaysSinceFirstOrder | NumberField::DaysSinceLastOrder,
                ..
            } | Condition::Time { .. }
                | Condition::PurchasedCollection { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleGroup {
    pub conditions: Vec<Condition>,
}

/// A validated rule set: OR of groups, each an AND of conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRules {
    pub groups: Vec<RuleGroup>,
}

/// One validation failure, with the path of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every validation failure of a rule set (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().take(5).map(|e| e.to_string()).collect();
        f.write_str(&shown.join("; "))?;
        if self.0.len() > 5 {
            write!(f, "; and {} more", self.0.len() - 5)?;
        }
        Ok(())
    }
}

impl RuleErrors {
    /// The path of the first failure.
    pub fn first_path(&self) -> &str {
        self.0.first().map(|e| e.path.as_str()).unwrap_or("")
    }
}

impl SegmentRules {
    /// Parses and validates rules from JSON.
    pub fn parse(v: &Value) -> Result<Self, RuleErrors> {
        let mut errors = Vec::new();
        let rules = parse_rules(v, &mut errors);
        match rules {
            Some(r) if errors.is_empty() => Ok(r),
            _ => Err(RuleErrors(errors)),
        }
    }

    pub fn needs_periodic_refresh(&self) -> bool {
        self.conditions().any(Condition::needs_periodic_refresh)
    }

    /// Every condition of every group.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition> {
        self.groups.iter().flat_map(|g| g.conditions.iter())
    }

    /// The lists the rules refer to (membership changes there re-evaluate
    /// this segment).
    pub fn referenced_lists(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = self
            .conditions()
            .filter_map(|c| match c {
                Condition::List { lists, .. } => Some(lists.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The Shopify collections the rules refer to (a change of a
    /// collection's products re-evaluates this segment).
    pub fn referenced_collections(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .conditions()
            .filter_map(|c| match c {
                Condition::PurchasedCollection { collections, .. } => {
                    Some(collections.iter().copied())
                }
                _ => None,
            })
            .flatten()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn err(errors: &mut Vec<RuleError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(RuleError {
        path: path.into(),
        message: message.into(),
    });
}

fn parse_rules(v: &Value, errors: &mut Vec<RuleError>) -> Option<SegmentRules> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(field: &str, op: &str, value: Value) -> Result<Condition, RuleErrors> {
        SegmentRules::parse(&json!({"groups": [{"conditions": [
            {"field": field, "operator": op, "value": value}
        ]}]}))
        .map(|r| r.groups[0].conditions[0].clone())
    }

    #[test]
    fn parses_the_example() {
        let r = SegmentRules::parse(&json!({"groups": [
            {"conditions": [{"field": "total_spent", "operator": ">", "value": 500},
                            {"field": "country", "operator": "=", "value": "mx"}]},
            {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3},
                            {"field": "consent", "operator": "=", "value": "Yes"}]}
        ]}))
        .unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(
            r.groups[0].conditions,
            vec![
                Condition::Number {
                    field: NumberField::TotalSpent,
                    test: NumberTest::Compare(Comparison::Gt, 50_000)
                },
                Condition::Country {
                    negate: false,
                    codes: vec!["MX".into()]
                }
            ]
        );
        assert_eq!(
            r.groups[1].conditions[1],
            Condition::Consent {
                negate: false,
                states: vec![MarketingState::Subscribed]
            }
        );
        assert!(!r.needs_periodic_refresh());
    }

    #[test]
    fn referenced_collections_cover_every_group_and_negation() {
        let r = SegmentRules::parse(&json!({"groups": [
            {"conditions": [{"field": "purchased_collection", "operator": "in", "value": [7, 3]},
                            {"field": "country", "operator": "=", "value": "MX"}]},
            {"conditions": [{"field": "purchased_collection", "operator": "not in", "value": ["3", 9]}]}
        ]}))
        .unwrap();
        assert_eq!(r.referenced_collections(), vec![3, 7, 9]);
        let none = SegmentRules::parse(&json!({"groups": [
            {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3}]}
        ]}))
        .unwrap();
        assert!(none.referenced_collections().is_empty());
    }

    #[test]
    fn errors_name_the_path() {
        let e = SegmentRules::parse(&json!({"groups": [
            {"conditions": [{"field": "country", "operator": "=", "value": "MX"}]},
            {"conditions": [{"field": "orders_count", "operator": "before", "value": 3}]}
        ]}))
        .unwrap_err();
        assert_eq!(e.first_path(), "groups[1].conditions[0].operator");
        let e = one("shoe_size", "=", json!(42)).unwrap_err();
        assert_eq!(e.first_path(), "groups[0].conditions[0].field");
        let e = one("total_spent", ">", json!("lots")).unwrap_err();
        assert_eq!(e.first_path(), "groups[0].conditions[0].value");
        let e = SegmentRules::parse(&json!({"groups": []})).unwrap_err();
        assert_eq!(e.first_path(), "groups");
        let e = SegmentRules::parse(&json!({"groups": [{"conditions": [], "x": 1}]})).unwrap_err();
        assert_eq!(e.0.len(), 2);
        let e = SegmentRules::parse(&json!([1])).unwrap_err();
        assert_eq!(e.first_path(), "rules");
    }

    #[test]
    fn every_field_accepts_exactly_its_operators() {
        for f in Field::ALL {
            for op in Operator::ALL {
                let r = one(f.as_str(), op.as_str(), json!(null));
                let e = r.unwrap_err();
                let expected = if f.operators().contains(&op) {
                    ".value"
                } else {
                    ".operator"
                };
                assert!(e.first_path().ends_with(expected), "{f} {op}: {e}");
            }
        }
    }

    #[test]
    fn values_are_normalised() {
        assert_eq!(
            one("total_spent", "between", json!(["10", 20.5])).unwrap(),
            Condition::Number {
                field: NumberField::TotalSpent,
                test: NumberTest::Between(1000, 2050)
            }
        );
        assert!(one("total_spent", "between", json!([30, 20])).is_err());
        assert!(one("total_spent", ">", json!("1.234")).is_err());
        assert!(one("total_spent", ">", json!(-1)).is_err());
        assert_eq!(
            one("customer_tag", "in", json!(["VIP", "vip", "Gold"])).unwrap(),
            Condition::CustomerTag {
                negate: false,
                tags: vec!["vip".into(), "gold".into()]
            }
        );
        assert_eq!(
            one("language", "is not", json!("pt_BR")).unwrap(),
            Condition::Language {
                negate: true,
                tags: vec!["pt-br".into()]
            }
        );
        assert_eq!(
            one("consent", "is", json!("no")).unwrap(),
            Condition::Consent {
                negate: true,
                states: vec![MarketingState::Subscribed]
            }
        );
        assert_eq!(
            one("consent", "is not", json!(false)).unwrap(),
            Condition::Consent {
                negate: false,
                states: vec![MarketingState::Subscribed]
            }
        );
        assert!(one("consent", "in", json!(["SUBSCRIBED", "nope"])).is_err());
        assert!(one("country", "in", json!([])).is_err());
        assert!(one("country", "is", json!(["MX"])).is_err());
        assert!(one("country", "is", json!("MEX")).is_err());
        assert_eq!(
            one("phone", "is not", json!("missing_calling_code")).unwrap(),
            Condition::Phone {
                negate: true,
                states: vec![PhoneState::MissingCallingCode]
            }
        );
        assert!(one("list", "in", json!(["not-a-uuid"])).is_err());
        assert_eq!(
            one("purchased_collection", "in", json!([888888, "42"])).unwrap(),
            Condition::PurchasedCollection {
                negate: false,
                collections: vec![888888, 42]
            }
        );
    }

    #[test]
    fn times() {
        let day = 1_735_689_600_000; // 2025-01-01T00:00:00Z
        assert_eq!(
            one("last_engaged_at", "before", json!("2025-01-01")).unwrap(),
            Condition::Time {
                field: TimeField::LastEngagedAt,
                test: TimeTest::Before(day)
            }
        );
        assert_eq!(
            one("last_engaged_at", "after", json!("2025-01-01")).unwrap(),
            Condition::Time {
                field: TimeField::LastEngagedAt,
                test: TimeTest::From(day + DAY_MS)
            }
        );
        assert_eq!(
            one(
                "last_message_received",
                "between",
                json!(["2025-01-01", "2025-01-01"])
            )
            .unwrap(),
            Condition::Time {
                field: TimeField::LastMessageReceived,
                test: TimeTest::Range(day, day + DAY_MS)
            }
        );
        assert_eq!(
            one("last_engaged_at", "in last n days", json!(30)).unwrap(),
            Condition::Time {
                field: TimeField::LastEngagedAt,
                test: TimeTest::InLastDays(30)
            }
        );
        assert!(one("last_engaged_at", "in last N days", json!(0)).is_err());
        assert!(one("last_engaged_at", "after", json!("yesterday")).is_err());
        assert!(
            one("last_engaged_at", "in last N days", json!(7))
                .unwrap()
                .needs_periodic_refresh()
        );
    }
}
