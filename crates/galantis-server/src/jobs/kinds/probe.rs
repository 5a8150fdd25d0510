//! `queue.probe`: an end-to-end check of the queue. Its effect counts how
//! often it was applied (in `queue_probes`), in the same transaction that
//! completes the job — so any count other than one is a queue bug. Used by
//! `galantis jobs probe`, the crash test and `galantis bench queue`.

use std::time::Duration;

use futures::future::BoxFuture;
use galantis_core::{JobKind, Lane};
use galantis_store::TenantTx;
use galantis_store::tenant::probes;
use serde::{Deserialize, Serialize};

use crate::jobs::{AfterCommit, JobContext, JobError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueProbe {
    /// Simulated work before the effect, in milliseconds.
    #[serde(default)]
    pub sleep_ms: u64,
}

impl JobKind for QueueProbe {
    const KIND: &'static str = "queue.probe";
    const LANE: Lane = Lane::Monitor;
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(60);
}

pub async fn run(ctx: JobContext, job: QueueProbe) -> Result<(), JobError> {
    let tenant = ctx.tenant_required()?;
    work(&job).await;
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    probes::record(&mut tx, ctx.job.id, ctx.now().timestamp_millis()).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// [`run`] in a batch's transaction: the effects and completions of the
/// batch commit together, so a crash mid-batch re-runs all of it and a
/// count other than one is still a queue bug.
pub fn run_in<'a>(
    ctx: &'a JobContext,
    tx: &'a mut TenantTx,
    job: QueueProbe,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>> {
    Box::pin(async move {
        ctx.tenant_required()?;
        work(&job).await;
        probes::record(tx, ctx.job.id, ctx.now().timestamp_millis()).await?;
        Ok(None)
    })
}

async fn work(job: &QueueProbe) {
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms.min(10_000))).await;
    }
}
