//! Sending's job kinds, registered by the node that runs them (kept apart
//! from `sending/mod.rs`, which the application state holds, so the job
//! runtime and the state do not import each other).

use super::{job, templates};

/// Sending's kinds: the send itself and template syncs (with the periodic
/// sync, unless the configuration switches it off).
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<job::SendMessage, _, _>(job::run);
    r.register::<templates::SyncTemplates, _, _>(templates::run_sync);
    r.register::<templates::SyncAllTemplates, _, _>(templates::run_sync_all);
    r.periodic(|c| templates::periodic(&c.sending));
}
