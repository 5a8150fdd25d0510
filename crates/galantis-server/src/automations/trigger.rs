//! `automation.trigger`: a recorded trigger event enrols its audience in
//! every matching ACTIVE automation (see the module doc of [`super`] for
//! the steps). Kept apart from [`super::enrol`] (one contact through the
//! gate), which the restock fan-out uses too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use galantis_core::automation::{Audience, TriggerFact, TriggerKind, trigger_fact};
use galantis_core::{DomainEvent, JobKind, Lane, RetrySchedule, TenantId};
use galantis_store::events::Recorded;
use galantis_store::jobs::NewJob;
use galantis_store::tenant::automations;
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enrol::{Enrolment, FirstStep, enrol_with};
use super::versions;
use crate::jobs::{AfterCommit, JobContext, JobError};
use crate::sending::connection;

/// Enrols the audience of one recorded trigger event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerJob {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

impl JobKind for TriggerJob {
    const KIND: &'static str = "automation.trigger";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 20;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 2.0,
        cap: Duration::from_secs(600),
        jitter: 0.2,
    };

    fn unique_key(&self) -> Option<String> {
        Some(format!("automation_trigger:{}", self.event_id))
    }
}

/// The subscriber: a job for every event that fires a trigger.
pub(super) fn make_job(r: &Recorded<'_>) -> Option<NewJob> {
    trigger_fact(r.event, r.id, r.at)?;
    let job = TriggerJob {
        event_id: r.id,
        occurred_at: r.at,
        event: r.event.clone(),
    };
    crate::jobs::new_job(&job, r.at).ok()
}

pub(super) async fn run(ctx: JobContext, job: TriggerJob) -> Result<(), JobError> {
    let tenant = ctx.tenant_required()?;
    let now = ctx.now();
    let fact = trigger_fact(&job.event, job.event_id, job.occurred_at);
    // Resolved before the transaction, so its write lock is not held
    // while they are.
    let links = links_for(&ctx, tenant, fact.as_ref()).await;
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    if let Some(fact) = fact {
        enrol_fact_with(&mut tx, &fact, &links, now).await?;
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// [`run`] inside a batch's transaction (see `jobs::Registry::batched`):
/// the enrolments of events recorded together commit together.
pub(super) fn run_in<'a>(
    ctx: &'a JobContext,
    tx: &'a mut TenantTx,
    job: TriggerJob,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>> {
    Box::pin(async move {
        let tenant = ctx.tenant_required()?;
        let Some(fact) = trigger_fact(&job.event, job.event_id, job.occurred_at) else {
            return Ok(None);
        };
        let links = links_for(ctx, tenant, Some(&fact)).await;
        enrol_fact_with(tx, &fact, &links, ctx.now()).await?;
        Ok(None)
    })
}

/// Where back-in-stock links point, and the connection new runs' first
/// sends queue on (cached per tenant).
async fn links_for(
    ctx: &JobContext,
    tenant: TenantId,
    fact: Option<&TriggerFact>,
) -> super::restock::Links {
    match fact {
        Some(f) if f.trigger == TriggerKind::BackInStock => super::restock::Links::of(ctx).await,
        Some(_) => super::restock::Links {
            conn: connection::resolve(&ctx.app, tenant).await.ok(),
            ..Default::default()
        },
        None => Default::default(),
    }
}

/// Enrols the audience of `fact` in every matching ACTIVE automation.
/// Returns how many runs were created.
pub async fn enrol_fact(
    tx: &mut TenantTx,
    fact: &TriggerFact,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    enrol_fact_with(tx, fact, &Default::default(), now).await
}

/// [`enrol_fact`] with where back-in-stock links point.
pub async fn enrol_fact_with(
    tx: &mut TenantTx,
    fact: &TriggerFact,
    links: &super::restock::Links,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    // The back-in-stock recipe, created for this restock when the tenant
    // has no automation of its own and a restock template is approved.
    let created = if fact.trigger == TriggerKind::BackInStock {
        super::restock::ensure_automation(tx, now)
            .await?
            .map(|a| a.id)
    } else {
        None
    };
    let candidates = automations::active_for_trigger(tx, fact.trigger).await?;
    let mut enrolled = 0;
    for a in candidates {
        // Events from before activation (or while paused) never enrol;
        // the automation created for this very event does.
        if created != Some(a.id) && a.activated_at.is_none_or(|t| fact.occurred_at < t) {
            continue;
        }
        let Some(version) = versions::current(&a) else {
            continue;
        };
        if !version.flow.trigger().is_some_and(|(_, t)| t.matches(fact)) {
            continue;
        }
        let who = match fact.audience {
            Audience::Contact(c) => vec![c],
            Audience::ContactOfOrder(o) => super::audience::contact_of_order(tx, o)
                .await?
                .into_iter()
                .collect(),
            Audience::VariantSubscribers(_) => {
                // Batched fan-out with a cursor (see `restock`).
                let event_id = fact
                    .key
                    .strip_prefix("event:")
                    .and_then(|k| k.parse().ok())
                    .unwrap_or_default();
                enrolled += super::restock::batch(
                    tx,
                    &a,
                    fact,
                    event_id,
                    None,
                    super::restock::FIRST_BATCH,
                    links,
                    now,
                )
                .await?;
                continue;
            }
        };
        for contact in who {
            let first = FirstStep::Now(links.conn.as_deref());
            if let Enrolment::Enrolled(_) = enrol_with(tx, &a, contact, fact, now, first).await? {
                enrolled += 1;
            }
        }
    }
    Ok(enrolled)
}
