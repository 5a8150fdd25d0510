//! Workers: one claim loop per lane that has registered kinds, each running
//! up to the lane's concurrency of jobs at once, plus a heartbeat loop.
//! Lanes share nothing, so a flood in one never delays another. A worker
//! claims only the kinds its registry has handlers for; the others wait for
//! a node that has them.
//!
//! Shutdown: stop claiming, give running jobs the grace period, then abort
//! what is left and put those jobs back in the queue (without spending an
//! attempt) so another worker picks them up at once.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use galantis_core::Lane;
use galantis_store::jobs::run::{self, ClaimedJob};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::live::{LiveJobs, Running};
use super::registry::{BatchRun, Registry};
use super::{JobContext, JobError};
use crate::config::QueueConfig;
use crate::state::AppState;

/// Snoozes up to this long get a timer that wakes their lane when they are due.
const MAX_TIMED_SNOOZE: Duration = Duration::from_secs(30);

/// A worker node's job runtime.
pub struct Worker {
    id: String,
    app: AppState,
    registry: Arc<Registry>,
    config: QueueConfig,
    grace: Duration,
    running: Running,
}

impl Worker {
    pub fn new(app: AppState, registry: Registry) -> Self {
        let config = app.config.queue.clone();
        let grace = Duration::from_secs(app.config.shutdown_grace_secs);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        Self {
            id,
            app,
            registry: Arc::new(registry),
            config,
            grace,
            running: Running::default(),
        }
    }

    /// What this worker runs, for its node's rescue pass.
    pub fn live_jobs(&self) -> LiveJobs {
        LiveJobs(self.running.clone())
    }

