//! `SendCampaignMessagesBatchJob` (`campaign.send_batch`, lane
//! `campaigns`): one per campaign at a time (unique while active); it runs
//! a batch, then snoozes until the next one is due.
//!
//! 1. The campaign is not `PENDING` (paused, cancelled, final): done —
//!    resuming enqueues a new one.
//! 2. Outside the send window: snooze until it opens.
//! 3. Resolve the audience into recipients, page by page (consent,
//!    reachability, exclusions; unique per contact and per phone); the
//!    cursor is stored with each page, so a crash resumes where it was.
//! 4. Top up the queue to about two seconds of the number's rate ahead of
//!    the send jobs (at most `[campaigns] batch_max` per batch), through
//!    `queue_many`, each with the key
//!    `campaign:{campaign}:{contact}`: a retried batch, a crashed node or a
//!    second dispatcher returns the earlier messages and sends nothing
//!    twice. Refusals are per recipient (`SKIPPED` with
//!    `CUSTOMER_IS_NOT_OPTED_IN` for a contact who unsubscribed since
//!    launch, `FAILED` with the code otherwise): one never stops the
//!    others. The batch holds the campaign's row (`UPDATE … WHERE status =
//!    'PENDING'`), so a cancel or pause either lands before it (nothing is
//!    queued) or waits for it.
//! 5. Pace: snooze a quarter second and top up again (the `message.send`
//!    jobs are paced by the limiter, so Meta never sees more than the rate,
//!    and the lead keeps them from ever waiting for the dispatcher); when
//!    every recipient is handled, mark the campaign dispatched and complete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::campaign::{CampaignStatus, RecipientStatus};
use galantis_core::sending::SendRefusal;
use galantis_core::{JobKind, Lane, MessageSource, RetrySchedule, TenantId, UniqueScope};
use galantis_store::tenant::audience as audience_store;
use galantis_store::tenant::campaigns::{self as store, Campaign, recipients};
use galantis_store::tenant::{contacts, templates};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::content;
use crate::jobs::{JobContext, JobError};
use crate::sending::connection;
use crate::sending::queue::queue_many;
use crate::state::AppState;

/// Contacts resolved per page (and per transaction).
pub const RESOLVE_PAGE: u32 = 1000;
/// Seconds of the number's rate kept queued ahead of the send jobs.
const LEAD_SECS: f64 = 2.0;
/// How often the dispatcher tops the lead up.
const TICK: Duration = Duration::from_millis(250);
/// Pages resolved per run before yielding the worker.
const RESOLVE_PAGES_PER_RUN: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendCampaignMessagesBatchJob {
    pub campaign_id: Uuid,
}

impl JobKind for SendCampaignMessagesBatchJob {
    const KIND: &'static str = "campaign.send_batch";
    const LANE: Lane = Lane::Campaigns;
    const MAX_ATTEMPTS: u32 = 25;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(1),
        factor: 2.0,
        cap: Duration::from_secs(300),
        jitter: 0.2,
    };
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some(format!("campaign.dispatch:{}", self.campaign_id))
    }
}

fn permanent(msg: impl Into<String>) -> JobError {
    JobError::Permanent(anyhow::anyhow!(msg.into()))
}

pub async fn run(ctx: JobContext, job: SendCampaignMessagesBatchJob) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| permanent("campaign.send_batch belongs to a tenant"))?;
    let app = &ctx.app;
    let now = ctx.now();
    let mut tx = app.db.tenant_read(tenant).await?;
    let c = store::get(&mut tx, job.campaign_id).await?;
    tx.commit().await?;
    // 1.
    let Some(c) = c.filter(|c| c.status == CampaignStatus::Pending) else {
        return done(&ctx, tenant).await;
    };
    // 2.
    if let Some(w) = c.window()
        && !w.is_open(now)
    {
        let wait = (w.next_opening(now) - now).to_std().unwrap_or_default();
        tracing::debug!(campaign = %c.id, ?wait, "outside the send window: waiting");
        return Err(JobError::Snooze(wait.max(Duration::from_secs(1))));
    }
    // 3.
    if !c.resolved {
        resolve(app, tenant, &c, now).await?;
        return Err(JobError::Snooze(Duration::ZERO));
    }
    // 4.
    let conn = connection::resolve(app, tenant).await?;
    let number = match c.phone_number_id.as_deref() {
        Some(id) => conn.number(id),
        None => conn.default_number(),
    };
    let rate = number.map_or(app.sending.config().default_messages_per_second, |n| {
        n.messages_per_second
    });
    // Keep about LEAD_SECS of the rate queued ahead of the send jobs (they
    // pace themselves with the limiter): enough that they never wait for
    // the dispatcher, little enough that a pause or cancel leaves little
    // already queued.
    let rate = rate.max(1);
    let mut tx = app.db.tenant_read(tenant).await?;
    let ahead = recipients::awaiting_send(&mut tx, c.id).await?;
    tx.commit().await?;
    let target = (f64::from(rate) * LEAD_SECS).ceil() as i64;
    let room = (target - ahead).max(0);
    if room < i64::from(rate.min(app.config.campaigns.batch_max)) / 2 {
        return Err(JobError::Snooze(TICK));
    }
    // Fill the room batch after batch in this run: a snooze (and a claim)
    // between batches would cap dispatch at a few batches per second, below
    // the rate of a fast number.
    let mut room = room;
    while room > 0 {
        let batch = (room as u32).min(app.config.campaigns.batch_max);
        match queue_batch(&ctx, tenant, &c, &conn, batch, now).await? {
            // Completed with the campaign's `dispatched` mark, in one
            // transaction: completing again would find the claim gone and
            // report it as lost to a rescue.
            None => return Ok(()),
            Some(0) => return Err(JobError::Snooze(Duration::ZERO)),
            Some(n) => room -= n as i64,
        }
    }
    // 5.
    Err(JobError::Snooze(TICK))
}

