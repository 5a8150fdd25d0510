//! The nine triggers and the mapping from a recorded [`DomainEvent`] to the
//! trigger it fires.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::TriggerNode;
use crate::DomainEvent;

/// The nine triggers (design.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriggerKind {
    OrderPlaced,
    OrderCancelled,
    OrderShipped,
    CustomerCreated,
    CustomerTagged,
    AbandonedCheckout,
    BackInStock,
    UserAddedToSegment,
    UserAddedToList,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 9] = [
        TriggerKind::OrderPlaced,
        TriggerKind::OrderCancelled,
        TriggerKind::OrderShipped,
        TriggerKind::CustomerCreated,
        TriggerKind::CustomerTagged,
        TriggerKind::AbandonedCheckout,
        TriggerKind::BackInStock,
        TriggerKind::UserAddedToSegment,
        TriggerKind::UserAddedToList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::OrderPlaced => "ORDER_PLACED",
            TriggerKind::OrderCancelled => "ORDER_CANCELLED",
            TriggerKind::OrderShipped => "ORDER_SHIPPED",
            TriggerKind::CustomerCreated => "CUSTOMER_CREATED",
            TriggerKind::CustomerTagged => "CUSTOMER_TAGGED",
            TriggerKind::AbandonedCheckout => "ABANDONED_CHECKOUT",
            TriggerKind::BackInStock => "BACK_IN_STOCK",
            TriggerKind::UserAddedToSegment => "USER_ADDED_TO_SEGMENT",
            TriggerKind::UserAddedToList => "USER_ADDED_TO_LIST",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|k| k.as_str() == norm)
    }

    /// The domain event kind that fires this trigger.
    pub fn event_kind(self) -> crate::EventKind {
        use crate::EventKind as E;
        match self {
            TriggerKind::OrderPlaced => E::OrderCreated,
            TriggerKind::OrderCancelled => E::OrderCancelled,
            TriggerKind::OrderShipped => E::OrderShipped,
            TriggerKind::CustomerCreated => E::CustomerCreated,
            TriggerKind::CustomerTagged => E::CustomerTagged,
            TriggerKind::AbandonedCheckout => E::CheckoutAbandoned,
            TriggerKind::BackInStock => E::VariantRestocked,
            TriggerKind::UserAddedToSegment => E::UserAddedToSegment,
            TriggerKind::UserAddedToList => E::UserAddedToList,
        }
    }

    /// Whether the trigger is about an order (its conditions may read the
    /// order's value, items and product tags).
    pub fn has_order(self) -> bool {
        matches!(
            self,
            TriggerKind::OrderPlaced | TriggerKind::OrderCancelled | TriggerKind::OrderShipped
        )
    }
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom a trigger fact enrols; the server resolves the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Contact(Uuid),
    /// The contact of this order (none: nobody).
    ContactOfOrder(Uuid),
    /// The contacts subscribed to this variant's back-in-stock notice.
    VariantSubscribers(Uuid),
}

/// A trigger fired by a recorded domain event.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerFact {
    pub trigger: TriggerKind,
    pub audience: Audience,
    /// The enrolment key: one run per (automation, contact, key). Natural
    /// where the thing happens once (`order:<id>`, `customer:<id>`), the
    /// event id where it may happen again (tags, restocks, list entries).
    pub key: String,
    pub occurred_at: DateTime<Utc>,
    /// For [`TriggerNode::matches`]: the tag, segment or list.
    pub tag: Option<String>,
    pub segment_id: Option<Uuid>,
    pub list_id: Option<Uuid>,
    /// What the run's conditions and variables read about the trigger.
    pub order_id: Option<Uuid>,
    pub checkout_id: Option<Uuid>,
    pub variant_id: Option<Uuid>,
    /// Values the event itself carries (`order.total_price`,
    /// `order.tracking_url`…); the server adds what it loads.
    pub variables: BTreeMap<String, String>,
}

