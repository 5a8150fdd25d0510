//! Shopify topic handlers: payload → stored state + domain events, one
//! module per resource. Out-of-order delivery is normal: stale updates are
//! skipped by the repositories (`updated_at`), an update before its create
//! is an upsert, and deleted records are never resurrected.

mod app;
mod checkouts;
mod collections;
mod customers;
mod orders;
mod products;

use galantis_store::TenantTx;
use galantis_store::tenant::webhook_events::WebhookEvent;
use serde_json::Value;

use super::outcome::{HandlerError, Outcome};
use super::parse::{int, time_ms};
use super::topics::ShopifyTopic;
use crate::jobs::JobContext;

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
    let mut out = Outcome::new(e.id, ctx.now());
    let Some(topic) = ShopifyTopic::parse(&e.topic) else {
        out.ignored = Some(format!("no handler for topic {}", e.topic));
        return Ok(out);
    };
    use ShopifyTopic::*;
    match topic {
        CustomersCreate | CustomersUpdate => {
            customers::upsert(tx, p, version(p, e), now, &mut out).await?
        }
        CustomersDelete => customers::delete(tx, p, now, &mut out).await?,
        CustomersMarketingConsentUpdate | CustomersMarketingConsentUpdated => {
            customers::sms_consent(tx, p, true, version(p, e), now, &mut out).await?
        }
        SmsMarketingConsentUpdate => {
            customers::sms_consent(tx, p, false, version(p, e), now, &mut out).await?
        }
        EmailMarketingConsentUpdate => {
            customers::email_consent(tx, p, version(p, e), now, &mut out).await?
        }
        WhatsAppMarketingConsentUpdate => {
            customers::whatsapp_consent(tx, p, version(p, e), now, &mut out).await?
        }
        CustomerTagsAdded => customers::seed_tags(tx, p, true, now, &out).await?,
        CustomerTagsRemoved => customers::seed_tags(tx, p, false, now, &out).await?,
        CustomerTagsAddedEvent => customers::tags(tx, p, true, now, &out).await?,
        CustomerTagsRemovedEvent => customers::tags(tx, p, false, now, &out).await?,
        OrdersCreate | OrdersUpdated | OrdersCancelled => {
            orders::upsert(tx, p, version(p, e), now, &mut out).await?
        }
        ProductsCreate | ProductsUpdate => {
            products::upsert(tx, p, version(p, e), now, &mut out).await?
        }
        ProductsDelete => products::delete(ctx, tx, p, now, &mut out).await?,
        InventoryLevelsUpdate => products::inventory_level(tx, p, version(p, e), &out).await?,
        CollectionsCreate | CollectionsUpdate => {
            collections::upsert(ctx, tx, p, version(p, e), now, &mut out).await?
        }
        CollectionsDelete => collections::delete(ctx, tx, p, now).await?,
        CheckoutsCreate | CheckoutsUpdate => {
            let after = std::time::Duration::from_secs(
                ctx.app.config.automations.checkout_abandoned_after_secs,
            );
            checkouts::upsert(tx, p, version(p, e), after, &mut out).await?
        }
        CheckoutsDelete => checkouts::delete(tx, p, now).await?,
        AppSubscriptionsUpdate => app::subscription(ctx, tx, e, &mut out).await?,
        AppPurchasesOneTimeUpdate => app::purchase(ctx, tx, e, &mut out).await?,
        AppUninstalled => app::uninstalled(ctx, tx, e, &out).await?,
        CustomersRedact => super::compliance::customer_redact(tx, e, now, &mut out).await?,
        ShopRedact => super::compliance::shop_redact(ctx, tx, e, now, &mut out).await?,
        CustomersDataRequest => super::compliance::data_request(tx, e, now, &mut out).await?,
    }
    Ok(out)
}
