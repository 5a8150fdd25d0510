//! GDPR webhooks: erase a customer, erase a shop, export a customer's data.
//! Each is logged with its 30-day deadline and completion time. Erasure
//! leaves no phone, email, name, address or message body behind, including
//! in stored webhook payloads and domain events; row counts stay.

use galantis_core::{DomainEvent, SecretName};
use galantis_store::TenantTx;
use galantis_store::tenant::webhook_events::WebhookEvent;
use galantis_store::tenant::{
    compliance, contacts, domain_events, messaging, orders, secrets, webhook_events,
};
use serde_json::{Value, json};

use super::outcome::{HandlerError, Outcome};
use super::parse::{int, string};
use crate::jobs::JobContext;

/// Every identifier of a contact that may appear in stored payloads.
fn needles(c: &contacts::Contact, extra: &[Option<String>]) -> Vec<String> {
    let mut v: Vec<String> = [
        c.email.clone(),
        c.phone.clone(),
        c.phone
            .as_ref()
            .map(|p| p.trim_start_matches('+').to_owned()),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .flatten()
    .collect();
    for name in [&c.first_name, &c.last_name].into_iter().flatten() {
        if name.len() >= 3 {
            v.push(name.clone());
        }
    }
    v.sort();
    v.dedup();
    v
}

/// A request's identity: the customer id and the orders it names, or, when
/// there is no id, a SHA-256 digest of the identifiers (never the
/// identifiers themselves, which erasure scrubs everywhere else).
fn request_key(customer_id: Option<i64>, identifiers: &[Option<String>], orders: &[i64]) -> String {
    let mut orders = orders.to_vec();
    orders.sort_unstable();
    orders.dedup();
    let orders: Vec<String> = orders.iter().map(i64::to_string).collect();
    match customer_id {
        Some(id) => format!("customer:{id}|orders:{}", orders.join(",")),
        None => {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for i in identifiers {
                h.update(i.as_deref().unwrap_or("").as_bytes());
                h.update(b"|");
            }
            h.update(orders.join(",").as_bytes());
            format!("digest:{}", hex::encode(h.finalize()))
        }
    }
}

async fn erase_contact(
    tx: &mut TenantTx,
    c: &contacts::Contact,
    extra: &[Option<String>],
    now: i64,
) -> Result<(), HandlerError> {
    let needles = needles(c, extra);
    messaging::scrub_status_events_for(tx, c.id).await?;
    contacts::redact(tx, c.id, now).await?;
    // Erased contacts leave every list and segment for good.
    galantis_store::tenant::audience::forget_contact(tx, c.id).await?;
    orders::redact(tx, Some(c.id), &[]).await?;
    webhook_events::scrub_mentions(tx, &needles).await?;
    domain_events::scrub_mentions(tx, &needles).await?;
    Ok(())
}

pub async fn customer_redact(
    tx: &mut TenantTx,
    e: &WebhookEvent,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let p = &e.payload;
    let customer_id = int(p.pointer("/customer/id"));
    let email = string(p.pointer("/customer/email")).map(|s| s.to_lowercase());
    let phone = string(p.pointer("/customer/phone"));
    let phone_e164 = super::parse::phone(phone.as_deref()).0;
    let mut found = Vec::new();
    if let Some(id) = customer_id {
        found.extend(contacts::by_shopify_id(tx, id).await?);
    }
    if let Some(p) = &phone_e164 {
        found.extend(contacts::by_phone(tx, p).await?);
    }
    found.sort_by_key(|c| c.id);
    found.dedup_by_key(|c| c.id);
    let extra = [email.clone(), phone.clone(), phone_e164.clone()];
    for c in &found {
        erase_contact(tx, c, &extra, now).await?;
    }
    let order_ids: Vec<i64> = p
        .get("orders_to_redact")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| int(Some(v)))
        .collect();
    orders::redact(tx, None, &order_ids).await?;
    let key = request_key(customer_id, &extra, &order_ids);
    // The request itself carries the identifiers: scrub it too.
    let needles: Vec<String> = extra.into_iter().flatten().collect();
    webhook_events::scrub_mentions(tx, &needles).await?;
    if customer_id.is_some() {
        compliance::clear_exports(tx, customer_id).await?;
    }
    // A redelivered request is erased again above (harmless, and it covers
    // anything synced in between) but answered, and announced, once.
    if compliance::find_by_key(tx, "customers_redact", &key)
        .await?
        .is_some()
    {
        return Ok(());
    }
    compliance::record(
        tx,
        "customers_redact",
        Some(&key),
        customer_id,
        Some(e.id),
        e.received_at.timestamp_millis(),
        now,
        None,
    )
    .await?;
    let ev = DomainEvent::CustomerRedacted {
        shopify_customer_id: customer_id,
        contacts: found.len() as u64,
        orders: order_ids.len() as u64,
    };
    out.event(tx, ev).await?;
    Ok(())
}

