//! `webhook.process` ([`ProcessWebhook`]): turns a stored webhook event into
//! the tenant's data and domain events, in one transaction that also
//! completes the job — so a retried or duplicated job never applies an
//! event twice. A failure rolls
//! everything back, marks the event `failed` with its reason, and the queue
//! retries; failed events can also be replayed.

use futures::future::BoxFuture;
use galantis_store::TenantTx;
use galantis_store::tenant::webhook_events::{self, WebhookEvent};

pub use super::job::ProcessWebhook;
pub use super::outcome::{HandlerError, Outcome};
use crate::jobs::{AfterCommit, JobContext, JobError};

pub async fn run(ctx: JobContext, job: ProcessWebhook) -> Result<(), JobError> {
    let tenant = ctx.tenant_required()?;
    let db = ctx.app.db.clone();
    let mut tx = db.tenant_tx(tenant).await?;
    match apply(&ctx, &mut tx, &job).await? {
        Ok(after) => {
            ctx.complete_in(&mut tx).await?;
            // Publishes the recorded domain events once they are durable.
            tx.commit().await?;
            if let Some(after) = after {
                after();
            }
            Ok(())
        }
        Err((event, err)) => {
            tx.rollback().await?;
            let (reason, job_err) = match err {
                HandlerError::Transient(e) => (format!("{e:#}"), JobError::Retry(e)),
                HandlerError::Invalid(why) => {
                    (why.clone(), JobError::Permanent(anyhow::anyhow!(why)))
                }
            };
            let now = ctx.now().timestamp_millis();
            let mut tx = db.tenant_tx(tenant).await?;
            webhook_events::set_status(&mut tx, event.id, "failed", Some(&reason), now).await?;
            tx.commit().await?;
            tracing::warn!(event = %event.id, topic = %event.topic, reason = %reason, "webhook processing failed");
            Err(job_err)
        }
    }
}

/// [`run`] inside a batch's transaction (see `jobs::Registry::batched`): a
/// failing event fails the batch, whose jobs then run alone through [`run`],
/// which records the failure on the event.
pub fn run_in<'a>(
    ctx: &'a JobContext,
    tx: &'a mut TenantTx,
    job: ProcessWebhook,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>> {
    Box::pin(async move {
        ctx.tenant_required()?;
        match apply(ctx, tx, &job).await? {
            Ok(after) => Ok(after),
            Err((event, HandlerError::Transient(e))) => Err(JobError::Retry(
                e.context(format!("webhook event {}", event.id)),
            )),
            Err((event, HandlerError::Invalid(why))) => Err(JobError::Permanent(anyhow::anyhow!(
                "webhook event {}: {why}",
                event.id
            ))),
        }
    })
}

/// Applies the job's event in `tx` and marks it processed (or ignored);
/// neither completes the job nor commits. The inner error is the topic
/// handler's, with the event it failed on.
async fn apply(
    ctx: &JobContext,
    tx: &mut TenantTx,
    job: &ProcessWebhook,
) -> Result<Result<Option<AfterCommit>, (WebhookEvent, HandlerError)>, JobError> {
    let now = ctx.now().timestamp_millis();
    let Some(event) = webhook_events::get(tx, job.event_id).await? else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "webhook event {} no longer exists",
            job.event_id
        )));
    };
    // Inside a batch that already holds locks (PostgreSQL), this event may
    // not wait for one: it runs after the batch instead (`JobError::Later`).
    tx.wait_for_locks(!tx.holds_locks());
    let applied = apply_locked(ctx, tx, job, event, now).await;
    tx.wait_for_locks(true);
    // A busy lock reached through the store is already `JobError::Later`;
    // a handler reports it as a transient error.
    match applied {
        Ok(Err((_, HandlerError::Transient(e)))) if lock_busy(&e) => Err(JobError::Later),
        other => other,
    }
}

fn lock_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<galantis_store::StoreError>(),
            Some(galantis_store::StoreError::LockBusy(_))
        )
    })
}

async fn apply_locked(
    ctx: &JobContext,
    tx: &mut TenantTx,
    job: &ProcessWebhook,
    event: WebhookEvent,
    now: i64,
) -> Result<Result<Option<AfterCommit>, (WebhookEvent, HandlerError)>, JobError> {
    // Events of one tenant apply one at a time, in any order they arrive:
    // each handler reads stored versions before it writes. Delivery
    // statuses alone are the exception: they touch only their messages,
    // serialised by each message's wamid lock (as with the sends recording
    // Meta's answers), so a campaign's statuses do not queue behind one
    // another or behind the tenant's other writers.
    if !super::meta_status::statuses_only(&event) {
        tx.serialize_tenant_writes().await?;
    }
    if event.status == "processed" && job.replay.is_none() {
        return Ok(Ok(None));
    }
    match dispatch(ctx, tx, &event).await {
        Ok(outcome) => {
            let (status, reason) = match &outcome.ignored {
                Some(r) => ("ignored", Some(r.as_str())),
                None => ("processed", None),
            };
            webhook_events::set_status(tx, event.id, status, reason, now).await?;
            let after: Option<AfterCommit> =
                if event.source == "meta" && super::meta::changes_connection(&event.topic) {
                    let sending = ctx.app.sending.clone();
                    let tenant = tx.tenant();
                    Some(Box::new(move || sending.invalidate(tenant)))
                } else {
                    None
                };
            Ok(Ok(after))
        }
        Err(err) => Ok(Err((event, err))),
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
