//! Launching: the four pre-launch checks over what is true now, then one
//! conditional move to `PENDING` that enqueues the dispatcher and the
//! monitor in the same transaction. Two launches (two clicks, two nodes'
//! scheduled starts) race on that `UPDATE … WHERE status IN (…)`: one wins,
//! the other changes nothing.

use chrono::{DateTime, Utc};
use galantis_core::campaign::{
    self, CampaignStatus, LaunchFacts, LaunchRefusal, is_catalog_content, prelaunch,
};
use galantis_core::templates::TemplateStatus;
use galantis_store::tenant::audience::{self as audience_store, Estimate};
use galantis_store::tenant::campaigns::{self as store, Campaign};
use galantis_store::tenant::templates;
use galantis_store::{StoreError, TenantTx};

use super::dispatch::SendCampaignMessagesBatchJob;
use super::monitor::MonitorCampaignJob;
use crate::sending::credits;

/// What the checks read, with the estimate they read it from.
pub struct Checked {
    pub facts: LaunchFacts,
    pub estimate: Estimate,
    pub refusals: Vec<LaunchRefusal>,
    pub campaign_type: Option<campaign::CampaignType>,
}

/// Runs the pre-launch checks for `c` inside `tx`.
pub async fn check(
    tx: &mut TenantTx,
    c: &Campaign,
    now: DateTime<Utc>,
) -> Result<Checked, StoreError> {
    let template = templates::get(tx, c.template_id).await?;
    let estimate = audience_store::estimate(tx, &super::store_spec(&c.audience)).await?;
    let a = credits::availability(tx, now).await?;
    let catalog = template
        .as_ref()
        .is_some_and(|t| is_catalog_content(t.format.as_deref(), &t.components));
    let facts = LaunchFacts {
        template_status: template
            .as_ref()
            .and_then(|t| TemplateStatus::from_meta(&t.status)),
        template_category: template.as_ref().map(|t| t.category),
        catalog_content: catalog,
        eligible: estimate.final_reach,
        credits_available: a.balance - a.reserved,
    };
    let refusals = prelaunch(&facts);
    let campaign_type = template
        .as_ref()
        .and_then(|t| campaign::campaign_type(t.category, catalog));
    Ok(Checked {
        facts,
        estimate,
        refusals,
        campaign_type,
    })
}

/// The outcome of [`start_in`].
#[derive(Debug)]
pub enum Started {
    /// This call moved the campaign to `PENDING` and enqueued its dispatch.
    Launched,
    /// A check refused (nothing changed).
    Refused(LaunchRefusal),
    /// The campaign was not in one of `from` any more (another launch won,
    /// or it was cancelled): nothing changed.
    NotLaunchable(CampaignStatus),
}

/// Checks and launches campaign `c` (read in `tx`) if its status is one of
/// `from`. The caller commits.
pub async fn start_in(
    tx: &mut TenantTx,
    c: &Campaign,
    from: &[CampaignStatus],
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if !from.contains(&c.status) {
        return Ok(Started::NotLaunchable(c.status));
    }
    let checked = check(tx, c, now).await?;
    if let Some(r) = checked.refusals.into_iter().next() {
        return Ok(Started::Refused(r));
    }
    let now_ms = now.timestamp_millis();
    if !store::transition(tx, c.id, from, CampaignStatus::Pending, None, now_ms).await? {
        let current = store::get(tx, c.id)
            .await?
            .map_or(CampaignStatus::Cancelled, |c| c.status);
        return Ok(Started::NotLaunchable(current));
    }
    store::set_type(tx, c.id, checked.campaign_type).await?;
    crate::jobs::enqueue(tx, &SendCampaignMessagesBatchJob { campaign_id: c.id }, now).await?;
    crate::jobs::enqueue(tx, &MonitorCampaignJob { campaign_id: c.id }, now).await?;
    metrics::counter!("galantis_campaigns_launched_total").increment(1);
    Ok(Started::Launched)
}
