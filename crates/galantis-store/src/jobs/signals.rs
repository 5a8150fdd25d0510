//! Wake-ups and, on SQLite, where to look for jobs.
//!
//! A committed enqueue bumps a per-lane counter that idle workers watch (a
//! `watch` channel never loses a wake-up, and wakes every worker of the lane
//! in this process). Other nodes are woken by PostgreSQL NOTIFY; polling is
//! the fallback for everything else.
//!
//! On SQLite jobs live in each tenant's file, so the queue keeps the set of
//! *sources* (the control database and tenant files) that may hold pending
//! jobs. A source enters the set when a job is committed to it or a periodic
//! scan finds one, and leaves when a claim finds it empty — guarded by an
//! epoch so a job committed during that check is never forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

use galantis_core::{Lane, TenantId};
use tokio::sync::watch;

/// A small set of lanes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct LaneSet(u8);

impl LaneSet {
    fn bit(lane: Lane) -> u8 {
        1 << Lane::ALL.iter().position(|l| *l == lane).unwrap_or(0)
    }

    pub fn insert(&mut self, lane: Lane) {
        self.0 |= Self::bit(lane);
    }

    pub fn contains(self, lane: Lane) -> bool {
        self.0 & Self::bit(lane) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(&mut self, other: LaneSet) {
        self.0 |= other.0;
    }
}

/// Where a job lives: the global store or one tenant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobSource {
    Global,
    Tenant(TenantId),
}

impl JobSource {
    pub fn tenant(self) -> Option<TenantId> {
        match self {
            JobSource::Global => None,
            JobSource::Tenant(t) => Some(t),
        }
    }

    pub fn from_tenant(t: Option<TenantId>) -> Self {
        t.map(JobSource::Tenant).unwrap_or(JobSource::Global)
    }
}

pub struct JobSignals {
    lanes: HashMap<Lane, watch::Sender<u64>>,
    sources: Mutex<HashMap<JobSource, u64>>,
    cursor: std::sync::atomic::AtomicUsize,
}

impl Default for JobSignals {
    fn default() -> Self {
        Self {
            lanes: Lane::ALL
                .into_iter()
                .map(|l| (l, watch::Sender::new(0)))
                .collect(),
            sources: Mutex::new(HashMap::new()),
            cursor: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl JobSignals {
    /// Jobs were committed for `tenant` (None: global) in `lanes`.
    pub fn jobs_committed(&self, tenant: Option<TenantId>, lanes: LaneSet) {
        self.mark_source(JobSource::from_tenant(tenant));
        for lane in Lane::ALL {
            if lanes.contains(lane) {
                self.wake(lane);
            }
        }
    }

    /// Wakes the idle workers of `lane` (also used for NOTIFYs from other nodes).
    pub fn wake(&self, lane: Lane) {
        if let Some(tx) = self.lanes.get(&lane) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub fn subscribe(&self, lane: Lane) -> watch::Receiver<u64> {
        self.lanes[&lane].subscribe()
    }

    /// A rotating start position for visiting sources.
    pub fn next_cursor(&self, _lane: Lane) -> usize {
        self.cursor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn mark_source(&self, source: JobSource) {
        let mut map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(source).or_insert(0) += 1;
    }

    /// The sources that may hold pending jobs, with their epochs.
    pub fn sources(&self) -> Vec<(JobSource, u64)> {
        let map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(s, e)| (*s, *e)).collect();
        v.sort();
        v
    }

    /// Forgets `source` unless something was committed to it since `epoch`.
    pub fn forget_source(&self, source: JobSource, epoch: u64) {
        let mut map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&source) == Some(&epoch) {
            map.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_marked_during_a_check_is_not_forgotten() {
        let s = JobSignals::default();
        let t = JobSource::Tenant(TenantId::new());
        s.mark_source(t);
        let (_, epoch) = s.sources()[0];
        s.mark_source(t); // committed while the emptiness check ran
        s.forget_source(t, epoch);
        assert_eq!(s.sources().len(), 1);
        let (_, epoch) = s.sources()[0];
        s.forget_source(t, epoch);
        assert!(s.sources().is_empty());
    }

    #[test]
    fn lane_sets() {
        let mut l = LaneSet::default();
        assert!(l.is_empty());
        l.insert(Lane::Campaigns);
        assert!(l.contains(Lane::Campaigns));
        assert!(!l.contains(Lane::Ingest));
    }
}
