//! `checkouts/create`, `checkouts/update`, `checkouts/delete`.

use std::time::Duration;

use galantis_core::{CountryCode, DomainEvent};
use galantis_store::TenantTx;
use galantis_store::tenant::{checkouts, contacts};
use serde_json::{Value, json};

use super::super::parse::{cents, int, phone_in, string, time_ms};
use super::{HandlerError, Outcome};
use crate::abandoned_checkout;

pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    abandon_after: Duration,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let now = out.at().timestamp_millis();
    let key = key(p)?;
    // The first usable number wins: the buyer's own entry at checkout, then
    // the addresses they typed, then what their customer record holds. A
    // national number is read in the country of the address it came with
    // (the others' countries after it).
    let country_of = |addresses: [&str; 3]| {
        CountryCode::first_of(addresses.map(|a| {
            p.pointer(&format!("/{a}/country_code"))
                .and_then(Value::as_str)
        }))
    };
    let phone_e164 = [
        (
            "/phone",
            [
                "billing_address",
                "shipping_address",
                "customer/default_address",
            ],
        ),
        (
            "/billing_address/phone",
            [
                "billing_address",
                "shipping_address",
                "customer/default_address",
            ],
        ),
        (
            "/shipping_address/phone",
            [
                "shipping_address",
                "billing_address",
                "customer/default_address",
            ],
        ),
        (
            "/customer/phone",
            [
                "customer/default_address",
                "billing_address",
                "shipping_address",
            ],
        ),
    ]
    .iter()
    .find_map(|(ptr, addresses)| {
        phone_in(
            p.pointer(ptr).and_then(Value::as_str),
            country_of(*addresses),
        )
        .0
    });
    let contact = match int(p.pointer("/customer/id")) {
        Some(cid) => contacts::by_shopify_id(tx, cid).await?.map(|c| c.id),
        None => None,
    };
    let f = checkouts::CheckoutFields {
        shopify_checkout_id: key.shopify_checkout_id,
        token: key.token.map(str::to_owned),
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
        out.ignored = Some("stale or repeated update, or the checkout was deleted".into());
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
        // A new version of an open checkout: the wait starts again.
        abandoned_checkout::arm(tx, id, f.token.as_deref(), out.at(), abandon_after).await?;
    } else {
        abandoned_checkout::disarm(tx, &[(id, f.token.clone())]).await?;
    }
    Ok(())
}

pub(super) async fn delete(tx: &mut TenantTx, p: &Value, now: i64) -> Result<(), HandlerError> {
    let key = key(p)?;
    let id = checkouts::delete(tx, key, now).await?;
    abandoned_checkout::disarm(tx, &[(id, key.token.map(str::to_owned))]).await?;
    Ok(())
}

/// Current API versions may send a checkout with its `token` and no
/// numeric `id` (older ones send both); either identifies it. `cart_token`
/// names the cart, not the checkout, and several checkouts can share it.
fn key(p: &Value) -> Result<checkouts::CheckoutKey<'_>, HandlerError> {
    let k = checkouts::CheckoutKey {
        shopify_checkout_id: int(p.get("id")),
        token: p
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty()),
    };
    if k.shopify_checkout_id.is_none() && k.token.is_none() {
        return Err(HandlerError::Invalid(
            "payload has neither a numeric `id` nor a `token`".into(),
        ));
    }
    Ok(k)
}
