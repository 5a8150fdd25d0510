//! Credits on the send path: one charge when Meta accepts a billable
//! message, one refund when Meta reports it `failed` without a delivery,
//! usage warnings at 80 % and 90 %, and the check before queueing.

use chrono::{DateTime, Utc};
use galantis_core::DomainEvent;
use galantis_core::billing::threshold_reached;
use galantis_store::tenant::billing::{self, Totals};
use galantis_store::tenant::sending::{self as store, Settling, failed_undelivered};
use galantis_store::{StoreError, TenantTx};
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
    // One statement, one snapshot: see `balance_and_reserved`.
    let (balance, reserved) = store::balance_and_reserved(tx).await?;
    Ok(Availability { balance, reserved })
}

/// After Meta accepted message `m` (recorded by
/// `store::record_acceptance` in this transaction, which holds the
/// message's row on PostgreSQL, with any early statuses applied): charge it
/// if billable, refund at once if it already failed undelivered. Both are
/// idempotent. `period` is the account's current period, read by
/// [`billing::account`] at the start of the transaction (before any row
/// lock: rolling a period over takes the tenant lock); the charge holds the
/// account's row until commit, so call this last.
pub async fn settle(
    tx: &mut TenantTx,
    m: &Settling,
    period: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !m.billable {
        return Ok(());
    }
    let period = match period {
        Some(p) => p.to_owned(),
        None => billing::account(tx, now).await?.period,
    };
    let reference = m
        .wamid
        .clone()
        .or(m.idempotency_key.clone())
        .unwrap_or_default();
    if let Some(totals) = billing::charge_in(tx, m.id, &reference, &period, now).await? {
        metrics::counter!("galantis_credits_charged_total").increment(1);
        warn_if_needed(tx, totals, &period, now).await?;
    }
    // The row is held: no status can move between this read and commit.
    if m.failed_undelivered() && refund(tx, m.id, m.error_code, now).await? {
        metrics::counter!("galantis_credits_refunded_total").increment(1);
    }
    Ok(())
}

async fn refund(
    tx: &mut TenantTx,
    id: Uuid,
    error_code: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    billing::refund(
        tx,
        id,
        &format!(
            "Meta reported the message failed without delivery (code {})",
            error_code.map_or("none".into(), |c| c.to_string())
        ),
        now,
    )
    .await
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
    if m.billable && failed_undelivered(&m) && refund(tx, id, m.error_code, now).await? {
        metrics::counter!("galantis_credits_refunded_total").increment(1);
    }
    Ok(())
}

async fn warn_if_needed(
    tx: &mut TenantTx,
    totals: Totals,
    period: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (used, granted) = (totals.used, totals.granted);
    let Some(level) = threshold_reached(used, granted) else {
        return Ok(());
    };
    if i64::from(level) <= totals.warned_level {
        return Ok(());
    }
    if billing::raise_warning(tx, i64::from(level)).await? {
        let (period, threshold_percent) = (period.to_owned(), level);
        let e = if level >= 100 {
            DomainEvent::CreditsExhausted {
                period,
                threshold_percent,
                used,
                granted,
            }
        } else {
            DomainEvent::CreditsLow {
                period,
                threshold_percent,
                used,
                granted,
            }
        };
        galantis_store::events::record(tx, &e, now).await?;
        tracing::info!(level, "credit usage warning");
    }
    Ok(())
}
