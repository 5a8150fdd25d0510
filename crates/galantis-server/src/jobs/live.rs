//! The jobs a node's worker holds, shared with its scheduler so that the
//! node's rescue pass spares them (ADR 0003, "Heartbeats and rescue").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use galantis_core::{JobId, TenantId};
use galantis_store::jobs::run::ClaimedJob;

pub(super) type Running = Arc<Mutex<HashMap<JobId, Arc<ClaimedJob>>>>;

/// The jobs a worker has claimed and not finished (running, or waiting for
/// a slot): it heartbeats them, and its node's rescue spares them.
#[derive(Clone)]
pub struct LiveJobs(pub(super) Running);

impl LiveJobs {
    pub fn ids(&self) -> Vec<(Option<TenantId>, JobId)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|j| (j.tenant, j.id))
            .collect()
    }
}
