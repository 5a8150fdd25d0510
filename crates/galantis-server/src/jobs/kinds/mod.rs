//! The queue's own job kinds; feature modules register theirs through
//! their own `register` (see [`Registry::builtin`]).

pub mod audience;
pub mod collections;
pub mod probe;
pub mod prune;

use galantis_core::JobKind;

use super::Registry;
use super::scheduler::Periodic;

/// Most probes of one tenant run in one transaction: the probe exercises
/// the queue's batched path like the kinds that use it.
pub const PROBE_BATCH: usize = 32;

/// The queue's own kinds: the probe and the hourly prune.
pub fn register(r: &mut Registry) {
    r.batched::<probe::QueueProbe, _, _>(PROBE_BATCH, probe::run, probe::run_in);
    r.register::<prune::PruneJobs, _, _>(prune::run);
    r.periodic(|_| {
        Some(Periodic {
            name: prune::PruneJobs::KIND,
            every: std::time::Duration::from_secs(3600),
            make: |at| {
                super::new_job(&prune::PruneJobs::default(), at).expect("empty payload serialises")
            },
        })
    });
}
