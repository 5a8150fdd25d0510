//! Effects of the queue's probe job: one row per job with how many times its
//! effect was applied. Used by `galantis jobs probe`, the crash test and the
//! queue benchmark to prove exactly-once execution.

use galantis_core::JobId;
use serde::Serialize;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// Applies the probe's effect for `job` (counts a run).
pub async fn record(tx: &mut TenantTx, job: JobId, now_ms: i64) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO queue_probes (job_id, runs, ran_at) VALUES ($1, 1, $2)
             ON CONFLICT (job_id) DO UPDATE SET runs = queue_probes.runs + 1, ran_at = excluded.ran_at",
        )
        .bind(job.as_uuid())
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeSummary {
    /// Distinct jobs whose effect was applied.
    pub jobs: i64,
    /// Total applications (equals `jobs` when nothing ran twice).
    pub runs: i64,
    /// Jobs applied more than once.
    pub repeated: i64,
}

pub async fn summary(tx: &mut TenantTx) -> Result<ProbeSummary, StoreError> {
    let (jobs, runs, repeated): (i64, Option<i64>, Option<i64>) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT COUNT(*), CAST(SUM(runs) AS BIGINT), CAST(SUM(CASE WHEN runs > 1 THEN 1 ELSE 0 END) AS BIGINT) FROM queue_probes",
        )
        .fetch_one(&mut *c)
        .await?
    });
    Ok(ProbeSummary {
        jobs,
        runs: runs.unwrap_or(0),
        repeated: repeated.unwrap_or(0),
    })
}
