//! `checkout.abandon_timer`: the timer that decides when an open checkout
//! counts as abandoned and records `CheckoutAbandoned` (see
//! `galantis_core::checkout` for the rules).
//!
//! Arming, from the Shopify handlers, in the webhook's transaction:
//! 1. `checkouts/create|update` storing a new version of an open checkout
//!    with a phone: the checkout's due time becomes now + `[automations]
//!    checkout_abandoned_after_secs`, and the one job per checkout (unique
//!    key per token) is enqueued or moved to it — never duplicated.
//! 2. A version that is completed, or has no phone, disarms it; so do
//!    `checkouts/delete` and an order carrying the checkout's token.
//!
//! Firing, in one tenant transaction with the job's completion:
//! 1. Serialise with webhook processing (the tenant's write lock), so the
//!    checkout read is the latest.
//! 2. Re-read the checkout and [`decide`]: drop (closed, disarmed, already
//!    recorded for this version), wait (moved by a later update while the
//!    job was running: snooze to the new due time, nothing written), or fire.
//! 3. Fire: mark the version abandoned (a conditional update — the second
//!    writer of a version finds it marked), record `CheckoutAbandoned` with
//!    the recovery URL, line items, total and currency, complete the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::checkout::{Abandonment, CheckoutLineItem, decide};
use galantis_core::{DomainEvent, JobKind, Lane, RetrySchedule, UniqueScope};
use galantis_store::StoreError;
use galantis_store::TenantTx;
use galantis_store::tenant::{checkouts, contacts};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobContext, JobError};

/// The abandonment timer of one checkout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutAbandonTimer {
    pub checkout_id: Uuid,
    /// The checkout's token when it has one (the unique key's name).
    #[serde(default)]
    pub token: Option<String>,
}

impl JobKind for CheckoutAbandonTimer {
    const KIND: &'static str = "checkout.abandon_timer";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(5),
        factor: 2.0,
        cap: Duration::from_secs(600),
        jitter: 0.2,
    };
    /// Held while waiting or running only: once a timer has fired, the
    /// checkout's next version arms a new one.
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some(timer_key(self.token.as_deref(), self.checkout_id))
    }
}

/// One timer per checkout token (per checkout, for one without a token).
fn timer_key(token: Option<&str>, checkout_id: Uuid) -> String {
    match token {
        Some(t) => format!("checkout_abandon:{t}"),
        None => format!("checkout_abandon:id:{checkout_id}"),
    }
}

pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<CheckoutAbandonTimer, _, _>(run);
}

/// Arms (or restarts) the timer of checkout `id`: due `after` from `now`
/// (unless the checkout is already completed or deleted).
pub async fn arm(
    tx: &mut TenantTx,
    id: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
    after: Duration,
) -> Result<(), StoreError> {
    let due = now + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::days(30));
    if !checkouts::arm_abandonment(tx, id, due.timestamp_millis()).await? {
        // Completed (an order came first) or deleted: nothing to wait for.
        return disarm(tx, &[(id, token.map(str::to_owned))]).await;
    }
    let job = CheckoutAbandonTimer {
        checkout_id: id,
        token: token.map(str::to_owned),
    };
    let new = crate::jobs::new_job(&job, due)
        .map_err(|e| StoreError::Config(format!("job payload: {e}")))?;
    galantis_store::jobs::schedule(tx, &new).await
}

/// Disarms the timers of `checkouts` (id and token) and deletes their
/// waiting jobs.
pub async fn disarm(
    tx: &mut TenantTx,
    checkouts: &[(Uuid, Option<String>)],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = checkouts.iter().map(|c| c.0).collect();
    checkouts::disarm_abandonment(tx, &ids).await?;
    for (id, token) in checkouts {
        galantis_store::jobs::cancel_unique(tx, &timer_key(token.as_deref(), *id)).await?;
        if token.is_some() {
            // Armed before its token was known.
            galantis_store::jobs::cancel_unique(tx, &timer_key(None, *id)).await?;
        }
    }
    Ok(())
}

pub async fn run(ctx: JobContext, job: CheckoutAbandonTimer) -> Result<(), JobError> {
    let tenant = ctx.tenant().ok_or_else(|| {
        JobError::Permanent(anyhow::anyhow!("checkout timers belong to a tenant"))
    })?;
    let now = ctx.now();
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    // 1. After any webhook being applied now; before the next.
    tx.serialize_tenant_writes().await?;
    // 2. The checkout as it is now.
    let row = checkouts::for_abandonment(&mut tx, job.checkout_id).await?;
    let version = match decide(row.as_ref().map(|r| &r.state), now.timestamp_millis()) {
        Abandonment::Wait { until } => {
            tx.rollback().await?;
            let wait = (until - now.timestamp_millis()).max(0);
            return Err(JobError::Snooze(Duration::from_millis(wait as u64)));
        }
        Abandonment::Drop(why) => {
            tracing::debug!(checkout = %job.checkout_id, why, "abandonment timer dropped");
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            return Ok(());
        }
        Abandonment::Fire { version } => version,
    };
    let row = row.expect("decide fires only for a stored checkout");
    // 3. Once per version.
    if !checkouts::mark_abandoned(&mut tx, row.id, version, now.timestamp_millis()).await? {
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    // A guest checkout names no customer; its phone may still be a contact's.
    let contact_id = match (row.contact_id, &row.phone) {
        (Some(c), _) => Some(c),
        (None, Some(p)) => contacts::by_phone(&mut tx, p).await?.map(|c| c.id),
        (None, None) => None,
    };
    let event = DomainEvent::CheckoutAbandoned {
        checkout_id: row.id,
        contact_id,
        token: row.token.clone(),
        version: Some(version),
        abandoned_checkout_url: row.abandoned_checkout_url.clone(),
        total_price: row.total_price.clone(),
        currency: row.currency.clone(),
        line_items: CheckoutLineItem::from_shopify(&row.line_items),
    };
    galantis_store::events::record(&mut tx, &event, now).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    metrics::counter!("galantis_checkouts_abandoned_total").increment(1);
    Ok(())
}
