//! Job kinds and their handlers, and the periodic jobs, as each feature
//! module registers them (`sending::kinds::register`, `audience::register`, …).
//!
//! A node claims only the kinds in its registry (see
//! `galantis_store::jobs::run::claim`): during a rolling deploy that adds a
//! kind, old nodes leave its jobs for the new ones instead of failing them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use galantis_core::{JobKind, Lane, RetrySchedule};

use super::scheduler::Periodic;
use galantis_store::TenantTx;

use super::{AfterCommit, JobContext, JobError};
use crate::config::Config;

type Handler = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync,
>;

/// A kind's work inside a transaction the worker owns: it neither
/// completes the job nor commits (see [`Registry::batched`]).
pub type InTx<K> = for<'a> fn(
    &'a JobContext,
    &'a mut TenantTx,
    K,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>>;

type ErasedInTx = Arc<
    dyn for<'a> Fn(
            &'a JobContext,
            &'a mut TenantTx,
            serde_json::Value,
        ) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>>
        + Send
        + Sync,
>;

/// A kind's work for a whole batch inside the worker's transaction (see
/// [`Registry::batched_whole`]).
pub type InTxBatch<K> = for<'a> fn(
    &'a [JobContext],
    &'a mut TenantTx,
    Vec<K>,
) -> BoxFuture<'a, Result<BatchDone, JobError>>;

type ErasedInTxBatch = Arc<
    dyn for<'a> Fn(&'a [JobContext], &'a mut TenantTx) -> BoxFuture<'a, Result<BatchDone, JobError>>
        + Send
        + Sync,
>;

/// What a whole-batch handler did: the first `done` jobs (at least one),
/// and what to run once they have committed. The worker runs the rest
/// alone afterwards, as when a per-job handler returns
/// [`JobError::Later`].
pub struct BatchDone {
    pub done: usize,
    pub after: Vec<AfterCommit>,
}

/// How a batched kind runs several jobs in one transaction.
#[derive(Clone)]
pub(crate) struct Batched {
    pub run: BatchRun,
    /// Most jobs in one transaction.
    pub max: usize,
}

#[derive(Clone)]
pub(crate) enum BatchRun {
    /// One job at a time ([`Registry::batched`]).
    EachJob(ErasedInTx),
    /// The batch at once ([`Registry::batched_whole`]).
    Whole(ErasedInTxBatch),
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub handler: Handler,
    pub retry: RetrySchedule,
    pub lane: Lane,
    pub batch: Option<Batched>,
}

/// A periodic job as configured (`None`: switched off by the configuration).
pub type PeriodicSource = fn(&Config) -> Option<Periodic>;

/// Maps stored kind names to handlers and their retry schedules, and holds
/// the periodic jobs the scheduler enqueues.
#[derive(Default, Clone)]
pub struct Registry {
    entries: HashMap<&'static str, Arc<Entry>>,
    periodic: Vec<PeriodicSource>,
}