/// The trigger `event` fires, if any. `event_id` is the recorded event's id.
pub fn trigger_fact(
    event: &DomainEvent,
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
) -> Option<TriggerFact> {
    let fact = |trigger, audience, key: String| TriggerFact {
        trigger,
        audience,
        key,
        occurred_at,
        tag: None,
        segment_id: None,
        list_id: None,
        order_id: None,
        checkout_id: None,
        variant_id: None,
        variables: BTreeMap::new(),
    };
    let mut f = match event {
        DomainEvent::OrderCreated {
            order_id,
            contact_id,
            total_price,
            ..
        } => {
            let who = match contact_id {
                Some(c) => Audience::Contact(*c),
                None => Audience::ContactOfOrder(*order_id),
            };
            let mut f = fact(TriggerKind::OrderPlaced, who, format!("order:{order_id}"));
            f.order_id = Some(*order_id);
            if let Some(t) = total_price {
                f.variables.insert("order.total_price".into(), t.clone());
            }
            f
        }
        DomainEvent::OrderCancelled { order_id, .. } => {
            let mut f = fact(
                TriggerKind::OrderCancelled,
                Audience::ContactOfOrder(*order_id),
                format!("order_cancelled:{order_id}"),
            );
            f.order_id = Some(*order_id);
            f
        }
        DomainEvent::OrderShipped {
            order_id,
            tracking_company,
            tracking_number,
            tracking_url,
            ..
        } => {
            let mut f = fact(
                TriggerKind::OrderShipped,
                Audience::ContactOfOrder(*order_id),
                format!("order_shipped:{order_id}"),
            );
            f.order_id = Some(*order_id);
            for (k, v) in [
                ("order.tracking_company", tracking_company),
                ("order.tracking_number", tracking_number),
                ("order.tracking_url", tracking_url),
            ] {
                if let Some(v) = v {
                    f.variables.insert(k.into(), v.clone());
                }
            }
            f
        }
        DomainEvent::CustomerCreated { contact_id, .. } => fact(
            TriggerKind::CustomerCreated,
            Audience::Contact(*contact_id),
            format!("customer:{contact_id}"),
        ),
        DomainEvent::CustomerTagged { contact_id, tag } => {
            let mut f = fact(
                TriggerKind::CustomerTagged,
                Audience::Contact(*contact_id),
                format!("event:{event_id}"),
            );
            f.tag = Some(tag.trim().to_lowercase());
            f
        }
        DomainEvent::CheckoutAbandoned {
            checkout_id,
            contact_id: Some(contact_id),
            version,
            abandoned_checkout_url,
            total_price,
            currency,
            line_items,
            ..
        } => {
            // One enrolment per abandoned episode (checkout version); an
            // older row without a version falls back to the event id.
            let key = match version {
                Some(v) => format!("checkout:{checkout_id}:{v}"),
                None => format!("event:{event_id}"),
            };
            let mut f = fact(
                TriggerKind::AbandonedCheckout,
                Audience::Contact(*contact_id),
                key,
            );
            f.checkout_id = Some(*checkout_id);
            let vars = crate::checkout::variables(
                abandoned_checkout_url.as_deref(),
                total_price.as_deref(),
                currency.as_deref(),
                line_items,
            );
            f.variables
                .extend(vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
            f
        }
        DomainEvent::VariantRestocked { variant_id, .. } => {
            let mut f = fact(
                TriggerKind::BackInStock,
                Audience::VariantSubscribers(*variant_id),
                format!("event:{event_id}"),
            );
            f.variant_id = Some(*variant_id);
            f
        }
        DomainEvent::UserAddedToSegment {
            segment_id,
            contact_id,
            ..
        } => {
            let mut f = fact(
                TriggerKind::UserAddedToSegment,
                Audience::Contact(*contact_id),
                format!("event:{event_id}"),
            );
            f.segment_id = Some(*segment_id);
            f
        }
        DomainEvent::UserAddedToList {
            list_id,
            contact_id,
            ..
        } => {
            let mut f = fact(
                TriggerKind::UserAddedToList,
                Audience::Contact(*contact_id),
                format!("event:{event_id}"),
            );
            f.list_id = Some(*list_id);
            f
        }
        _ => return None,
    };
    f.occurred_at = occurred_at;
    Some(f)
}

impl TriggerNode {
    /// Whether this trigger accepts the fact (same kind and, for tag,
    /// segment and list triggers, the same parameter; a missing parameter
    /// matches nothing).
    pub fn matches(&self, fact: &TriggerFact) -> bool {
        if self.trigger != fact.trigger {
            return false;
        }
        match self.trigger {
            TriggerKind::CustomerTagged => {
                self.tag.is_some() && self.tag.as_deref() == fact.tag.as_deref()
            }
            TriggerKind::UserAddedToSegment => {
                self.segment_id.is_some() && self.segment_id == fact.segment_id
            }
            TriggerKind::UserAddedToList => self.list_id.is_some() && self.list_id == fact.list_id,
            _ => true,
        }
    }
}
