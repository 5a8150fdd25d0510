//! Campaigns (design.md §4 "Campaigns"; docs/decisions/0026-campaign-dispatch.md).
//!
//! - [`launch`]: the pre-launch checks and the one conditional move to
//!   `PENDING` (a member's launch, or the scheduled start).
//! - [`schedule`]: `campaign.start`, the durable tick at `scheduled_at`,
//!   with the missed-schedule grace.
//! - [`dispatch`]: `SendCampaignMessagesBatchJob` — resolves the audience
//!   into recipients and queues them in batches through `queue_many`.
//! - [`monitor`]: `MonitorCampaignJob` — tallies and the final status.
//! - [`content`]: a recipient's template send from the variables mapping.

pub mod content;
pub mod dispatch;
pub mod launch;
pub mod monitor;
pub mod schedule;

use galantis_core::campaign::{AudienceSpec, SetKind};
use galantis_store::tenant::audience::AudienceSpec as StoreSpec;

/// The campaign kinds: the scheduled start, the batch dispatcher, the monitor.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<schedule::StartCampaign, _, _>(schedule::run);
    r.register::<dispatch::SendCampaignMessagesBatchJob, _, _>(dispatch::run);
    r.register::<monitor::MonitorCampaignJob, _, _>(monitor::run);
}

/// The store's form of an audience.
pub fn store_spec(a: &AudienceSpec) -> StoreSpec {
    StoreSpec {
        include_lists: a.ids(true, SetKind::List),
        include_segments: a.ids(true, SetKind::Segment),
        exclude_lists: a.ids(false, SetKind::List),
        exclude_segments: a.ids(false, SetKind::Segment),
    }
}
