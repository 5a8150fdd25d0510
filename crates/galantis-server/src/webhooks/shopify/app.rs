//! The app's own topics: its subscription (the plan), one-time purchases
//! (bought credits) and uninstallation.

use galantis_core::billing::{AppSubscription, Plan, SubscriptionEffect, subscription_effect};
use galantis_core::{DomainEvent, ShopDomain};
use galantis_store::TenantTx;
use galantis_store::control::tenants as control_tenants;
use galantis_store::tenant::webhook_events::WebhookEvent;
use galantis_store::tenant::{billing, settings};

use super::super::parse::string;
use super::{HandlerError, Outcome, version};
use crate::jobs::JobContext;

const APP_SUBSCRIPTION: &str = "app_subscription";
/// The subscription versions already acted on (newest last, bounded).
const APP_SUBSCRIPTION_SEEN: &str = "app_subscription_seen";
const SEEN_KEPT: usize = 50;

/// `app_subscriptions/update`: the plan follows the shop's app subscription
/// (design.md §4 "Billing"). Only a change that is newer than the one acted
/// on moves the plan; see [`subscription_effect`] for the rules.
pub(super) async fn subscription(
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
    // One version of the subscription, one event: a redelivery (or the same
    // version arriving again after a newer one) is recorded as ignored.
    let seen_key = format!(
        "{}|{}|{}",
        incoming.id,
        incoming.status.to_ascii_uppercase(),
        incoming.updated_at_ms
    );
    let mut seen: Vec<String> = settings::get(tx, APP_SUBSCRIPTION_SEEN)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if seen.contains(&seen_key) {
        out.ignored = Some("this subscription version was already processed".into());
        return Ok(());
    }
    seen.push(seen_key);
    let drop = seen.len().saturating_sub(SEEN_KEPT);
    seen.drain(..drop);
    settings::put(tx, APP_SUBSCRIPTION_SEEN, &serde_json::json!(seen)).await?;
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
    let ev = DomainEvent::AppSubscriptionUpdated {
        name: incoming.name,
        status: incoming.status,
        plan: plan.map(|p| p.as_str().to_owned()),
    };
    out.event(tx, ev).await?;
    Ok(())
}

/// `app_purchases_one_time/update`: bought credits arrive when Shopify
/// reports the one-time purchase ACTIVE; see
/// [`billing::apply_purchase_status`] for why a late, repeated or
/// contradicting report changes nothing. A purchase Galantis did not create
/// (another app's, or a forged id) is recorded as ignored and never grants.
pub(super) async fn purchase(
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
        billing::PurchaseUpdate::Updated { .. } => {
            if let Some(ev) = event {
                out.event(tx, ev).await?;
            }
        }
    }
    Ok(())
}

/// `app/uninstalled`: the tenant stops sending; its data stays until
/// `shop/redact`.
pub(super) async fn uninstalled(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let shop =
        ShopDomain::parse(&e.origin).map_err(|err| HandlerError::Invalid(err.to_string()))?;
    control_tenants::deactivate(&ctx.app.db, &shop).await?;
    out.event(tx, DomainEvent::AppUninstalled { shop }).await?;
    Ok(())
}
