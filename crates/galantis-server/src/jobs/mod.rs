//! The job runtime: kinds register handlers in a [`Registry`]; [`worker`]
//! claims and runs them per lane; [`scheduler`] rescues lost jobs, enqueues
//! periodic ones and wakes workers on other nodes' enqueues.
//!
//! Handlers return `Ok(())` (the job completes), or a [`JobError`] that says
//! what happens next: retry on the kind's schedule, die at once, or snooze
//! (wait without spending an attempt, e.g. for a rate limiter). A handler
//! whose effect must happen exactly once writes it in a tenant transaction
//! and calls [`JobContext::complete_in`] before committing.

pub mod cli;
pub mod kinds;
pub mod live;
pub mod registry;
pub mod scheduler;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::{JobKind, TenantId};
use galantis_store::jobs::run::{self, ClaimedJob};
use galantis_store::jobs::{Enqueued, NewJob};
use galantis_store::{StoreError, TenantTx};

pub use registry::Registry;

use crate::state::AppState;

/// Why a run did not complete, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again on the kind's retry schedule (until attempts run out).
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Will never succeed: dead at once, with this reason.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// Not now: run again after this long without spending an attempt.
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
    /// Only from a batched kind's `run_in`, before the job wrote anything:
    /// it cannot go on in this batch's transaction without waiting for a
    /// lock while the batch holds others. The batch commits the jobs before
    /// it; this one and the rest run alone afterwards.
    #[error("cannot run inside this batch without waiting for a lock")]
    Later,
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            // Only a batch asks not to wait for locks
            // (`TenantTx::wait_for_locks`): the job runs after it, alone.
            StoreError::LockBusy(_) => JobError::Later,
            e => JobError::Retry(e.into()),
        }
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(e)
    }
}

/// Work a handler leaves for after its transaction commits (dropping a
/// cache the transaction made stale, say).
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// What a handler gets besides its payload.
#[derive(Clone)]
pub struct JobContext {
    pub app: AppState,
    pub job: Arc<ClaimedJob>,
    completed: Arc<AtomicBool>,
}

impl JobContext {
    pub(crate) fn new(app: AppState, job: Arc<ClaimedJob>) -> Self {
        Self {
            app,
            job,
            completed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn tenant(&self) -> Option<TenantId> {
        self.job.tenant
    }

    /// The job's tenant, for kinds whose jobs always have one: a job
    /// without can never run (a permanent failure).
    pub fn tenant_required(&self) -> Result<TenantId, JobError> {
        self.tenant().ok_or_else(|| {
            JobError::Permanent(anyhow::anyhow!("{} jobs belong to a tenant", self.job.kind))
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    /// Marks the job completed inside `tx`, so the job's effect and its
    /// completion commit together. Errors when another worker took the job
    /// over (its heartbeat was lost): the caller must then not commit.
    pub async fn complete_in(&self, tx: &mut TenantTx) -> Result<(), JobError> {
        if run::complete_in(tx, &self.job, self.now()).await? {
            self.completed.store(true, Ordering::SeqCst);
            Ok(())
        } else {
            Err(JobError::Permanent(anyhow::anyhow!(
                "claim lost: the job was rescued by another worker"
            )))
        }
    }

    /// [`complete_in`](Self::complete_in) for every job of a batch, in
    /// one statement; errors (and nothing may commit) if any claim was lost.
    pub(crate) async fn complete_all_in(
        ctxs: &[JobContext],
        tx: &mut TenantTx,
    ) -> Result<(), JobError> {
        let Some(first) = ctxs.first() else {
            return Ok(());
        };
        let jobs: Vec<&ClaimedJob> = ctxs.iter().map(|c| &*c.job).collect();
        let n = run::complete_all_in(tx, &jobs, first.now()).await?;
        if n != jobs.len() as u64 {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "claim lost: {} of {} jobs of the batch were rescued by another worker",
                jobs.len() as u64 - n,
                jobs.len()
            )));
        }
        for c in ctxs {
            c.completed.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The job was completed in a transaction that has committed, written
    /// by someone else for it (a group commit, `sending::recorder`).
    pub(crate) fn completed_by_group(&self) {
        self.completed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn completed_in_tx(&self) -> bool {
        self.completed.load(Ordering::SeqCst)
    }
}

/// The stored form of a job of kind `K`, to run at `run_at`.
pub fn new_job<K: JobKind>(job: &K, run_at: DateTime<Utc>) -> Result<NewJob, serde_json::Error> {
    NewJob::of(job, run_at)
}

/// Enqueues `job` for the transaction's tenant, committed with the rest of
/// the transaction.
pub async fn enqueue<K: JobKind>(
    tx: &mut TenantTx,
    job: &K,
    run_at: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    let new = new_job(job, run_at).map_err(|e| StoreError::Config(format!("job payload: {e}")))?;
    galantis_store::jobs::enqueue(tx, &new).await
}

/// Makes the transaction's tenant's waiting jobs of kind `K` due now, in
/// `K`'s lane. Returns how many.
pub async fn wake<K: JobKind>(tx: &mut TenantTx, now: DateTime<Utc>) -> Result<u64, StoreError> {
    galantis_store::jobs::wake_jobs(tx, K::KIND, K::LANE, now).await
}
