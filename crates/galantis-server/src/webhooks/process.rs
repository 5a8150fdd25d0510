//! `webhook.process`: turns a stored webhook event into the tenant's data
//! and domain events, in one transaction that also completes the job — so a
//! retried or duplicated job never applies an event twice. A failure rolls
//! everything back, marks the event `failed` with its reason, and the queue
//! retries; failed events can also be replayed.

use std::time::Duration;

use galantis_core::{JobKind, Lane, RetrySchedule};
use galantis_store::TenantTx;
use galantis_store::tenant::domain_events::{self, NewDomainEvent};
use galantis_store::tenant::webhook_events::{self, WebhookEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobContext, JobError};
use crate::state::PublishedEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessWebhook {
    pub event_id: Uuid,
    /// Set for a manual replay, so it is not deduplicated against the first run.
    #[serde(default)]
    pub replay: Option<Uuid>,
}

impl JobKind for ProcessWebhook {
    const KIND: &'static str = "webhook.process";
    const LANE: Lane = Lane::Ingest;
    const MAX_ATTEMPTS: u32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 3.0,
        cap: Duration::from_secs(1800),
        jitter: 0.2,
    };

    fn unique_key(&self) -> Option<String> {
        Some(match self.replay {
            Some(r) => format!("webhook:{}:replay:{r}", self.event_id),
            None => format!("webhook:{}", self.event_id),
        })
    }
}

/// What a topic handler did.
#[derive(Default)]
pub struct Outcome {
    pub events: Vec<NewDomainEvent>,
    /// `Some(reason)`: nothing to do (recorded as `ignored`).
    pub ignored: Option<String>,
}

impl Outcome {
    pub fn event(
        &mut self,
        kind: &'static str,
        subject: Option<String>,
        payload: serde_json::Value,
    ) {
        self.events.push(NewDomainEvent {
            kind,
            subject_id: subject,
            payload,
        });
    }
}

/// A handler failure: retry (transient) or give up (the payload can never work).
pub enum HandlerError {
    Transient(anyhow::Error),
    Invalid(String),
}

impl From<galantis_store::StoreError> for HandlerError {
    fn from(e: galantis_store::StoreError) -> Self {
        HandlerError::Transient(e.into())
    }
}

pub async fn run(ctx: JobContext, job: ProcessWebhook) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("webhook jobs belong to a tenant")))?;
    let db = ctx.app.db.clone();
    let now = ctx.now().timestamp_millis();
    let mut tx = db.tenant_tx(tenant).await?;
    // Events of one tenant apply one at a time, in any order they arrive:
    // each handler reads stored versions before it writes.
    tx.serialize_tenant_writes().await?;
    let Some(event) = webhook_events::get(&mut tx, job.event_id).await? else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "webhook event {} no longer exists",
            job.event_id
        )));
    };
    if event.status == "processed" && job.replay.is_none() {
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    match dispatch(&ctx, &mut tx, &event).await {
        Ok(outcome) => {
            let mut published = Vec::with_capacity(outcome.events.len());
            for e in &outcome.events {
                let id = domain_events::insert(&mut tx, e, Some(event.id), now).await?;
                published.push(PublishedEvent {
                    tenant,
                    id,
                    kind: e.kind,
                    subject_id: e.subject_id.clone(),
                });
            }
            let (status, reason) = match &outcome.ignored {
                Some(r) => ("ignored", Some(r.as_str())),
                None => ("processed", None),
            };
            webhook_events::set_status(&mut tx, event.id, status, reason, now).await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            for p in published {
                metrics::counter!("galantis_domain_events_total", "kind" => p.kind).increment(1);
                let _ = ctx.app.events.send(p);
            }
            Ok(())
        }
        Err(err) => {
            tx.rollback().await?;
            let (reason, job_err) = match err {
                HandlerError::Transient(e) => (format!("{e:#}"), JobError::Retry(e)),
                HandlerError::Invalid(why) => {
                    (why.clone(), JobError::Permanent(anyhow::anyhow!(why)))
                }
            };
            let mut tx = db.tenant_tx(tenant).await?;
            webhook_events::set_status(&mut tx, event.id, "failed", Some(&reason), now).await?;
            tx.commit().await?;
            tracing::warn!(event = %event.id, topic = %event.topic, reason = %reason, "webhook processing failed");
            Err(job_err)
        }
    }
}

async fn dispatch(
    ctx: &JobContext,
    tx: &mut TenantTx,
    event: &WebhookEvent,
) -> Result<Outcome, HandlerError> {
    match event.source.as_str() {
        "shopify" => super::shopify::handle(ctx, tx, event).await,
        "meta" => super::meta::handle(ctx, tx, event).await,
        other => Err(HandlerError::Invalid(format!(
            "unknown webhook source `{other}`"
        ))),
    }
}
