//! Job kinds and their handlers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use galantis_core::{JobKind, RetrySchedule};

use super::{JobContext, JobError};

type Handler = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync,
>;

pub(crate) struct Entry {
    pub handler: Handler,
    pub retry: RetrySchedule,
}

/// Maps stored kind names to handlers and their retry schedules.
#[derive(Default, Clone)]
pub struct Registry {
    entries: HashMap<&'static str, Arc<Entry>>,
}

impl Registry {
    /// The kinds Galantis itself runs.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        super::kinds::register_builtin(&mut r);
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
            }),
        );
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<Arc<Entry>> {
        self.entries.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.entries.keys().copied().collect();
        v.sort_unstable();
        v
    }
}
