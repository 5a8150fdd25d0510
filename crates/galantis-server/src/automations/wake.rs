//! `automation.wake`: an inbound message, a message status or a completed
//! checkout reaches the runs it concerns through indexes (no polling).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use galantis_core::{DomainEvent, JobKind, Lane, MessageStatus, RetrySchedule};
use galantis_store::TenantTx;
use galantis_store::events::Recorded;
use galantis_store::jobs::NewJob;
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::checkouts;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::engine::{StepInput, StepJob, end_run};
use crate::jobs::{AfterCommit, JobContext, JobError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WakeJob {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

impl JobKind for WakeJob {
    const KIND: &'static str = "automation.wake";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 20;
    const TIMEOUT: Duration = Duration::from_secs(60);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 2.0,
        cap: Duration::from_secs(600),
        jitter: 0.2,
    };

    fn unique_key(&self) -> Option<String> {
        Some(format!("automation_wake:{}", self.event_id))
    }
}

/// A status Meta reports as `to` (`delivered`, `READ`…).
fn status_of(to: &str) -> Option<MessageStatus> {
    MessageStatus::from_meta(&to.to_ascii_lowercase())
}

pub(super) fn make_job(r: &Recorded<'_>) -> Option<NewJob> {
    let wanted = match r.event {
        DomainEvent::ConversationMessageCreated { .. } | DomainEvent::CheckoutCompleted { .. } => {
            true
        }
        // Only a status some run was waiting for when it was applied wakes
        // anything (the handler asks, ADR 0036): campaign, inbox and API
        // messages and runs that wait for nothing queue no job (three per
        // message otherwise).
        DomainEvent::MessageStatusUpdated { to, awaited, .. } => {
            *awaited && status_of(to).is_some()
        }
        _ => false,
    };
    if !wanted {
        return None;
    }
    let job = WakeJob {
        event_id: r.id,
        occurred_at: r.at,
        event: r.event.clone(),
    };
    crate::jobs::new_job(&job, r.at).ok()
}

pub(super) async fn run(ctx: JobContext, job: WakeJob) -> Result<(), JobError> {
    let tenant = ctx.tenant_required()?;
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    wake_in(&ctx, &mut tx, &job).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// [`run`] inside a batch's transaction (see `jobs::Registry::batched`).
pub(super) fn run_in<'a>(
    ctx: &'a JobContext,
    tx: &'a mut TenantTx,
    job: WakeJob,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>> {
    Box::pin(async move {
        ctx.tenant_required()?;
        wake_in(ctx, tx, &job).await?;
        Ok(None)
    })
}

/// Finds the runs `job`'s event concerns and queues their steps (or ends
/// them) in `tx`.
async fn wake_in(ctx: &JobContext, tx: &mut TenantTx, job: &WakeJob) -> Result<(), JobError> {
    let now = ctx.now();
    let mut wake = Vec::new();
    match &job.event {
        DomainEvent::ConversationMessageCreated {
            contact_id,
            button_reply_id,
            ..
        } => {
            for r in runs::waiting_for_reply(tx, *contact_id).await? {
                wake.push(StepJob {
                    run_id: r.id,
                    input: StepInput::Reply {
                        event_id: job.event_id,
                        at: job.occurred_at,
                        button_id: button_reply_id.clone(),
                    },
                });
            }
        }
        DomainEvent::MessageStatusUpdated { message_id, to, .. } => {
            if let Some(status) = status_of(to) {
                for r in runs::waiting_for_status(tx, *message_id).await? {
                    wake.push(StepJob {
                        run_id: r.id,
                        input: StepInput::Status {
                            event_id: job.event_id,
                            message_id: *message_id,
                            status,
                        },
                    });
                }
            }
        }
        DomainEvent::CheckoutCompleted { token, .. } => {
            let now_ms = now.timestamp_millis();
            for c in checkouts::by_token(tx, token).await? {
                for r in runs::live_for_checkout(tx, c.id).await? {
                    end_run(tx, &r, "checkout_completed", now_ms).await?;
                }
            }
        }
        _ => {}
    }
    for j in &wake {
        crate::jobs::enqueue(tx, j, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(awaited: bool, to: &str) -> Option<NewJob> {
        let event = DomainEvent::MessageStatusUpdated {
            message_id: Uuid::nil(),
            wamid: "wamid.X".into(),
            from: "SENT".into(),
            to: to.into(),
            error_code: None,
            source: Some("automation".into()),
            awaited,
        };
        make_job(&Recorded {
            tenant: galantis_core::TenantId::new(),
            id: Uuid::nil(),
            event: &event,
            at: DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time"),
        })
    }

    #[test]
    fn only_statuses_a_run_awaits_queue_a_wake_up() {
        assert!(status(true, "DELIVERED").is_some());
        assert!(status(true, "READ").is_some());
        assert!(status(false, "DELIVERED").is_none());
        assert!(status(true, "NOT_A_STATUS").is_none());
    }
}
