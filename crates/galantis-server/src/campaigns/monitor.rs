//! `MonitorCampaignJob` (`campaign.monitor`, lane `monitor`, one per
//! campaign at a time): during and after dispatch, every
//! `[campaigns] monitor_interval_secs`:
//!
//! 1. Bring recipients up to date with their messages (the status webhooks
//!    land on the messages) and tally sent / delivered / read / failed /
//!    skipped; a change is stored and recorded as `CampaignProgress`
//!    (pushed as `campaign.progress`).
//! 2. Once dispatch is over and every message is final — delivered, read
//!    or failed; or only `sent` ones remain `[campaigns]
//!    monitor_timeout_secs` after dispatch ended — the campaign becomes
//!    `SENT` (none failed), `PARTIALLY_SENT` (some failed, some sent) or
//!    `FAILED` (none sent), recorded as `CampaignCompleted`
//!    (`campaign.completed`), with the job's completion in one transaction.
//! 3. A cancelled campaign gets one last tally; a paused one keeps being
//!    tallied.

use std::time::Duration;

use galantis_core::campaign::{Action, CampaignStatus, transition};
use galantis_core::{DomainEvent, JobKind, Lane, UniqueScope};
use galantis_store::events::record;
use galantis_store::tenant::campaigns::recipients::SyncScope;
use galantis_store::tenant::campaigns::{self as store, Counts, recipients};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobContext, JobError};

/// About how often a tick during dispatch syncs every recipient.
const FULL_SYNC_MS: i64 = 30_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorCampaignJob {
    pub campaign_id: Uuid,
}

impl JobKind for MonitorCampaignJob {
    const KIND: &'static str = "campaign.monitor";
    const LANE: Lane = Lane::Monitor;
    const MAX_ATTEMPTS: u32 = 25;
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some(format!("campaign.monitor:{}", self.campaign_id))
    }
}

/// The final status of a campaign whose recipients add up to `k` (pure).
pub fn verdict(k: &Counts) -> CampaignStatus {
    if k.sent == 0 {
        CampaignStatus::Failed
    } else if k.failed > 0 {
        CampaignStatus::PartiallySent
    } else {
        CampaignStatus::Sent
    }
}

fn event(id: Uuid, status: CampaignStatus, k: &Counts, done: bool) -> DomainEvent {
    let (campaign_id, status, total, sent, delivered, read, failed, skipped) = (
        id,
        status.as_str().to_owned(),
        k.recipients,
        k.sent,
        k.delivered,
        k.read,
        k.failed,
        k.skipped,
    );
    if done {
        DomainEvent::CampaignCompleted {
            campaign_id,
            status,
            total,
            sent,
            delivered,
            read,
            failed,
            skipped,
        }
    } else {
        DomainEvent::CampaignProgress {
            campaign_id,
            status,
            total,
            sent,
            delivered,
            read,
            failed,
            skipped,
        }
    }
}

pub async fn run(ctx: JobContext, job: MonitorCampaignJob) -> Result<(), JobError> {
    let tenant = ctx.tenant().ok_or_else(|| {
        JobError::Permanent(anyhow::anyhow!("campaign.monitor belongs to a tenant"))
    })?;
    let cfg = &ctx.app.config.campaigns;
    let now = ctx.now();
    let now_ms = now.timestamp_millis();
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    let Some(c) = store::get(&mut tx, job.campaign_id).await? else {
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    };
    // While dispatch runs, only recipients in flight are synced on each
    // tick (what progress and settling need); every recipient (a delivered
    // one may since have been read) about every FULL_SYNC, once dispatch
    // is over, and on the last tally of a paused or cancelled campaign.
    let interval_ms = i64::try_from(cfg.monitor_interval_secs * 1000).unwrap_or(i64::MAX);
    let scope = if c.status != CampaignStatus::Pending
        || c.dispatched_at.is_some()
        || now_ms.rem_euclid(FULL_SYNC_MS) < interval_ms
    {
        SyncScope::All
    } else {
        SyncScope::InFlight
    };
    recipients::sync_from_messages(&mut tx, c.id, scope, now_ms).await?;
    let t = recipients::tally(&mut tx, c.id).await?;
    if t.counts != c.counts {
        store::set_counts(&mut tx, c.id, &t.counts, now_ms).await?;
        if c.status == CampaignStatus::Pending || c.status == CampaignStatus::Paused {
            record(&mut tx, &event(c.id, c.status, &t.counts, false), now).await?;
        }
    }
    let settled = t.undispatched == 0
        && t.in_flight == 0
        && (t.awaiting_status == 0
            || c.dispatched_at.is_some_and(|d| {
                (now - d).to_std().unwrap_or_default()
                    >= Duration::from_secs(cfg.monitor_timeout_secs)
            }));
    let finish = match c.status {
        CampaignStatus::Pending if c.dispatched_at.is_some() && settled => {
            let to = verdict(&t.counts);
            debug_assert!(transition(c.status, Action::Complete(to)).is_ok());
            if store::transition(&mut tx, c.id, &[CampaignStatus::Pending], to, None, now_ms)
                .await?
            {
                record(&mut tx, &event(c.id, to, &t.counts, true), now).await?;
                metrics::counter!("galantis_campaigns_completed_total", "status" => to.as_str())
                    .increment(1);
                tracing::info!(campaign = %c.id, status = to.as_str(), "campaign completed");
            }
            true
        }
        CampaignStatus::Pending | CampaignStatus::Paused => false,
        // Cancelled or final: this was the last tally.
        _ => true,
    };
    if finish {
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    tx.commit().await?;
    Err(JobError::Snooze(Duration::from_secs(
        cfg.monitor_interval_secs,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_the_failures() {
        let k = |sent, failed| Counts {
            recipients: 10,
            sent,
            failed,
            ..Default::default()
        };
        assert_eq!(verdict(&k(10, 0)), CampaignStatus::Sent);
        assert_eq!(verdict(&k(9, 1)), CampaignStatus::PartiallySent);
        assert_eq!(verdict(&k(0, 10)), CampaignStatus::Failed);
        assert_eq!(verdict(&k(0, 0)), CampaignStatus::Failed);
    }
}
