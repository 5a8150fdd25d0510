//! Shopify topic handlers: payload → stored state + domain events.
//! Out-of-order delivery is normal: stale updates are skipped by the
//! repositories (`updated_at`), an update before its create is an upsert,
//! and deleted records are never resurrected.

use galantis_core::billing::{AppSubscription, Plan, SubscriptionEffect, subscription_effect};
use galantis_core::{ConsentSource, MarketingState};
use galantis_store::TenantTx;
use galantis_store::control::tenants as control_tenants;
use galantis_store::tenant::catalog::{self, CollectionFields, ProductFields, VariantFields};
use galantis_store::tenant::contacts::{self, CustomerFields, Upserted};
use galantis_store::tenant::orders::{self, OrderFields};
use galantis_store::tenant::webhook_events::WebhookEvent;
use galantis_store::tenant::{billing, checkouts, settings};
use serde_json::{Value, json};

use super::parse::{cents, int, phone, string, tags, time_ms};
use super::process::{HandlerError, Outcome};
use crate::jobs::JobContext;
use crate::jobs::kinds::collections::enqueue_sync;

fn id_of(v: &Value, key: &str) -> Result<i64, HandlerError> {
    int(v.get(key)).ok_or_else(|| HandlerError::Invalid(format!("payload has no numeric `{key}`")))
}

/// The version used to order updates: the payload's `updated_at`, else when
/// Shopify triggered the webhook, else when we received it.
fn version(p: &Value, e: &WebhookEvent) -> i64 {
    time_ms(p.get("updated_at"))
        .or(e.triggered_at.map(|t| t.timestamp_millis()))
        .unwrap_or(e.received_at.timestamp_millis())
}

pub async fn handle(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
) -> Result<Outcome, HandlerError> {
    let p = &e.payload;
    let now = ctx.now().timestamp_millis();
    let mut out = Outcome::default();
    match e.topic.as_str() {
        "customers/create" | "customers/update" => {
            customer(tx, p, version(p, e), now, &mut out).await?
        }
        "customers/delete" => {
            let id = id_of(p, "id")?;
            let contact = contacts::mark_deleted(tx, id, now).await?;
            out.event(
                "CustomerDeleted",
                contact.map(|c| c.to_string()),
                json!({ "shopify_customer_id": id }),
            );
            if let Some(c) = contact {
                crate::audience::contact_changed(tx, c, now, &mut out).await?;
            }
        }
        "customers/marketing_consent_update" | "customers/marketing_consent_updated" => {
            consent(tx, p, version(p, e), now, &mut out).await?
        }
        "customer_tags/added" | "customer_tags/removed" => {
            let id = id_of(p, "customer_id")?;
            let Some(contact) = contacts::by_shopify_id(tx, id).await? else {
                // Tags can arrive before the customer itself: retry later,
                // when customers/create has been processed.
                return Err(HandlerError::Transient(anyhow::anyhow!(
                    "customer {id} is not synced yet"
                )));
            };
            let added = e.topic.ends_with("added");
            let list = tags(p.get(if added { "tags_added" } else { "tags_removed" }));
            let (add, remove) = if added {
                (list.clone(), vec![])
            } else {
                (vec![], list.clone())
            };
            let before = contact.tags.clone();
            contacts::change_tags(tx, contact.id, &add, &remove, now).await?;
            for t in add
                .iter()
                .filter(|t| !before.iter().any(|b| b.eq_ignore_ascii_case(t)))
            {
                out.event(
                    "CustomerTagged",
                    Some(contact.id.to_string()),
                    json!({ "tag": t }),
                );
            }
            if !remove.is_empty() {
                out.event(
                    "CustomerUntagged",
                    Some(contact.id.to_string()),
                    json!({ "tags": remove }),
                );
            }
            crate::audience::contact_changed(tx, contact.id, now, &mut out).await?;
        }
        "orders/create" | "orders/updated" | "orders/cancelled" => {
            order(tx, p, version(p, e), now, &mut out).await?
        }
        "products/create" | "products/update" => {
            product(tx, p, version(p, e), now, &mut out).await?
        }
        "products/delete" => {
            let id = id_of(p, "id")?;
            catalog::delete_product(tx, id, now).await?;
            // Shopify drops a deleted product from its collections: so do
            // the stored contents, and the segments that mention those
            // collections are re-evaluated by their sync.
            for c in catalog::remove_product_from_collections(tx, id).await? {
                enqueue_sync(tx, c, ctx.now()).await?;
            }
            out.event(
                "ProductDeleted",
                Some(id.to_string()),
                json!({ "shopify_product_id": id }),
            );
        }
        "collections/create" | "collections/update" => {
            let f = CollectionFields {
                shopify_collection_id: id_of(p, "id")?,
                title: string(p.get("title")),
                handle: string(p.get("handle")),
                products_count: int(p.get("products_count")),
                payload: p.clone(),
                version: version(p, e),
            };
            if catalog::upsert_collection(tx, &f, now).await? {
                // The webhook has no product list: a job reads it.
                enqueue_sync(tx, f.shopify_collection_id, ctx.now()).await?;
            } else {
                out.ignored = Some("stale or deleted collection".into());
            }
        }
        "collections/delete" => {
            let id = id_of(p, "id")?;
            catalog::delete_collection(tx, id, now).await?;
            catalog::set_collection_products(tx, id, &[]).await?;
            // Re-evaluates the segments that mention it.
            enqueue_sync(tx, id, ctx.now()).await?;
        }
        "checkouts/create" | "checkouts/update" => {
            checkout(tx, p, version(p, e), now, &mut out).await?
        }
        "checkouts/delete" => checkouts::delete(tx, id_of(p, "id")?, now).await?,
        "inventory_levels/update" => {
            let item = id_of(p, "inventory_item_id")?;
            let location = id_of(p, "location_id")?;
            let available = int(p.get("available")).unwrap_or(0);
            if let Some(r) =
                catalog::apply_inventory_level(tx, item, location, available, version(p, e)).await?
            {
                out.event(
                    "VariantRestocked",
                    Some(r.shopify_variant_id.to_string()),
                    serde_json::to_value(&r).unwrap_or_default(),
                );
            }
        }
        "app_subscriptions/update" => app_subscription(ctx, tx, e, &mut out).await?,
        "app_purchases_one_time/update" => app_purchase(ctx, tx, e, &mut out).await?,
        "app/uninstalled" => {
            let shop = galantis_core::ShopDomain::parse(&e.origin)
                .map_err(|err| HandlerError::Invalid(err.to_string()))?;
            control_tenants::deactivate(&ctx.app.db, &shop).await?;
            out.event("AppUninstalled", None, json!({ "shop": shop }));
        }
        "customers/redact" => super::compliance::customer_redact(tx, e, now, &mut out).await?,
        "shop/redact" => super::compliance::shop_redact(ctx, tx, e, now, &mut out).await?,
        "customers/data_request" => super::compliance::data_request(tx, e, now, &mut out).await?,
        other => out.ignored = Some(format!("no handler for topic {other}")),
    }
    Ok(out)
}

