//! Condition groups (nested AND/OR) and their three-valued evaluation: a
//! condition on a later event (a reply, a delivery status) is `Unknown`
//! until the event arrives or its window ends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Span;
use super::step::Facts;
use crate::MessageStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupOp {
    And,
    Or,
}

/// A group of rules combined by `op`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub op: GroupOp,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Condition(Condition),
    Group(Group),
}

/// A comparison operator (`>`, `>=`, `<`, `<=`, `=`, `!=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            ">" | "gt" => Cmp::Gt,
            ">=" | "gte" => Cmp::Ge,
            "<" | "lt" => Cmp::Lt,
            "<=" | "lte" => Cmp::Le,
            "=" | "==" | "eq" => Cmp::Eq,
            "!=" | "<>" | "ne" => Cmp::Ne,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
        }
    }

    pub fn test(self, left: i64, right: i64) -> bool {
        match self {
            Cmp::Gt => left > right,
            Cmp::Ge => left >= right,
            Cmp::Lt => left < right,
            Cmp::Le => left <= right,
            Cmp::Eq => left == right,
            Cmp::Ne => left != right,
        }
    }
}

/// The status a `MESSAGE_DELIVERY_STATUS` condition asks for. `sent`,
/// `delivered` and `read` hold once the message got at least that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }
}

/// One condition (design.md §4). Amounts are in cents.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The status of the last message this run sent; with a window, waits
    /// for it until the window (from the send) ends.
    MessageDeliveryStatus {
        status: DeliveryStatus,
        window: Option<Span>,
    },
    /// Did the customer reply (with `button_id`, when given) after the
    /// run's last message (or after reaching the condition, when the run
    /// sent none) within `window`? `replied: false` asks for silence.
    /// `window: None` is incomplete (blocked at activation).
    UserReplyStatus {
        replied: bool,
        button_id: Option<String>,
        window: Option<Span>,
    },
    /// Days since the contact's last order.
    OrderRecency {
        cmp: Cmp,
        days: i64,
    },
    /// The total of the trigger's order (or checkout).
    OrderValue {
        cmp: Cmp,
        cents: i64,
    },
    ItemCountInOrder {
        cmp: Cmp,
        count: i64,
    },
    /// Some product of the trigger's order has `tag` (lower case).
    ProductInOrderHasTag {
        tag: String,
        negate: bool,
    },
    CustomerTag {
        tag: String,
        negate: bool,
    },
    InSegment {
        segment_id: Uuid,
        negate: bool,
    },
    InList {
        list_id: Uuid,
        negate: bool,
    },
    TotalSpent {
        cmp: Cmp,
        cents: i64,
    },
}

impl Condition {
    pub const KINDS: [&'static str; 10] = [
        "MESSAGE_DELIVERY_STATUS",
        "USER_REPLY_STATUS",
        "ORDER_RECENCY",
        "ORDER_VALUE",
        "ITEM_COUNT_IN_ORDER",
        "PRODUCT_IN_ORDER_HAS_TAG",
        "CUSTOMER_TAG",
        "IN_SEGMENT",
        "IN_LIST",
        "TOTAL_SPENT",
    ];
}

/// What a waiting condition waits for; the store indexes waiting runs by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Awaited {
    Reply,
    MessageStatus,
    ReplyOrMessageStatus,
}

impl Awaited {
    pub fn as_str(self) -> &'static str {
        match self {
            Awaited::Reply => "reply",
            Awaited::MessageStatus => "message_status",
            Awaited::ReplyOrMessageStatus => "reply_or_message_status",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Awaited::Reply,
            Awaited::MessageStatus,
            Awaited::ReplyOrMessageStatus,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    pub fn union(self, other: Awaited) -> Awaited {
        if self == other {
            self
        } else {
            Awaited::ReplyOrMessageStatus
        }
    }

    pub fn wants_reply(self) -> bool {
        self != Awaited::MessageStatus
    }

    pub fn wants_status(self) -> bool {
        self != Awaited::Reply
    }
}

/// A three-valued answer: `Unknown` until an event or `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown {
        until: DateTime<Utc>,
        awaited: Awaited,
    },
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            u => u,
        }
    }
}

fn merge_unknown(
    a: Option<(DateTime<Utc>, Awaited)>,
    until: DateTime<Utc>,
    aw: Awaited,
) -> Option<(DateTime<Utc>, Awaited)> {
    Some(match a {
        None => (until, aw),
        Some((u, w)) => (u.min(until), w.union(aw)),
    })
}

