//! What the engine reads about a run's contact, loaded by the server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::templates::TemplateStatus;
use crate::{MarketingState, MessageStatus};

/// The last message the run sent, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    /// `None` for a send of the current step (not queued yet).
    pub message_id: Option<Uuid>,
    pub sent_at: DateTime<Utc>,
    pub status: MessageStatus,
}

/// An inbound message of the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub at: DateTime<Utc>,
    /// The quick-reply button's id (payload), when a button was pressed.
    pub button_id: Option<String>,
}

/// What the engine reads, loaded by the server for the run's contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Re-checked at every action.
    pub consent: MarketingState,
    /// Status of every template the flow sends (missing: not found).
    pub templates: BTreeMap<Uuid, TemplateStatus>,
    /// Values by source (`customer.first_name`, `order.total_price`, …;
    /// see `VARIABLE_SOURCES`); empty text counts as missing.
    pub values: BTreeMap<String, String>,
    /// Lower case.
    pub customer_tags: Vec<String>,
    pub segments: Vec<Uuid>,
    pub lists: Vec<Uuid>,
    pub total_spent_cents: Option<i64>,
    pub last_order_at: Option<DateTime<Utc>>,
    /// The trigger's order (or checkout).
    pub order_total_cents: Option<i64>,
    pub order_item_count: Option<i64>,
    /// Tags of the products in the trigger's order, lower case.
    pub order_product_tags: Vec<String>,
    pub last_message: Option<LastMessage>,
    /// Inbound messages after the run's last message (or since the run
    /// reached its waiting condition).
    pub replies: Vec<Reply>,
}

impl Facts {
    pub fn new(consent: MarketingState) -> Self {
        Facts {
            consent,
            templates: BTreeMap::new(),
            values: BTreeMap::new(),
            customer_tags: Vec::new(),
            segments: Vec::new(),
            lists: Vec::new(),
            total_spent_cents: None,
            last_order_at: None,
            order_total_cents: None,
            order_item_count: None,
            order_product_tags: Vec::new(),
            last_message: None,
            replies: Vec::new(),
        }
    }

    /// Folds an event into the facts (a reply, a newer status).
    pub fn absorb(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::Reply { at, button_id } => {
                let r = Reply {
                    at: *at,
                    button_id: button_id.clone(),
                };
                if !self.replies.contains(&r) {
                    self.replies.push(r);
                }
            }
            RunEvent::MessageStatus { message_id, status } => {
                if let Some(m) = &mut self.last_message
                    && (m.message_id.is_none() || m.message_id == Some(*message_id))
                {
                    m.status = *status;
                }
            }
        }
    }
}

/// An event for a waiting run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    Reply {
        at: DateTime<Utc>,
        button_id: Option<String>,
    },
    MessageStatus {
        message_id: Uuid,
        status: MessageStatus,
    },
}

/// Which facts a flow version can read, so the server loads only those
/// (a flow without list conditions never queries list membership, one
/// without actions never reads templates). Computed once per version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactNeeds {
    /// Template statuses (an action node exists).
    pub templates: bool,
    /// The trigger's order: totals, items, values for rendering.
    pub order: bool,
    pub order_product_tags: bool,
    pub last_order_at: bool,
    pub lists: bool,
    pub segments: bool,
    /// The run's last message and the replies after it.
    pub messages: bool,
}

impl FactNeeds {
    pub fn of(flow: &super::Flow) -> Self {
        use super::{Condition, NodeKind, Rule};
        fn walk(rules: &[Rule], n: &mut FactNeeds) {
            for r in rules {
                match r {
                    Rule::Group(g) => walk(&g.rules, n),
                    Rule::Condition(c) => match c {
                        Condition::MessageDeliveryStatus { .. }
                        | Condition::UserReplyStatus { .. } => n.messages = true,
                        Condition::OrderRecency { .. } => n.last_order_at = true,
                        Condition::OrderValue { .. } | Condition::ItemCountInOrder { .. } => {
                            n.order = true;
                        }
                        Condition::ProductInOrderHasTag { .. } => {
                            n.order = true;
                            n.order_product_tags = true;
                        }
                        Condition::InSegment { .. } => n.segments = true,
                        Condition::InList { .. } => n.lists = true,
                        Condition::CustomerTag { .. } | Condition::TotalSpent { .. } => {}
                    },
                }
            }
        }
        let mut n = FactNeeds::default();
        for node in &flow.nodes {
            match &node.kind {
                NodeKind::Condition(c) => walk(&c.group.rules, &mut n),
                // Rendering may read any value source (order.* included).
                NodeKind::Action(_) => {
                    n.templates = true;
                    n.order = true;
                }
                _ => {}
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::FactNeeds;
    use crate::automation::Flow;

    fn flow(rules: serde_json::Value, action: bool) -> Flow {
        let mut nodes = vec![
            json!({"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"}),
            json!({"id": "c", "type": "condition", "group": {"op": "or", "rules": rules}}),
        ];
        let mut edges = vec![json!({"from": "t", "to": "c"})];
        if action {
            nodes.push(json!({"id": "a", "type": "action", "template_id": uuid::Uuid::nil()}));
            edges.push(json!({"from": "c", "to": "a", "branch": "yes"}));
        }
        Flow::parse(&json!({"nodes": nodes, "edges": edges})).expect("flow")
    }

    #[test]
    fn needs_follow_the_conditions_and_actions() {
        let n = FactNeeds::of(&flow(
            json!([{"condition": "ORDER_VALUE", "operator": ">", "value": 100}]),
            true,
        ));
        assert_eq!(
            n,
            FactNeeds {
                templates: true,
                order: true,
                ..FactNeeds::default()
            }
        );
        let n = FactNeeds::of(&flow(
            json!([{"condition": "CUSTOMER_TAG", "tag": "vip"},
                   {"op": "and", "rules": [
                       {"condition": "ORDER_RECENCY", "operator": "<", "days": 30},
                       {"condition": "PRODUCT_IN_ORDER_HAS_TAG", "tag": "gift"},
                       {"condition": "IN_LIST", "list_id": uuid::Uuid::nil()}]}]),
            false,
        ));
        assert_eq!(
            n,
            FactNeeds {
                order: true,
                order_product_tags: true,
                last_order_at: true,
                lists: true,
                ..FactNeeds::default()
            }
        );
    }
}
