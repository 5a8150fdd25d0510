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
use super::{JobContext, JobError};
use crate::config::Config;

type Handler = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync,
>;

pub(crate) struct Entry {
    pub handler: Handler,
    pub retry: RetrySchedule,
    pub lane: Lane,
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
            }),
        );
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