/// Evaluates a group. `reached_at` is when the run reached the condition
/// (the window's start when the run has sent nothing).
pub fn evaluate_group(
    g: &Group,
    facts: &Facts,
    reached_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Truth {
    // An empty group is incomplete; it never holds.
    if g.rules.is_empty() {
        return Truth::False;
    }
    let mut unknown = None;
    for r in &g.rules {
        let t = match r {
            Rule::Condition(c) => evaluate(c, facts, reached_at, now),
            Rule::Group(sub) => evaluate_group(sub, facts, reached_at, now),
        };
        match (g.op, t) {
            (GroupOp::And, Truth::False) => return Truth::False,
            (GroupOp::Or, Truth::True) => return Truth::True,
            (_, Truth::Unknown { until, awaited }) => {
                unknown = merge_unknown(unknown, until, awaited)
            }
            _ => {}
        }
    }
    match unknown {
        Some((until, awaited)) => Truth::Unknown { until, awaited },
        None => Truth::of(g.op == GroupOp::And),
    }
}

fn rank(s: MessageStatus) -> u8 {
    match s {
        MessageStatus::Queued => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Delivered => 2,
        MessageStatus::Read | MessageStatus::Played => 3,
        MessageStatus::Failed => 0,
    }
}

/// Evaluates one condition against the facts.
pub fn evaluate(
    c: &Condition,
    facts: &Facts,
    reached_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Truth {
    let num =
        |v: Option<i64>, cmp: Cmp, right: i64| Truth::of(v.is_some_and(|v| cmp.test(v, right)));
    let has = |set: bool, negate: bool| Truth::of(set != negate);
    match c {
        Condition::MessageDeliveryStatus { status, window } => {
            let Some(m) = &facts.last_message else {
                return Truth::False;
            };
            let settled = match status {
                DeliveryStatus::Failed => match m.status {
                    MessageStatus::Failed => Some(true),
                    MessageStatus::Read | MessageStatus::Played => Some(false),
                    _ => None,
                },
                wanted => {
                    let need = match wanted {
                        DeliveryStatus::Sent => 1,
                        DeliveryStatus::Delivered => 2,
                        _ => 3,
                    };
                    if m.status == MessageStatus::Failed {
                        Some(false)
                    } else if rank(m.status) >= need {
                        Some(true)
                    } else {
                        None
                    }
                }
            };
            match (settled, window) {
                (Some(b), _) => Truth::of(b),
                (None, Some(w)) if now < m.sent_at + w.duration() => Truth::Unknown {
                    until: m.sent_at + w.duration(),
                    awaited: Awaited::MessageStatus,
                },
                (None, _) => Truth::False,
            }
        }
        Condition::UserReplyStatus {
            replied,
            button_id,
            window,
        } => {
            let Some(w) = window else {
                return Truth::False;
            };
            let since = facts
                .last_message
                .as_ref()
                .map_or(reached_at, |m| m.sent_at);
            let until = since + w.duration();
            let got = facts.replies.iter().any(|r| {
                r.at >= since
                    && r.at < until
                    && button_id
                        .as_deref()
                        .is_none_or(|b| r.button_id.as_deref() == Some(b))
            });
            let t = if got {
                Truth::True
            } else if now < until {
                Truth::Unknown {
                    until,
                    awaited: Awaited::Reply,
                }
            } else {
                Truth::False
            };
            if *replied { t } else { t.not() }
        }
        Condition::OrderRecency { cmp, days } => num(
            facts.last_order_at.map(|t| (now - t).num_days()),
            *cmp,
            *days,
        ),
        Condition::OrderValue { cmp, cents } => num(facts.order_total_cents, *cmp, *cents),
        Condition::ItemCountInOrder { cmp, count } => num(facts.order_item_count, *cmp, *count),
        Condition::TotalSpent { cmp, cents } => num(facts.total_spent_cents, *cmp, *cents),
        Condition::ProductInOrderHasTag { tag, negate } => has(
            facts
                .order_product_tags
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tag)),
            *negate,
        ),
        Condition::CustomerTag { tag, negate } => has(
            facts
                .customer_tags
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tag)),
            *negate,
        ),
        Condition::InSegment { segment_id, negate } => {
            has(facts.segments.contains(segment_id), *negate)
        }
        Condition::InList { list_id, negate } => has(facts.lists.contains(list_id), *negate),
    }
}
