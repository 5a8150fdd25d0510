//! Loading what the step function reads about a run's contact.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};
use galantis_core::MarketingState;
use galantis_core::automation::{Facts, LastMessage, Reply};
use galantis_core::templates::TemplateStatus;
use galantis_store::tenant::automations::runs::{self, Run};
use galantis_store::tenant::contacts::{self, Contact};
use galantis_store::tenant::sending as outbound;
use galantis_store::tenant::templates::{self, TemplateRecord};
use galantis_store::tenant::{lists, orders, segments};
use galantis_store::{StoreError, TenantTx};
use serde_json::Value;
use uuid::Uuid;

use super::versions::Version;

/// "129.90" → 12990.
pub(super) fn cents(s: &str) -> Option<i64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: i64 = int.parse().ok()?;
    let mut f: String = frac.chars().take(2).collect();
    while f.len() < 2 {
        f.push('0');
    }
    let f: i64 = f.parse().ok()?;
    Some(int * 100 + if int < 0 { -f } else { f })
}

/// The templates one transaction has read, by id: a step reads its flow's
/// templates for the facts and again to render a send, and a restock page
/// reads one template for all its runs.
#[derive(Default)]
pub(super) struct Templates(HashMap<Uuid, Option<TemplateRecord>>);

impl Templates {
    pub(super) async fn get(
        &mut self,
        tx: &mut TenantTx,
        id: Uuid,
    ) -> Result<Option<&TemplateRecord>, StoreError> {
        if let Entry::Vacant(e) = self.0.entry(id) {
            e.insert(templates::get(tx, id).await?);
        }
        Ok(self.0.get(&id).and_then(Option::as_ref))
    }
}

/// The facts of `run` now, only those its version reads (`needs`).
/// `contact` is the run's contact when the caller has just read it (the
/// enrolment gate did).
pub(super) async fn load(
    tx: &mut TenantTx,
    run: &Run,
    version: &Version,
    contact: Option<Contact>,
    known: &mut Templates,
) -> Result<Facts, StoreError> {
    let needs = version.needs;
    let contact = match contact {
        Some(c) => Some(c),
        None => contacts::get(tx, run.contact_id).await?,
    };
    let consent = match &contact {
        Some(c) if !c.deleted => c.marketing_state,
        _ => MarketingState::Redacted,
    };
    let mut f = Facts::new(consent);
    if needs.templates {
        for id in version.flow.template_ids() {
            if let Some(t) = known.get(tx, id).await?
                && let Some(s) = TemplateStatus::from_meta(&t.status)
            {
                f.templates.insert(id, s);
            }
        }
    }
    if let Some(c) = &contact {
        for (k, v) in [
            ("customer.first_name", &c.first_name),
            ("customer.last_name", &c.last_name),
            ("customer.email", &c.email),
            ("customer.phone", &c.phone),
        ] {
            if let Some(v) = v {
                f.values.insert(k.into(), v.clone());
            }
        }
        f.customer_tags = c.tags.iter().map(|t| t.to_lowercase()).collect();
        f.total_spent_cents = Some(c.total_spent_cents);
        if needs.lists {
            f.lists = lists::of_contact(tx, c.id)
                .await?
                .into_iter()
                .map(|l| l.0)
                .collect();
        }
        if needs.segments {
            f.segments = segments::of_contact(tx, c.id)
                .await?
                .into_iter()
                .map(|s| s.0)
                .collect();
        }
    }
    // The contact's last order: its time, and the order whose products'
    // tags are read when the trigger had none (a tag or list trigger).
    let last_order = if needs.last_order_at || (needs.order_product_tags && run.order_id.is_none())
    {
        orders::last_of_contact(tx, run.contact_id).await?
    } else {
        None
    };
    f.last_order_at = last_order.map(|(_, at)| at);
    if needs.order_product_tags
        && run.order_id.is_none()
        && run.checkout_id.is_none()
        && let Some((oid, _)) = last_order
        && let Some(o) = orders::get(tx, oid).await?
    {
        f.order_product_tags = orders::product_tags(tx, &o.line_items).await?;
    }
    if needs.order
        && let Some(oid) = run.order_id
        && let Some(o) = orders::get(tx, oid).await?
    {
        if needs.order_product_tags {
            f.order_product_tags = orders::product_tags(tx, &o.line_items).await?;
        }
        if let Some(n) = o.order_number {
            f.values.insert("order.order_number".into(), n.to_string());
        }
        if let Some(t) = &o.total_price {
            f.values.insert("order.total_price".into(), t.clone());
            f.order_total_cents = cents(t);
        }
        if let Value::Array(items) = &o.line_items {
            if let Some(t) = items
                .iter()
                .find_map(|i| i.get("title").and_then(Value::as_str))
            {
                f.values.insert("order.product_name".into(), t.to_owned());
            }
            f.order_item_count = Some(
                items
                    .iter()
                    .map(|i| i.get("quantity").and_then(Value::as_i64).unwrap_or(1))
                    .sum(),
            );
        }
    }
    // The trigger's own variables (checkout, tracking…) win.
    if let Value::Object(ctx) = &run.context {
        for (k, v) in ctx {
            if let Some(s) = v.as_str() {
                f.values.insert(k.clone(), s.to_owned());
            }
        }
    }
    if run.checkout_id.is_some() {
        if let Some(t) = f.values.get("checkout.total_price") {
            f.order_total_cents = cents(t);
        }
        if let Some(n) = f.values.get("checkout.item_count") {
            f.order_item_count = n.parse().ok();
        }
    }
    if !needs.messages {
        return Ok(f);
    }
    if let Some(mid) = run.last_message_id
        && let Some(m) = outbound::outbound(tx, mid).await?
    {
        f.last_message = Some(LastMessage {
            message_id: Some(mid),
            sent_at: m.created_at,
            status: m.status,
        });
    }
    if let Some(since) = replies_since(run, &f) {
        for (ms, button_id) in
            runs::inbound_since(tx, run.contact_id, since.timestamp_millis()).await?
        {
            if let Some(at) = DateTime::from_timestamp_millis(ms) {
                f.replies.push(Reply { at, button_id });
            }
        }
    }
    Ok(f)
}

/// Where a run's replies count from: after its last message, else since
/// the run reached its node (`None`: neither is known).
pub(super) fn replies_since(run: &Run, facts: &Facts) -> Option<DateTime<Utc>> {
    facts
        .last_message
        .as_ref()
        .map(|m| m.sent_at)
        .or(run.state.reached_at)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cents_parse() {
        assert_eq!(super::cents("129.9"), Some(12990));
        assert_eq!(super::cents("100"), Some(10000));
        assert_eq!(super::cents("0.05"), Some(5));
        assert_eq!(super::cents("x"), None);
    }
}
