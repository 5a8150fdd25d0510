//! `checkouts/create`, `checkouts/update`, `checkouts/delete`.

use galantis_core::{CountryCode, DomainEvent};
use galantis_store::TenantTx;
use galantis_store::tenant::{checkouts, contacts};
use serde_json::{Value, json};

use super::super::parse::{cents, int, phone_in, string, time_ms};
use super::{HandlerError, Outcome, id_of};

pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let top = p.get("phone").and_then(Value::as_str);
    let raw_phone = top.or_else(|| p.pointer("/shipping_address/phone").and_then(Value::as_str));
    // A national number is read in the country of the address it came with.
    let addresses = if top.is_some() {
        [
            "billing_address",
            "shipping_address",
            "customer/default_address",
        ]
    } else {
        [
            "shipping_address",
            "billing_address",
            "customer/default_address",
        ]
    };
    let country = CountryCode::first_of(addresses.map(|a| {
        p.pointer(&format!("/{a}/country_code"))
            .and_then(Value::as_str)
    }));
    let (phone_e164, _, _) = phone_in(raw_phone, country);
    let contact = match int(p.pointer("/customer/id")) {
        Some(cid) => contacts::by_shopify_id(tx, cid).await?.map(|c| c.id),
        None => None,
    };
    let f = checkouts::CheckoutFields {
        shopify_checkout_id: id_of(p, "id")?,
        token: string(p.get("token")),
        contact_id: contact,
        email: string(p.get("email")),
        phone: phone_e164.clone(),
        total_price: string(p.get("total_price")),
        total_price_cents: cents(p.get("total_price")).unwrap_or(0),
        currency: string(p.get("currency")),
        abandoned_checkout_url: string(p.get("abandoned_checkout_url")),
        line_items: p.get("line_items").cloned().unwrap_or(json!([])),
        completed_at: time_ms(p.get("completed_at")),
        payload: p.clone(),
        version,
    };
    let Some((id, _)) = checkouts::upsert(tx, &f, now).await? else {
        out.ignored = Some("stale update, or the checkout was deleted".into());
        return Ok(());
    };
    if f.completed_at.is_none() && phone_e164.is_some() {
        let ev = DomainEvent::CheckoutUpdated {
            checkout_id: id,
            token: f.token.clone(),
            contact_id: contact,
            has_phone: true,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}

pub(super) async fn delete(tx: &mut TenantTx, p: &Value, now: i64) -> Result<(), HandlerError> {
    checkouts::delete(tx, id_of(p, "id")?, now).await?;
    Ok(())
}
