//! `orders/create`, `orders/updated`, `orders/cancelled`.

use galantis_core::DomainEvent;
use galantis_store::TenantTx;
use galantis_store::tenant::orders::{self, OrderFields};
use galantis_store::tenant::{checkouts, contacts};
use serde_json::Value;

use super::super::parse::{cents, int, string, tags, time_ms};
use super::{HandlerError, Outcome, id_of};
use crate::abandoned_checkout;
use crate::audience::contact_changed;

pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let shopify_customer_id = int(p.pointer("/customer/id"));
    let contact = match shopify_customer_id {
        Some(cid) => contacts::by_shopify_id(tx, cid).await?.map(|c| c.id),
        None => None,
    };
    let f = OrderFields {
        shopify_order_id: id_of(p, "id")?,
        shopify_customer_id,
        contact_id: contact,
        order_number: int(p.get("order_number")),
        total_price: string(p.get("total_price")),
        total_price_cents: cents(p.get("total_price")),
        currency: string(p.get("currency")),
        financial_status: string(p.get("financial_status")),
        fulfillment_status: string(p.get("fulfillment_status")),
        checkout_token: string(p.get("checkout_token")),
        tags: p.get("tags").map(|t| tags(Some(t))),
        line_items: p.get("line_items").cloned(),
        cancelled_at: time_ms(p.get("cancelled_at")),
        cancel_reason: string(p.get("cancel_reason")),
        created_at: time_ms(p.get("created_at")),
        version,
        payload: p.clone(),
    };
    let (order, was_cancelled) = match orders::upsert(tx, &f, now).await? {
        orders::Upserted::Created(o) => {
            let ev = DomainEvent::OrderCreated {
                order_id: o.id,
                shopify_order_id: f.shopify_order_id,
                contact_id: contact,
                total_price: f.total_price.clone(),
            };
            out.event(tx, ev).await?;
            (o, false)
        }
        orders::Upserted::Updated { before, after } => (after, before.cancelled_at.is_some()),
        orders::Upserted::Skipped => {
            // A stale payload may still have filled gaps (totals) in the order.
            if let Some(c) = contact {
                contacts::refresh_order_stats(tx, c, now).await?;
                contact_changed(tx, c, now, out.cause()).await?;
            }
            out.ignored = Some("stale update, or the order was deleted".into());
            return Ok(());
        }
    };
    if order.cancelled_at.is_some() && !was_cancelled {
        let ev = DomainEvent::OrderCancelled {
            order_id: order.id,
            shopify_order_id: f.shopify_order_id,
            reason: order.cancel_reason.clone(),
        };
        out.event(tx, ev).await?;
    }
    let shipped = p
        .get("fulfillments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|fl| fl.get("status").and_then(Value::as_str) == Some("success"));
    if let Some(fl) = shipped {
        let at = time_ms(fl.get("created_at")).unwrap_or(version);
        if orders::mark_shipped(tx, order.id, at).await? {
            let ev = DomainEvent::OrderShipped {
                order_id: order.id,
                shopify_order_id: f.shopify_order_id,
                tracking_company: string(fl.get("tracking_company")),
                tracking_number: string(fl.get("tracking_number")),
                tracking_url: string(fl.get("tracking_url")),
            };
            out.event(tx, ev).await?;
        }
    }
    if let Some(token) = &f.checkout_token {
        if checkouts::complete_by_token(tx, token, now).await? > 0 {
            let ev = DomainEvent::CheckoutCompleted {
                token: token.clone(),
                shopify_order_id: f.shopify_order_id,
            };
            out.event(tx, ev).await?;
        }
        // The checkout became this order: it was not abandoned.
        let completed: Vec<_> = checkouts::by_token(tx, token)
            .await?
            .into_iter()
            .map(|c| (c.id, c.token))
            .collect();
        abandoned_checkout::disarm(tx, &completed).await?;
    }
    if let Some(c) = contact {
        contacts::refresh_order_stats(tx, c, now).await?;
        contact_changed(tx, c, now, out.cause()).await?;
    }
    Ok(())
}