/// The plan follows the shop's app subscription (design.md §4 "Billing").
/// Only a change that is newer than the one acted on moves the plan; see
/// [`subscription_effect`] for the rules.
async fn app_subscription(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let s = e
        .payload
        .get("app_subscription")
        .ok_or_else(|| HandlerError::Invalid("payload has no `app_subscription`".into()))?;
    let text = |key: &str| {
        string(s.get(key))
            .ok_or_else(|| HandlerError::Invalid(format!("app_subscription has no `{key}`")))
    };
    let incoming = AppSubscription {
        id: text("admin_graphql_api_id")?,
        name: text("name")?,
        status: text("status")?,
        updated_at_ms: version(s, e),
    };
    let current: Option<AppSubscription> = settings::get(tx, APP_SUBSCRIPTION)
        .await?
        .and_then(|v| serde_json::from_value(v).ok());
    let effect = subscription_effect(current.as_ref(), &incoming);
    let plan = match effect {
        SubscriptionEffect::Activate(plan) => Some(plan),
        SubscriptionEffect::End => Some(Plan::Trial),
        SubscriptionEffect::Nothing => None,
    };
    if let Some(plan) = plan {
        let tier = billing::account(tx, ctx.now()).await?.tier_credits;
        billing::set_plan(tx, plan, tier, ctx.now()).await?;
    }
    if plan.is_some() || current.is_none() {
        let stored = serde_json::to_value(&incoming).unwrap_or_default();
        settings::put(tx, APP_SUBSCRIPTION, &stored).await?;
    }
    out.event(
        "AppSubscriptionUpdated",
        None,
        json!({
            "name": incoming.name,
            "status": incoming.status,
            "plan": plan.map(Plan::as_str),
        }),
    );
    Ok(())
}

const APP_SUBSCRIPTION: &str = "app_subscription";