async fn done(ctx: &JobContext, tenant: TenantId) -> Result<(), JobError> {
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Resolves up to [`RESOLVE_PAGES_PER_RUN`] pages of the audience into
/// recipients, each page with its cursor in one transaction.
pub async fn resolve(
    app: &AppState,
    tenant: TenantId,
    c: &Campaign,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let spec = super::store_spec(&c.audience);
    let mut cursor = c.resolve_cursor;
    let now_ms = now.timestamp_millis();
    for _ in 0..RESOLVE_PAGES_PER_RUN {
        let mut tx = app.db.tenant_tx(tenant).await?;
        let page = audience_store::resolve(&mut tx, &spec, cursor, RESOLVE_PAGE).await?;
        let last = page.last().map(|r| r.contact_id);
        recipients::insert(&mut tx, c.id, &page, now_ms).await?;
        let finished = page.len() < RESOLVE_PAGE as usize;
        store::resolved_to(&mut tx, c.id, last, finished, now_ms).await?;
        tx.commit().await?;
        cursor = last.or(cursor);
        if finished {
            break;
        }
    }
    Ok(())
}

/// Queues the next batch. `None`: nobody is left (the campaign is marked
/// dispatched); `Some(n)`: `n` recipients were handled.
async fn queue_batch(
    ctx: &JobContext,
    tenant: TenantId,
    c: &Campaign,
    conn: &connection::Resolved,
    batch: u32,
    now: DateTime<Utc>,
) -> Result<Option<usize>, JobError> {
    let now_ms = now.timestamp_millis();
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    // Holds the campaign's row until commit: a cancel or pause waits for
    // this batch, or lands first and this batch queues nothing.
    if !store::transition(
        &mut tx,
        c.id,
        &[CampaignStatus::Pending],
        CampaignStatus::Pending,
        None,
        now_ms,
    )
    .await?
    {
        tx.commit().await?;
        return Ok(Some(0));
    }
    let pending = recipients::undispatched(&mut tx, c.id, batch).await?;
    if pending.is_empty() {
        store::mark_dispatched(&mut tx, c.id, now_ms).await?;
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(campaign = %c.id, "campaign dispatched");
        return Ok(None);
    }
    let template = templates::get(&mut tx, c.template_id).await?;
    let ids: Vec<Uuid> = pending.iter().map(|r| r.contact_id).collect();
    let people = contacts::get_many(&mut tx, &ids).await?;
    let mut sends = Vec::with_capacity(pending.len());
    let mut slots = Vec::with_capacity(pending.len());
    for r in &pending {
        let contact = people.get(&r.contact_id);
        let (Some(t), Some(contact)) = (&template, contact) else {
            let (code, reason) = if template.is_none() {
                (
                    "template_not_approved",
                    "the campaign's template was deleted",
                )
            } else {
                ("unknown_contact", "the contact no longer exists")
            };
            recipients::refuse(&mut tx, r.id, RecipientStatus::Failed, code, reason, now_ms)
                .await?;
            continue;
        };
        match content::components(&c.variables_mapping, contact) {
            Ok(components) => {
                sends.push(content::outgoing(
                    t,
                    components,
                    r.contact_id,
                    c.phone_number_id.clone(),
                    content::key(c.id, r.contact_id),
                    MessageSource::Campaign,
                ));
                slots.push(r.id);
            }
            Err(var) => {
                recipients::refuse(
                    &mut tx,
                    r.id,
                    RecipientStatus::Failed,
                    "missing_variable",
                    &format!("variable {var} has no value for this contact and no fallback"),
                    now_ms,
                )
                .await?;
            }
        }
    }
    let outcomes = queue_many(&mut tx, conn, now, &sends).await?;
    let mut queued = Vec::with_capacity(outcomes.len());
    for (rid, outcome) in slots.iter().zip(outcomes) {
        match outcome {
            Ok(q) => queued.push((*rid, q.message.id)),
            Err(refusal) => {
                let (status, code) = match &refusal {
                    SendRefusal::NotOptedIn { .. } => {
                        (RecipientStatus::Skipped, "CUSTOMER_IS_NOT_OPTED_IN")
                    }
                    r => (RecipientStatus::Failed, r.code()),
                };
                recipients::refuse(&mut tx, *rid, status, code, &refusal.to_string(), now_ms)
                    .await?;
            }
        }
    }
    recipients::set_messages(&mut tx, &queued, now_ms).await?;
    tx.commit().await?;
    metrics::counter!("galantis_campaign_recipients_dispatched_total")
        .increment(pending.len() as u64);
    Ok(Some(pending.len()))
}