pub async fn shop_redact(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let mut erased = 0;
    let mut before = None;
    loop {
        let page = contacts::list(
            tx,
            &contacts::Filter {
                before,
                limit: 500,
                ..Default::default()
            },
        )
        .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for c in &page {
            erase_contact(tx, c, &[], now).await?;
            erased += 1;
        }
    }
    // Deleted contacts are not listed; erase them too.
    galantis_store::tenant::contacts::redact_all_remaining(tx, now).await?;
    galantis_store::tenant::webhook_events::scrub_all(tx).await?;
    galantis_store::tenant::domain_events::scrub_all(tx).await?;
    compliance::clear_exports(tx, None).await?;
    for name in SecretName::ALL {
        secrets::delete(tx, name).await?;
    }
    let _ = ctx;
    compliance::record(
        tx,
        "shop_redact",
        None,
        None,
        Some(e.id),
        e.received_at.timestamp_millis(),
        now,
        None,
    )
    .await?;
    let ev = DomainEvent::ShopRedacted {
        contacts: erased as u64,
    };
    out.event(tx, ev).await?;
    Ok(())
}

pub async fn data_request(
    tx: &mut TenantTx,
    e: &WebhookEvent,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let p = &e.payload;
    let customer_id = int(p.pointer("/customer/id"));
    // One export per request: Shopify names it by `data_request.id`.
    let key = match p.pointer("/data_request/id") {
        Some(Value::Number(n)) => format!("data_request:{n}"),
        Some(Value::String(s)) if !s.is_empty() => format!("data_request:{s}"),
        _ => {
            let ids = [
                string(p.pointer("/customer/email")).map(|s| s.to_lowercase()),
                string(p.pointer("/customer/phone")),
            ];
            let orders: Vec<i64> = p
                .get("orders_requested")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| int(Some(v)))
                .collect();
            request_key(customer_id, &ids, &orders)
        }
    };
    if let Some(id) = compliance::find_by_key(tx, "customers_data_request", &key).await? {
        out.ignored = Some(format!("data request already answered (request {id})"));
        return Ok(());
    }
    let contact = match customer_id {
        Some(id) => contacts::by_shopify_id(tx, id).await?,
        None => None,
    };
    let export = match &contact {
        Some(c) => json!({
            "contact": c,
            "consent_history": contacts::consent_history(tx, c.id).await?,
            "orders": orders::list(tx, Some(c.id), None, 1000).await?,
            "conversations": messaging::conversation_of(tx, c.id).await?,
        }),
        None => json!({ "contact": null, "note": "no data held for this customer" }),
    };
    compliance::record(
        tx,
        "customers_data_request",
        Some(&key),
        customer_id,
        Some(e.id),
        e.received_at.timestamp_millis(),
        now,
        Some(&export),
    )
    .await?;
    let ev = DomainEvent::CustomerDataRequested {
        shopify_customer_id: customer_id,
        found: contact.is_some(),
    };
    out.event(tx, ev).await?;
    Ok(())
}