    /// Overrides lane concurrency (tests, benchmarks).
    pub fn with_config(mut self, config: QueueConfig) -> Self {
        self.config = config;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` turns true, then drains as described above.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let running = self.running.clone();
        let this = Arc::new(self);
        let mut lanes = JoinSet::new();
        for lane in Lane::ALL {
            let n = this.config.concurrency.get(lane);
            if n > 0 && !this.registry.kinds_in(lane).is_empty() {
                lanes.spawn(
                    this.clone()
                        .lane_loop(lane, n, running.clone(), shutdown.clone()),
                );
            }
        }
        let heartbeat = tokio::spawn(
            this.clone()
                .heartbeat_loop(running.clone(), shutdown.clone()),
        );
        while lanes.join_next().await.is_some() {}
        heartbeat.abort();
        tracing::info!(worker = %this.id, "worker stopped");
    }

    async fn lane_loop(
        self: Arc<Self>,
        lane: Lane,
        concurrency: usize,
        running: Running,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut signal = self.app.db.lane_signal(lane);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let kinds = self.registry.kinds_in(lane);
        // Claimed jobs waiting for a free slot. Under a backlog the loop
        // claims up to `concurrency` jobs ahead and claims again only once
        // half of them have started, so a claim serves several jobs instead
        // of one per finished job. Buffered jobs are `running` (heartbeated,
        // released at shutdown) like the jobs being run.
        // A lane with batched kinds claims enough ahead to fill a batch.
        let ahead = concurrency.max(2 * self.registry.max_batch_in(lane));
        let mut ready: VecDeque<Arc<ClaimedJob>> = VecDeque::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
            while !ready.is_empty() {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let job = ready.pop_front().expect("not empty");
                let batch = self.batch_with(job, &mut ready);
                self.spawn_batch(&mut tasks, batch, permit, &running);
            }
            if ready.len() > ahead / 2 {
                // Enough work in hand: wait for a slot.
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let want = (slots.available_permits() + ahead).saturating_sub(ready.len());
            signal.borrow_and_update();
            let claimed = run::claim(
                &self.app.db,
                lane,
                &kinds,
                &self.id,
                self.app.clock.now(),
                want as u32,
            )
            .await;
            let jobs = match claimed {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(lane = %lane, error = %e, "claiming jobs failed");
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if jobs.is_empty() {
                if !ready.is_empty() {
                    // Slots are all busy (else the buffer would have been
                    // started above).
                    tokio::select! {
                        _ = tasks.join_next() => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                tokio::select! {
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for job in jobs {
                let pickup = (self.app.clock.now() - job.run_at)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
                metrics::histogram!("galantis_job_pickup_latency_seconds", "lane" => lane.as_str())
                    .record(pickup);
                let job = Arc::new(job);
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.id, job.clone());
                ready.push_back(job);
            }
        }
        // Claimed but never started: back to the queue at once, unspent.
        for job in ready {
            running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job.id);
            let now = self.app.clock.now();
            if let Err(e) = run::snooze(&self.app.db, &job, now, now).await {
                tracing::error!(job = %job.id, error = %e, "could not release a claimed job at shutdown; it will be rescued");
            }
        }
        self.drain(lane, tasks, running).await;
    }

    /// `first`, with the jobs of `ready` that can share its transaction:
    /// the same batched kind and tenant, up to the kind's batch size, taken
    /// out of `ready` (the others keep their order).
    fn batch_with(
        &self,
        first: Arc<ClaimedJob>,
        ready: &mut VecDeque<Arc<ClaimedJob>>,
    ) -> Vec<Arc<ClaimedJob>> {
        let max = self
            .registry
            .get(&first.kind)
            .and_then(|e| e.batch.as_ref().map(|b| b.max))
            .unwrap_or(1);
        let mut batch = vec![first];
        if max == 1 || batch[0].tenant.is_none() {
            return batch;
        }
        let mut i = 0;
        while i < ready.len() && batch.len() < max {
            if ready[i].kind == batch[0].kind && ready[i].tenant == batch[0].tenant {
                batch.push(ready.remove(i).expect("index in range"));
            } else {
                i += 1;
            }
        }
        batch
    }

    fn spawn_batch(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        jobs: Vec<Arc<ClaimedJob>>,
        permit: tokio::sync::OwnedSemaphorePermit,
        running: &Running,
    ) {
        let this = self.clone();
        let running = running.clone();
        let first = &jobs[0];
        let span = if jobs.len() == 1 {
            tracing::info_span!(
                "job", job_id = %first.id, kind = %first.kind, tenant_id = ?first.tenant, attempt = first.attempt
            )
        } else {
            tracing::info_span!(
                "job_batch", first_job_id = %first.id, kind = %first.kind, tenant_id = ?first.tenant, size = jobs.len()
            )
        };
        tasks.spawn(async move {
            this.execute_all(jobs.clone()).instrument(span).await;
            let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
            for job in &jobs {
                running.remove(&job.id);
            }
            drop(permit);
        });
    }

    /// Runs `jobs` (one job, or a batch from [`Self::batch_with`]).
    async fn execute_all(&self, jobs: Vec<Arc<ClaimedJob>>) {
        if jobs.len() == 1 {
            let job = jobs.into_iter().next().expect("one job");
            return self.execute(job).await;
        }
        let entry = self.registry.get(&jobs[0].kind);
        let Some((entry, batched)) = entry
            .as_ref()
            .and_then(|e| e.batch.as_ref().map(|b| (e, b)))
        else {
            for job in jobs {
                self.execute(job).await;
            }
            return;
        };
        let started = Instant::now();
        let ctxs: Vec<JobContext> = jobs
            .iter()
            .map(|j| JobContext::new(self.app.clone(), j.clone()))
            .collect();
        let attempt = async {
            let tenant = ctxs[0].tenant().expect("batches belong to a tenant");
            let mut tx = self.app.db.tenant_tx(tenant).await?;
            let (after, done) = match &batched.run {
                BatchRun::EachJob(run_in) => {
                    let mut after = Vec::new();
                    let mut done = ctxs.len();
                    for (i, ctx) in ctxs.iter().enumerate() {
                        match run_in(ctx, &mut tx, ctx.job.payload.clone()).await {
                            Ok(a) => after.extend(a),
                            Err(JobError::Later) if i > 0 => {
                                done = i;
                                break;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (after, done)
                }
                BatchRun::Whole(run_all) => {
                    let d = run_all(&ctxs, &mut tx).await?;
                    if d.done == 0 || d.done > ctxs.len() {
                        // A handler bug: roll back, and each job runs alone.
                        return Err(JobError::Retry(anyhow::anyhow!(
                            "a whole-batch handler reported {} of {} jobs done",
                            d.done,
                            ctxs.len()
                        )));
                    }
                    (d.after, d.done)
                }
            };
            JobContext::complete_all_in(&ctxs[..done], &mut tx).await?;
            tx.commit().await?;
            Ok::<_, JobError>((after, done))
        };
        let limit = jobs[0].timeout;
        let outcome =
            match tokio::time::timeout(limit, AssertUnwindSafe(attempt).catch_unwind()).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(JobError::Retry(anyhow::anyhow!("the handler panicked"))),
                Err(_) => Err(JobError::Retry(anyhow::anyhow!(
                    "timed out after {limit:?}"
                ))),
            };
        match outcome {
            Ok((after, done)) => {
                for f in after {
                    f();
                }
                let per_job = started.elapsed().as_secs_f64() / done as f64;
                metrics::histogram!("galantis_job_batch_size", "kind" => jobs[0].kind.clone())
                    .record(done as f64);
                for ctx in &ctxs[..done] {
                    self.record(&ctx.job, ctx, Ok(()), entry.retry).await;
                    metrics::histogram!("galantis_job_duration_seconds", "kind" => ctx.job.kind.clone())
                        .record(per_job);
                }
                if done < jobs.len() {
                    // The batch stopped short of a lock it must not wait for
                    // (`JobError::Later`): the rest run alone, where waiting
                    // is safe.
                    metrics::counter!("galantis_job_batches_cut_total", "kind" => jobs[0].kind.clone())
                        .increment(1);
                    for job in jobs.into_iter().skip(done) {
                        self.execute(job).await;
                    }
                }
            }
            Err(e) => {
                // Nothing of the batch committed: each job runs again alone,
                // with its kind's own handling of what went wrong.
                tracing::info!(kind = %jobs[0].kind, size = jobs.len(), error = %e, "batch rolled back; running its jobs one by one");
                metrics::counter!("galantis_job_batches_split_total", "kind" => jobs[0].kind.clone())
                    .increment(1);
                for job in jobs {
                    self.execute(job).await;
                }
            }
        }
    }

    async fn drain(&self, lane: Lane, mut tasks: JoinSet<()>, running: Running) {
        let deadline = tokio::time::sleep(self.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { return },
                _ = &mut deadline => break,
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<Arc<ClaimedJob>> = running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|j| j.lane == lane)
            .cloned()
            .collect();
        for job in left {
            let now = self.app.clock.now();
            match run::snooze(&self.app.db, &job, now, now).await {
                Ok(_) => {
                    tracing::warn!(job = %job.id, kind = %job.kind, "released a running job at shutdown")
                }
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "could not release a job at shutdown; it will be rescued")
                }
            }
        }
    }

    async fn heartbeat_loop(
        self: Arc<Self>,
        running: Running,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let every = Duration::from_secs(self.config.heartbeat_interval_secs);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => {}
            }
            let jobs: Vec<ClaimedJob> = running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|j| (**j).clone())
                .collect();
            if !jobs.is_empty()
                && let Err(e) = run::heartbeat(&self.app.db, &jobs, self.app.clock.now()).await
            {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            if *shutdown.borrow() && jobs.is_empty() {
                return;
            }
        }
    }

    /// Runs every due job of this worker's kinds to completion, one at a
    /// time and in claim order, until none is due by the application's
    /// clock; returns how many runs it made. No polling and no lanes'
    /// concurrency: tests drain the queue with it deterministically (a job
    /// retried or snoozed into the future waits until the clock reaches it).
    /// Stops with an error after `max_runs`, so a job that keeps snoozing
    /// for zero time cannot spin forever.
    pub async fn run_until_idle(&self, max_runs: usize) -> anyhow::Result<usize> {
        let mut ran = 0;
        loop {
            let mut claimed_any = false;
            for lane in Lane::ALL {
                let kinds = self.registry.kinds_in(lane);
                if kinds.is_empty() {
                    continue;
                }
                let jobs = run::claim(
                    &self.app.db,
                    lane,
                    &kinds,
                    &self.id,
                    self.app.clock.now(),
                    16,
                )
                .await?;
                let mut jobs: VecDeque<Arc<ClaimedJob>> = jobs.into_iter().map(Arc::new).collect();
                while let Some(job) = jobs.pop_front() {
                    claimed_any = true;
                    if ran >= max_runs {
                        let now = self.app.clock.now();
                        run::snooze(&self.app.db, &job, now, now).await?;
                        for rest in jobs {
                            run::snooze(&self.app.db, &rest, now, now).await?;
                        }
                        anyhow::bail!("the queue was not idle after {max_runs} job runs");
                    }
                    // Batched kinds run as they would on a node, but only
                    // with the jobs right after them, so claim order holds.
                    let mut batch = vec![job];
                    let max = self
                        .registry
                        .get(&batch[0].kind)
                        .and_then(|e| e.batch.as_ref().map(|b| b.max))
                        .unwrap_or(1);
                    while batch.len() < max
                        && batch[0].tenant.is_some()
                        && jobs
                            .front()
                            .is_some_and(|n| n.kind == batch[0].kind && n.tenant == batch[0].tenant)
                    {
                        batch.push(jobs.pop_front().expect("checked"));
                    }
                    ran += batch.len();
                    self.execute_all(batch).await;
                }
            }
            if !claimed_any {
                return Ok(ran);
            }
        }
    }

    async fn execute(&self, job: Arc<ClaimedJob>) {
        let started = Instant::now();
        let Some(entry) = self.registry.get(&job.kind) else {
            // Claims filter on the registered kinds, so this is a bug; hand
            // the job back unspent rather than kill it.
            tracing::error!(job = %job.id, kind = %job.kind, "claimed a job of an unregistered kind; releasing it");
            let now = self.app.clock.now();
            if let Err(e) = run::snooze(&self.app.db, &job, now, now).await {
                tracing::error!(job = %job.id, error = %e, "could not release the job; it will be rescued");
            }
            return;
        };
        let ctx = JobContext::new(self.app.clone(), job.clone());
        let fut = (entry.handler)(ctx.clone(), job.payload.clone());
        let r = match tokio::time::timeout(job.timeout, AssertUnwindSafe(fut).catch_unwind()).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(JobError::Retry(anyhow::anyhow!("the handler panicked"))),
            Err(_) => Err(JobError::Retry(anyhow::anyhow!(
                "timed out after {:?}",
                job.timeout
            ))),
        };
        self.record(&job, &ctx, r, entry.retry).await;
        metrics::histogram!("galantis_job_duration_seconds", "kind" => job.kind.clone())
            .record(started.elapsed().as_secs_f64());
    }

    /// Wakes `lane`'s claim loop when a job snoozed for `d` becomes due, so
    /// a pacing wait (the rate limiter's next slot) ends on time instead of
    /// at the next poll. Waits longer than [`MAX_TIMED_SNOOZE`] (held
    /// sends, reconciliation) are left to the poll.
    fn wake_lane_after(&self, lane: Lane, d: Duration) {
        if d > MAX_TIMED_SNOOZE {
            return;
        }
        let db = self.app.db.clone();
        tokio::spawn(async move {
            // Run times are stored in whole milliseconds: one more makes the
            // job due by the time the claim looks.
            tokio::time::sleep(d + Duration::from_millis(1)).await;
            db.wake_lane(lane);
        });
    }

    async fn record(
        &self,
        job: &ClaimedJob,
        ctx: &JobContext,
        result: Result<(), JobError>,
        retry: galantis_core::RetrySchedule,
    ) {
        let now = self.app.clock.now();
        let kind = job.kind.clone();
        let stored = match result {
            Ok(()) => {
                metrics::counter!("galantis_jobs_completed_total", "kind" => kind.clone())
                    .increment(1);
                if ctx.completed_in_tx() {
                    Ok(true)
                } else {
                    run::complete(&self.app.db, job, now).await
                }
            }
            // `Later` belongs inside batches; alone, it is "again, now".
            Err(e @ (JobError::Snooze(_) | JobError::Later)) => {
                let d = match e {
                    JobError::Snooze(d) => d,
                    _ => Duration::ZERO,
                };
                let until = now + chrono::Duration::from_std(d).unwrap_or_default();
                let r = run::snooze(&self.app.db, job, until, now).await;
                if matches!(r, Ok(true)) {
                    self.wake_lane_after(job.lane, d);
                }
                r
            }
            Err(JobError::Permanent(e)) => {
                tracing::warn!(job = %job.id, kind = %kind, error = %format!("{e:#}"), "job failed permanently");
                metrics::counter!("galantis_jobs_dead_total", "kind" => kind.clone()).increment(1);
                run::fail(&self.app.db, job, now, &format!("{e:#}"), None).await
            }
            Err(JobError::Retry(e)) => {
                let msg = format!("{e:#}");
                let retry_at = (job.attempt < job.max_attempts).then(|| {
                    now + chrono::Duration::from_std(
                        retry.delay(job.attempt, job.id.as_uuid().as_u128()),
                    )
                    .unwrap_or_default()
                });
                if retry_at.is_none() {
                    metrics::counter!("galantis_jobs_dead_total", "kind" => kind.clone())
                        .increment(1);
                    tracing::warn!(job = %job.id, kind = %kind, error = %msg, "job exhausted its attempts");
                } else {
                    tracing::info!(job = %job.id, kind = %kind, attempt = job.attempt, error = %msg, "job failed; will retry");
                }
                metrics::counter!("galantis_jobs_failed_total", "kind" => kind.clone())
                    .increment(1);
                run::fail(&self.app.db, job, now, &msg, retry_at).await
            }
        };
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "job outcome not recorded: the claim was lost to a rescue")
            }
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "could not record job outcome; it will be rescued")
            }
        }
    }
}