/// Bought credits arrive when Shopify reports the one-time purchase
/// ACTIVE; see [`billing::apply_purchase_status`] for why a late, repeated
/// or contradicting report changes nothing. A purchase Galantis did not
/// create (another app's, or a forged id) is recorded as ignored and never
/// grants.
async fn app_purchase(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let p = e
        .payload
        .get("app_purchase_one_time")
        .ok_or_else(|| HandlerError::Invalid("payload has no `app_purchase_one_time`".into()))?;
    let text = |key: &str| {
        string(p.get(key))
            .ok_or_else(|| HandlerError::Invalid(format!("app_purchase_one_time has no `{key}`")))
    };
    let id = text("admin_graphql_api_id")?;
    let status = text("status")?.to_ascii_uppercase();
    let (update, event) = crate::billing::apply_status(tx, &id, &status, ctx.now()).await?;
    match update {
        billing::PurchaseUpdate::Unknown => {
            out.ignored = Some(format!("no purchase {id} was made through Galantis"));
        }
        billing::PurchaseUpdate::Unchanged(p) => {
            out.ignored = Some(format!(
                "purchase {id} is already {}; {status} changes nothing",
                p.status
            ));
        }
        billing::PurchaseUpdate::Updated { purchase, .. } => {
            out.event(
                crate::billing::PURCHASE_EVENT,
                Some(purchase.id.to_string()),
                event.unwrap_or_default(),
            );
        }
    }
    Ok(())
}

fn customer_fields(p: &Value, version: i64) -> Result<CustomerFields, HandlerError> {
    let (phone_e164, phone_raw, phone_status) = phone(p.get("phone").and_then(Value::as_str));
    let state = p
        .pointer("/sms_marketing_consent/state")
        .and_then(Value::as_str)
        .map(MarketingState::from_shopify_sms);
    Ok(CustomerFields {
        shopify_customer_id: id_of(p, "id")?,
        first_name: string(p.get("first_name")),
        last_name: string(p.get("last_name")),
        email: string(p.get("email")).map(|e| e.to_lowercase()),
        phone: phone_e164,
        phone_raw,
        phone_status,
        locale: string(p.get("locale")),
        country: string(p.pointer("/default_address/country_code")),
        tags: tags(p.get("tags")),
        marketing_state: state,
        consent_updated_at: time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")),
        updated_at: version,
    })
}

async fn customer(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let f = customer_fields(p, version)?;
    match contacts::upsert_customer(tx, &f, now).await? {
        Upserted::Created(c) => {
            out.event(
                "CustomerCreated",
                Some(c.id.to_string()),
                json!({ "shopify_customer_id": f.shopify_customer_id }),
            );
            for t in &c.tags {
                out.event(
                    "CustomerTagged",
                    Some(c.id.to_string()),
                    json!({ "tag": t }),
                );
            }
            crate::audience::contact_changed(tx, c.id, now, out).await?;
        }
        Upserted::Updated { before, after } => {
            let mut changed = Vec::new();
            macro_rules! diff {
                ($($field:ident),*) => { $( if before.$field != after.$field { changed.push(stringify!($field)); } )* };
            }
            diff!(
                first_name,
                last_name,
                email,
                phone,
                locale,
                country,
                tags,
                marketing_state
            );
            if !changed.is_empty() {
                out.event(
                    "CustomerUpdated",
                    Some(after.id.to_string()),
                    json!({ "changed": changed }),
                );
            }
            for t in after
                .tags
                .iter()
                .filter(|t| !before.tags.iter().any(|b| b.eq_ignore_ascii_case(t)))
            {
                out.event(
                    "CustomerTagged",
                    Some(after.id.to_string()),
                    json!({ "tag": t }),
                );
            }
            if before.marketing_state != after.marketing_state {
                out.event(
                    "MarketingConsentChanged",
                    Some(after.id.to_string()),
                    json!({ "from": before.marketing_state, "to": after.marketing_state }),
                );
            }
            crate::audience::contact_changed(tx, after.id, now, out).await?;
        }
        Upserted::Skipped => out.ignored = Some("stale update, or the customer was deleted".into()),
    }
    Ok(())
}

async fn consent(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    let Some(state) = p
        .pointer("/sms_marketing_consent/state")
        .and_then(Value::as_str)
    else {
        out.ignored = Some("no SMS consent in payload".into());
        return Ok(());
    };
    let state = MarketingState::from_shopify_sms(state);
    let contact = match contacts::by_shopify_id(tx, id).await? {
        Some(c) => c,
        // Consent before the customer itself: create the contact from what we have.
        None => match contacts::upsert_customer(tx, &customer_fields(p, 0)?, now).await? {
            Upserted::Created(c) => *c,
            _ => return Ok(()),
        },
    };
    let at = time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")).unwrap_or(version);
    if contacts::set_marketing_state(
        tx,
        contact.id,
        state,
        ConsentSource::ShopifyCustomer,
        Some(&format!("customer:{id}")),
        at,
        now,
    )
    .await?
    {
        out.event(
            "MarketingConsentChanged",
            Some(contact.id.to_string()),
            json!({ "from": contact.marketing_state, "to": state.as_str() }),
        );
    }
    crate::audience::contact_changed(tx, contact.id, now, out).await?;
    Ok(())
}

