//! `campaign.start`: the durable tick at a campaign's `scheduled_at`,
//! enqueued with the campaign's schedule (in the same transaction) and
//! keyed by (campaign, time), so rescheduling adds a new tick and the old
//! one finds nothing to do.
//!
//! 1. The campaign is no longer `SCHEDULED` for this time: done.
//! 2. Too early (a clock that moved, a rescheduled tick): snooze until then.
//! 3. Later than `[campaigns] missed_schedule_grace_secs` (no node ran at
//!    the time): `CANCELLED` with reason `missed_schedule` — never silently
//!    nothing.
//! 4. Otherwise launch (`launch::start_in` from `SCHEDULED` only); a check
//!    that refuses cancels the campaign with the check's code as reason.
//!
//! Everything, with the job's completion, in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::campaign::CampaignStatus;
use galantis_core::{JobKind, Lane, UniqueScope};
use galantis_store::TenantTx;
use galantis_store::tenant::campaigns::{self as store, Campaign};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::launch::{Started, start_in};
use crate::jobs::{JobContext, JobError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartCampaign {
    pub campaign_id: Uuid,
    /// `scheduled_at` in epoch milliseconds.
    pub at_ms: i64,
}

impl JobKind for StartCampaign {
    const KIND: &'static str = "campaign.start";
    const LANE: Lane = Lane::Campaigns;
    const MAX_ATTEMPTS: u32 = 20;
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::Forever;

    fn unique_key(&self) -> Option<String> {
        Some(format!(
            "campaign.start:{}:{}",
            self.campaign_id, self.at_ms
        ))
    }
}

/// Enqueues the tick of a scheduled campaign (nothing for a draft).
pub async fn schedule_in(
    tx: &mut TenantTx,
    c: &Campaign,
) -> Result<(), galantis_store::StoreError> {
    if let (CampaignStatus::Scheduled, Some(at)) = (c.status, c.scheduled_at) {
        crate::jobs::enqueue(
            tx,
            &StartCampaign {
                campaign_id: c.id,
                at_ms: at.timestamp_millis(),
            },
            at,
        )
        .await?;
    }
    Ok(())
}

/// What a tick does with a campaign now.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    Stale,
    Wait(Duration),
    Missed,
    Start,
}

/// The tick's decision (pure).
pub fn decide(c: &Campaign, at_ms: i64, now: DateTime<Utc>, grace: Duration) -> Tick {
    let Some(at) = c.scheduled_at.filter(|t| t.timestamp_millis() == at_ms) else {
        return Tick::Stale;
    };
    if c.status != CampaignStatus::Scheduled {
        return Tick::Stale;
    }
    if now < at {
        return Tick::Wait((at - now).to_std().unwrap_or_default());
    }
    if (now - at).to_std().unwrap_or_default() > grace {
        return Tick::Missed;
    }
    Tick::Start
}

pub async fn run(ctx: JobContext, job: StartCampaign) -> Result<(), JobError> {
    let tenant = ctx.tenant().ok_or_else(|| {
        JobError::Permanent(anyhow::anyhow!("campaign.start belongs to a tenant"))
    })?;
    let now = ctx.now();
    let grace = Duration::from_secs(ctx.app.config.campaigns.missed_schedule_grace_secs);
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    let c = store::get(&mut tx, job.campaign_id).await?;
    let tick = c
        .as_ref()
        .map_or(Tick::Stale, |c| decide(c, job.at_ms, now, grace));
    match (tick, c) {
        (Tick::Wait(d), _) => {
            tx.commit().await?;
            return Err(JobError::Snooze(d));
        }
        (Tick::Missed, Some(c)) => {
            let changed = store::transition(
                &mut tx,
                c.id,
                &[CampaignStatus::Scheduled],
                CampaignStatus::Cancelled,
                Some("missed_schedule"),
                now.timestamp_millis(),
            )
            .await?;
            if changed {
                tracing::warn!(campaign = %c.id, "scheduled campaign missed its time by more than the grace: cancelled");
                metrics::counter!("galantis_campaigns_missed_schedule_total").increment(1);
            }
        }
        (Tick::Start, Some(c)) => {
            match start_in(&mut tx, &c, &[CampaignStatus::Scheduled], now).await? {
                Started::Refused(r) => {
                    tracing::info!(campaign = %c.id, code = r.code(), "scheduled campaign refused at launch: cancelled");
                    store::transition(
                        &mut tx,
                        c.id,
                        &[CampaignStatus::Scheduled],
                        CampaignStatus::Cancelled,
                        Some(r.code()),
                        now.timestamp_millis(),
                    )
                    .await?;
                }
                Started::Launched | Started::NotLaunchable(_) => {}
            }
        }
        _ => {}
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
