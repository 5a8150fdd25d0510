//! Credits bought through Shopify and granted by operators (design.md §4
//! "Billing"; issue 11: credits are bought, not typed in).
//!
//! A purchase is a one-time Shopify app charge created by
//! `POST /api/v1/billing/purchases`. Its credits are added once, when
//! Shopify reports it ACTIVE: through the `app_purchases_one_time/update`
//! webhook, or through [`CheckPurchase`], which reads the status back while
//! the purchase is PENDING, in case the webhook never arrives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::{DomainEvent, JobKind, Lane, TenantId, UniqueScope};
use galantis_store::tenant::billing::{self, PurchaseUpdate};
use galantis_store::{Db, StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobContext, JobError};
use crate::shopify_client::{Read, ShopifyError};

/// Shopify expires a purchase nobody approved after two days; past this
/// age a purchase Shopify still calls PENDING is no longer asked about.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::days(3);

/// Reads one PENDING purchase's status back from Shopify.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckPurchase {
    pub purchase_id: Uuid,
}

impl JobKind for CheckPurchase {
    const KIND: &'static str = "billing.purchase_check";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some(format!("purchase_check:{}", self.purchase_id))
    }
}

/// Applies a status Shopify reported for a purchase, in `tx`; returns the
/// domain event to record, if the status moved.
pub async fn apply_status(
    tx: &mut TenantTx,
    shopify_id: &str,
    status: &str,
    now: DateTime<Utc>,
) -> Result<(PurchaseUpdate, Option<DomainEvent>), StoreError> {
    let update = billing::apply_purchase_status(tx, shopify_id, status, now).await?;
    let event = match &update {
        PurchaseUpdate::Updated { purchase, granted } => Some(DomainEvent::CreditPurchaseUpdated {
            purchase_id: purchase.id,
            shopify_id: purchase.shopify_id.clone(),
            pack: purchase.pack.clone(),
            status: purchase.status.clone(),
            credits_granted: if *granted { purchase.credits } else { 0 },
        }),
        _ => None,
    };
    Ok((update, event))
}

pub async fn run_check(ctx: JobContext, job: CheckPurchase) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("purchases belong to a tenant")))?;
    let db = ctx.app.db.clone();
    let mut tx = db.tenant_read(tenant).await?;
    let p = billing::purchase(&mut tx, job.purchase_id).await?;
    tx.commit().await?;
    let Some(p) = p.filter(|p| p.status == "PENDING") else {
        return Ok(());
    };
    let status = match ctx.app.shopify.purchase_status(tenant, &p.shopify_id).await {
        Ok(Read::Found(s)) => s,
        Ok(Read::NotFound) => {
            tracing::warn!(%tenant, shopify_id = %p.shopify_id, "Shopify does not know the purchase");
            return Ok(());
        }
        Ok(Read::Skipped(why)) => {
            tracing::info!(%tenant, reason = why, "purchase check skipped");
            return Ok(());
        }
        Err(ShopifyError::Retryable(m)) => return Err(JobError::Retry(anyhow::anyhow!(m))),
        Err(ShopifyError::Permanent(m)) => return Err(JobError::Permanent(anyhow::anyhow!(m))),
    };
    if status == "PENDING" {
        if ctx.now() - p.created_at > GIVE_UP_AFTER {
            tracing::warn!(%tenant, shopify_id = %p.shopify_id, "purchase still PENDING at Shopify; no longer checked");
            return Ok(());
        }
        return Err(JobError::Snooze(Duration::from_secs(
            ctx.app.config.billing.purchase_check_secs,
        )));
    }
    let mut tx = db.tenant_tx(tenant).await?;
    let (_, event) = apply_status(&mut tx, &p.shopify_id, &status, ctx.now()).await?;
    if let Some(e) = event {
        galantis_store::events::record(&mut tx, &e, ctx.now()).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The largest operator grant: a typo guard, not a business rule.
pub const MAX_OPERATOR_GRANT: i64 = 1_000_000;

/// Checks an operator grant's input; returns the reason as recorded.
pub fn operator_grant_input(credits: i64, reason: &str) -> anyhow::Result<&str> {
    if !(1..=MAX_OPERATOR_GRANT).contains(&credits) {
        anyhow::bail!("--credits must be between 1 and {MAX_OPERATOR_GRANT}");
    }
    let reason = reason.trim();
    if reason.is_empty() {
        anyhow::bail!("--reason must say why the credits are granted");
    }
    if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        anyhow::bail!("--reason must be at most 500 characters, without control characters");
    }
    Ok(reason)
}

/// `galantis billing grant`: checks the input, then adds the credits with
/// the operator's reason. Nothing is written when the input is refused.
pub async fn operator_grant(
    db: &Db,
    tenant: TenantId,
    credits: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<billing::LedgerEntry> {
    let reason = operator_grant_input(credits, reason)?;
    let mut tx = db.tenant_tx(tenant).await?;
    let entry = billing::operator_grant(&mut tx, credits, reason, &Uuid::now_v7().to_string(), now)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the grant was not recorded"))?;
    tx.commit().await?;
    Ok(entry)
}

/// Billing's kinds: reading a purchase's status back from Shopify.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<CheckPurchase, _, _>(run_check);
}
