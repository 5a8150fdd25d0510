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

use serde_json::Value;
use uuid::Uuid;

use crate::MarketingState;

mod parse;

pub use parse::money;
use parse::parse_rules;

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

#[cfg(test)]
mod tests;