async fn order(
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
    let subject = |id: uuid::Uuid| Some(id.to_string());
    let (order, was_cancelled) = match orders::upsert(tx, &f, now).await? {
        orders::Upserted::Created(o) => {
            out.event("OrderCreated", subject(o.id), json!({ "shopify_order_id": f.shopify_order_id, "contact_id": contact, "total_price": f.total_price }));
            (o, false)
        }
        orders::Upserted::Updated { before, after } => (after, before.cancelled_at.is_some()),
        orders::Upserted::Skipped => {
            // A stale payload may still have filled gaps (totals) in the order.
            if let Some(c) = contact {
                contacts::refresh_order_stats(tx, c, now).await?;
                crate::audience::contact_changed(tx, c, now, out).await?;
            }
            out.ignored = Some("stale update, or the order was deleted".into());
            return Ok(());
        }
    };
    if order.cancelled_at.is_some() && !was_cancelled {
        out.event(
            "OrderCancelled",
            subject(order.id),
            json!({ "shopify_order_id": f.shopify_order_id, "reason": order.cancel_reason }),
        );
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
            out.event(
                "OrderShipped",
                subject(order.id),
                json!({ "shopify_order_id": f.shopify_order_id, "tracking_company": fl.get("tracking_company"), "tracking_number": fl.get("tracking_number"), "tracking_url": fl.get("tracking_url") }),
            );
        }
    }
    if let Some(token) = &f.checkout_token
        && checkouts::complete_by_token(tx, token, now).await? > 0
    {
        out.event(
            "CheckoutCompleted",
            Some(token.clone()),
            json!({ "shopify_order_id": f.shopify_order_id }),
        );
    }
    if let Some(c) = contact {
        contacts::refresh_order_stats(tx, c, now).await?;
        crate::audience::contact_changed(tx, c, now, out).await?;
    }
    Ok(())
}

async fn product(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let variants = p
        .get("variants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some(VariantFields {
                shopify_variant_id: int(v.get("id"))?,
                title: string(v.get("title")),
                sku: string(v.get("sku")),
                price: string(v.get("price")),
                compare_at_price: string(v.get("compare_at_price")),
                inventory_quantity: int(v.get("inventory_quantity")),
                inventory_item_id: int(v.get("inventory_item_id")),
                option1: string(v.get("option1")),
                option2: string(v.get("option2")),
                option3: string(v.get("option3")),
                image_id: int(v.get("image_id")),
                position: int(v.get("position")),
            })
        })
        .collect();
    let f = ProductFields {
        shopify_product_id: id_of(p, "id")?,
        title: string(p.get("title")),
        body_html: string(p.get("body_html")),
        vendor: string(p.get("vendor")),
        product_type: string(p.get("product_type")),
        handle: string(p.get("handle")),
        status: string(p.get("status")),
        tags: tags(p.get("tags")),
        images: p.get("images").cloned().unwrap_or(json!([])),
        options: p.get("options").cloned().unwrap_or(json!([])),
        payload: p.clone(),
        version,
        variants,
    };
    let r = catalog::upsert_product(tx, &f, now).await?;
    if r.skipped {
        out.ignored = Some("stale update, or the product was deleted".into());
        return Ok(());
    }
    let kind = if r.created {
        "ProductCreated"
    } else {
        "ProductUpdated"
    };
    out.event(
        kind,
        Some(f.shopify_product_id.to_string()),
        json!({ "shopify_product_id": f.shopify_product_id }),
    );
    for restock in r.restocks {
        out.event(
            "VariantRestocked",
            Some(restock.shopify_variant_id.to_string()),
            serde_json::to_value(&restock).unwrap_or_default(),
        );
    }
    Ok(())
}

async fn checkout(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let raw_phone = p
        .get("phone")
        .and_then(Value::as_str)
        .or_else(|| p.pointer("/shipping_address/phone").and_then(Value::as_str));
    let (phone_e164, _, _) = phone(raw_phone);
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
        out.event(
            "CheckoutUpdated",
            Some(id.to_string()),
            json!({ "token": f.token, "contact_id": contact, "has_phone": true }),
        );
    }
    Ok(())
}
