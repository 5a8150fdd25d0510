//! Credits on the send path: one charge when Meta accepts a billable
//! message, one refund when Meta reports it `failed` without a delivery,
//! usage warnings at 80 % and 90 %, and the check before queueing.

use chrono::{DateTime, Utc};
use galantis_core::billing::threshold_reached;
use galantis_store::tenant::billing;
use galantis_store::tenant::domain_events::{self, NewDomainEvent};
use galantis_store::tenant::sending::{self as store, failed_undelivered};
use galantis_store::{StoreError, TenantTx};
use serde_json::json;
use uuid::Uuid;

/// Credits a new billable send may use: the balance less what queued
/// billable messages already hold.
#[derive(Debug, Clone, Copy)]
pub struct Availability {
    pub balance: i64,
    pub reserved: i64,
}

impl Availability {
    pub fn available(&self) -> i64 {
        self.balance - self.reserved
    }
}

pub async fn availability(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
) -> Result<Availability, StoreError> {
    billing::account(tx, now).await?;
    Ok(Availability {
        balance: billing::balance(tx).await?,
        reserved: store::reserved_credits(tx).await?,
    })
}

/// After Meta accepted message `id` (and its wamid and any early statuses
/// were applied): charge it if billable, refund at once if it already
/// failed undelivered. Both are idempotent.
pub async fn settle(tx: &mut TenantTx, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(m) = store::outbound(tx, id).await? else {
        return Ok(());
    };
    if !m.billable {
        return Ok(());
    }
    let reference = m
        .wamid
        .clone()
        .or(m.idempotency_key.clone())
        .unwrap_or_default();
    if billing::charge(tx, id, &reference, now).await? {
        metrics::counter!("galantis_credits_charged_total").increment(1);
        warn_if_needed(tx, now).await?;
    }
    refund_if_failed(tx, id, now).await
}

/// A status was applied to message `id`: a `failed` without delivery gets
/// its credit back (once; only if it was charged).
pub async fn refund_if_failed(
    tx: &mut TenantTx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(m) = store::outbound(tx, id).await? else {
        return Ok(());
    };
    if m.billable
        && failed_undelivered(&m)
        && billing::refund(
            tx,
            id,
            &format!(
                "Meta reported the message failed without delivery (code {})",
                m.error_code.map_or("none".into(), |c| c.to_string())
            ),
            now,
        )
        .await?
    {
        metrics::counter!("galantis_credits_refunded_total").increment(1);
    }
    Ok(())
}

async fn warn_if_needed(tx: &mut TenantTx, now: DateTime<Utc>) -> Result<(), StoreError> {
    let account = billing::account(tx, now).await?;
    let (used, granted) = billing::period_totals(tx).await?;
    let Some(level) = threshold_reached(used, granted) else {
        return Ok(());
    };
    if billing::raise_warning(tx, i64::from(level)).await? {
        let kind = if level >= 100 {
            "CreditsExhausted"
        } else {
            "CreditsLow"
        };
        domain_events::insert(
            tx,
            &NewDomainEvent {
                kind,
                subject_id: Some(account.period.clone()),
                payload: json!({
                    "threshold_percent": level,
                    "used": used,
                    "granted": granted,
                    "period": account.period,
                }),
            },
            None,
            now.timestamp_millis(),
        )
        .await?;
        tracing::info!(level, "credit usage warning");
    }
    Ok(())
}