impl Registry {
    /// The kinds Galantis itself runs: every feature module's.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        super::kinds::register(&mut r);
        crate::webhooks::register(&mut r);
        crate::sending::kinds::register(&mut r);
        super::kinds::audience::register(&mut r);
        super::kinds::collections::register(&mut r);
        crate::billing::register(&mut r);
        crate::abandoned_checkout::register(&mut r);
        crate::campaigns::register(&mut r);
        crate::automations::register(&mut r);
        r
    }

    /// Registers `handler` for kind `K`. A payload that does not deserialise
    /// into `K` is a permanent failure: retrying cannot fix it.
    pub fn register<K, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        K: JobKind,
        F: Fn(JobContext, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx, payload| {
            let handler = handler.clone();
            Box::pin(async move {
                let job: K = serde_json::from_value(payload).map_err(|e| {
                    JobError::Permanent(anyhow::anyhow!("payload is not a valid {}: {e}", K::KIND))
                })?;
                handler(ctx, job).await
            })
        });
        self.entries.insert(
            K::KIND,
            Arc::new(Entry {
                handler: erased,
                retry: K::RETRY,
                lane: K::LANE,
                batch: None,
            }),
        );
        self
    }

    /// Registers kind `K` to run up to `max` of one tenant's due jobs in one
    /// transaction: `run_in` does one job's work in the worker's
    /// transaction, the worker completes each job in it and commits once
    /// (group commit: the effects and completions of the whole batch are
    /// durable together, never one without the other). If any job of the
    /// batch fails, snoozes, panics or times out, the transaction rolls back
    /// and every job of the batch runs again alone through `single`, which
    /// keeps the kind's own failure handling; so one bad job costs its
    /// batch a second pass, never another job's outcome.
    pub fn batched<K, F, Fut>(&mut self, max: usize, single: F, run_in: InTx<K>) -> &mut Self
    where
        K: JobKind,
        F: Fn(JobContext, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register::<K, F, Fut>(single);
        let erased: ErasedInTx =
            Arc::new(
                move |ctx, tx, payload| match serde_json::from_value::<K>(payload) {
                    Ok(job) => run_in(ctx, tx, job),
                    Err(e) => Box::pin(futures::future::ready(Err(JobError::Permanent(
                        anyhow::anyhow!("payload is not a valid {}: {e}", K::KIND),
                    )))),
                },
            );
        self.set_batched(K::KIND, BatchRun::EachJob(erased), max)
    }

    /// Like [`Registry::batched`], but `run_all` gets the whole batch: for
    /// kinds that do part of every job's work together (one statement, or
    /// one lock taken as late as possible, for all of them). Its jobs are
    /// parsed first; one that does not parse fails the batch, which then
    /// runs alone through `single` like any failed batch.
    pub fn batched_whole<K, F, Fut>(
        &mut self,
        max: usize,
        single: F,
        run_all: InTxBatch<K>,
    ) -> &mut Self
    where
        K: JobKind,
        F: Fn(JobContext, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register::<K, F, Fut>(single);
        let erased: ErasedInTxBatch = Arc::new(move |ctxs, tx| {
            let jobs = ctxs
                .iter()
                .map(|c| serde_json::from_value::<K>(c.job.payload.clone()))
                .collect::<Result<Vec<K>, _>>();
            match jobs {
                Ok(jobs) => run_all(ctxs, tx, jobs),
                Err(e) => Box::pin(futures::future::ready(Err(JobError::Permanent(
                    anyhow::anyhow!("payload is not a valid {}: {e}", K::KIND),
                )))),
            }
        });
        self.set_batched(K::KIND, BatchRun::Whole(erased), max)
    }

    fn set_batched(&mut self, kind: &'static str, run: BatchRun, max: usize) -> &mut Self {
        let entry = self.entries.get_mut(kind).expect("registered first");
        Arc::make_mut(entry).batch = Some(Batched {
            run,
            max: max.max(1),
        });
        self
    }

    /// Adds a periodic job; `source` reads its period (or that it is off)
    /// from the configuration.
    pub fn periodic(&mut self, source: PeriodicSource) -> &mut Self {
        self.periodic.push(source);
        self
    }

    /// The periodic jobs switched on by `config`.
    pub fn periodic_jobs(&self, config: &Config) -> Vec<Periodic> {
        self.periodic.iter().filter_map(|p| p(config)).collect()
    }

    pub(crate) fn get(&self, kind: &str) -> Option<Arc<Entry>> {
        self.entries.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.entries.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Changes the batch size of batched kind `kind` (1: one job per
    /// transaction); other kinds are left alone. For comparing the two
    /// paths (`galantis bench queue`) and for tests.
    pub fn set_batch(&mut self, kind: &str, max: usize) -> &mut Self {
        if let Some(entry) = self.entries.get_mut(kind)
            && let Some(b) = Arc::make_mut(entry).batch.as_mut()
        {
            b.max = max.max(1);
        }
        self
    }

    /// The largest batch of any kind in `lane` (1 when none is batched).
    pub(crate) fn max_batch_in(&self, lane: Lane) -> usize {
        self.entries
            .values()
            .filter(|e| e.lane == lane)
            .filter_map(|e| e.batch.as_ref().map(|b| b.max))
            .max()
            .unwrap_or(1)
    }

    /// The registered kinds of `lane`: what this node claims there.
    pub fn kinds_in(&self, lane: Lane) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.lane == lane)
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }
}
