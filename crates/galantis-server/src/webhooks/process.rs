//! `webhook.process` ([`ProcessWebhook`]): turns a stored webhook event into
//! the tenant's data and domain events, in one transaction that also
//! completes the job — so a retried or duplicated job never applies an
//! event twice. A failure rolls
//! everything back, marks the event `failed` with its reason, and the queue
//! retries; failed events can also be replayed.

use galantis_store::TenantTx;
use galantis_store::tenant::webhook_events::{self, WebhookEvent};

pub use super::job::ProcessWebhook;
pub use super::outcome::{HandlerError, Outcome};
use crate::jobs::{JobContext, JobError};

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
            let (status, reason) = match &outcome.ignored {
                Some(r) => ("ignored", Some(r.as_str())),
                None => ("processed", None),
            };
            webhook_events::set_status(&mut tx, event.id, status, reason, now).await?;
            ctx.complete_in(&mut tx).await?;
            // Publishes the recorded domain events once they are durable.
            tx.commit().await?;
            if event.source == "meta" && super::meta::changes_connection(&event.topic) {
                ctx.app.sending.invalidate(tenant);
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
