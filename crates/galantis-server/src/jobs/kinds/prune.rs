//! `queue.prune`: deletes completed and dead jobs past their retention.
//! Enqueued hourly by the scheduler (one per hour across all nodes).

use std::time::Duration;

use galantis_core::{JobKind, Lane, RetrySchedule};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobContext, JobError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneJobs {}

impl JobKind for PruneJobs {
    const KIND: &'static str = "queue.prune";
    const LANE: Lane = Lane::Monitor;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_secs(60));
}

pub async fn run(ctx: JobContext, _job: PruneJobs) -> Result<(), JobError> {
    let q = &ctx.app.config.queue;
    let now = ctx.now();
    let completed_before = now - chrono::Duration::hours(q.completed_retention_hours as i64);
    let dead_before = now - chrono::Duration::days(q.dead_retention_days as i64);
    let n = galantis_store::jobs::admin::prune(&ctx.app.db, completed_before, dead_before).await?;
    if n > 0 {
        tracing::info!(deleted = n, "pruned finished jobs");
    }
    Ok(())
}
