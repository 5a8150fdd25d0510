//! The back-in-stock pipeline (seed 002, ADR 0031): a `VariantRestocked`
//! event fans out to the variant's `ACTIVE` subscriptions in batches.
//!
//! Steps 1–5 are the webhook's (`webhooks::shopify::products`: a variant
//! 0 → positive from `products/update` or `inventory_levels/update` records
//! `VariantRestocked`, whose subscriber enqueues `automation.trigger`).
//! Then, per batch, in one tenant transaction:
//! 6. The next page of `ACTIVE` subscriptions of the variant, oldest
//!    first, after the cursor: [`FIRST_BATCH`], then each page [`GROWTH`]
//!    times the last, up to [`BATCH`]. If the variant is sold
//!    out again, the fan-out stops: the rest stay `ACTIVE` for the next
//!    restock (metric `galantis_restock_stopped_total`).
//! 7–8. The page's subscribers go through the automation's gate together
//!    (one read of their contacts and prior runs, ADR 0037; consent
//!    `SUBSCRIBED`, then the frequency cap, 24 h in the recipe): a refusal
//!    is a `SKIPPED` activity row with the gate's reason and the
//!    subscription stays `ACTIVE`.
//! 9–10. Qualifying subscribers are enrolled (their run's context holds the
//!    product, variant and a tracked link `/r/{code}` attributed to the
//!    contact and subscription); each run's first step (the Action node's
//!    send) is enqueued in the same transaction, so the first send can
//!    leave as soon as the first batch commits.
//! 11. Enrolled subscriptions become `NOTIFIED` in the same transaction
//!    (a dispatch record, whatever the delivery outcome).
//! 12. Credits are charged by the send path when Meta accepts a message.
//!
//! A batch that leaves more subscribers enqueues [`RestockJob`] for the
//! next page (unique per event, automation and cursor).
//!
//! The tenant's back-in-stock automation: if the tenant has none (any
//! status), one is created from the recipe and activated when an
//! `APPROVED` template whose name starts with [`TEMPLATE_PREFIX`] exists
//! (the newest such); otherwise the merchant's own automation is used.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::automation::{
    AutomationStatus, Flow, RecipeKind, RecipeTemplates, TriggerFact, TriggerKind, recipe,
};
use galantis_core::{JobKind, Lane, RetrySchedule};
use galantis_store::tenant::automations::{self, Automation, NewAutomation};
use galantis_store::tenant::back_in_stock as bis;
use galantis_store::tenant::short_links::{self, Attribution};
use galantis_store::tenant::templates;
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enrol::{Enrolment, NewRun, enrol_many};
use super::facts::Templates;
use super::{engine, facts, step_batch, versions};
use crate::jobs::{JobContext, JobError};
use crate::sending::connection::{self, Resolved};

/// The first page is small, so the first sends leave quickly.
pub const FIRST_BATCH: u32 = 10;
/// Each page is this many times the last. The page after the first starts
/// while the first page's sends are leaving, and a page holds the tenant's
/// writer on SQLite (a share of the CPU on PostgreSQL) for its whole
/// length: a small second page keeps the first sends from waiting behind
/// it (ADR 0043).
pub const GROWTH: u32 = 5;
/// The largest page.
pub const BATCH: u32 = 500;

/// The size of the page after one of `limit`.
pub fn next_page(limit: u32) -> u32 {
    limit.saturating_mul(GROWTH).clamp(1, BATCH)
}

/// The recipe automation uses the newest `APPROVED` template named so.
pub const TEMPLATE_PREFIX: &str = "back_in_stock";

/// The next page of one restock's fan-out in one automation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestockJob {
    pub event_id: Uuid,
    pub automation_id: Uuid,
    pub variant_id: Uuid,
    pub key: String,
    pub occurred_at: DateTime<Utc>,
    pub after: Uuid,
    /// This page's size (pages queued before sizes grew were all [`BATCH`]).
    #[serde(default = "full_page")]
    pub limit: u32,
}

fn full_page() -> u32 {
    BATCH
}

impl JobKind for RestockJob {
    const KIND: &'static str = "automation.restock";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 20;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(1),
        factor: 2.0,
        cap: Duration::from_secs(300),
        jitter: 0.2,
    };

    fn unique_key(&self) -> Option<String> {
        Some(format!(
            "automation_restock:{}:{}:{}",
            self.event_id, self.automation_id, self.after
        ))
    }
}

pub(super) async fn run(ctx: JobContext, job: RestockJob) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("restocks belong to a tenant")))?;
    let now = ctx.now();
    let links = Links::of(&ctx).await;
    if let Some(wait) = queued_ahead(&ctx, tenant, &links).await? {
        return Err(JobError::Snooze(wait));
    }
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    if let Some(a) = automations::get(&mut tx, job.automation_id).await? {
        let fact = TriggerFact {
            trigger: TriggerKind::BackInStock,
            audience: galantis_core::automation::Audience::VariantSubscribers(job.variant_id),
            key: job.key.clone(),
            occurred_at: job.occurred_at,
            tag: None,
            segment_id: None,
            list_id: None,
            order_id: None,
            checkout_id: None,
            variant_id: Some(job.variant_id),
            variables: Default::default(),
        };
        batch(
            &mut tx,
            &a,
            &fact,
            job.event_id,
            Some(job.after),
            job.limit.clamp(1, BATCH),
            &links,
            now,
        )
        .await?;
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A page waits while more than [`AHEAD_MAX`] of the tenant's messages are
/// queued ahead, at its number's rate (messages holding a credit: sent
/// neither accepted nor refused), until about [`AHEAD_RESUME`] are left.
/// Pages read far ahead of the sends would spend the CPU (and on SQLite
/// the writer) that the first seconds of sending need, which the rate
/// limit never lets the sends make up; and a subscriber not yet enrolled
/// stays `ACTIVE` if the variant sells out again meanwhile (ADR 0043).
pub const AHEAD_MAX: Duration = Duration::from_secs(2);
/// See [`AHEAD_MAX`].
pub const AHEAD_RESUME: Duration = Duration::from_secs(1);

/// How long this page should wait (see [`AHEAD_MAX`]); `None`: go now.
async fn queued_ahead(
    ctx: &JobContext,
    tenant: galantis_core::TenantId,
    links: &Links,
) -> Result<Option<Duration>, JobError> {
    let Some(rate) = links
        .conn
        .as_deref()
        .and_then(Resolved::default_number)
        .map(|n| n.messages_per_second)
        .filter(|r| *r > 0)
    else {
        return Ok(None);
    };
    let mut tx = ctx.app.db.tenant_read(tenant).await?;
    let queued = galantis_store::tenant::sending::reservations::reserved_credits(&mut tx).await?;
    tx.commit().await?;
    Ok(pace(queued, rate))
}

/// [`queued_ahead`]'s rule: `queued` messages at `rate` per second.
pub fn pace(queued: i64, rate: u32) -> Option<Duration> {
    let ahead = Duration::from_secs_f64(queued.max(0) as f64 / f64::from(rate.max(1)));
    (ahead > AHEAD_MAX).then(|| ahead - AHEAD_RESUME)
}

/// Where tracked links point: `{public_url}/r/{code}` redirecting to the
/// product page on the shop.
#[derive(Clone, Default)]
pub struct Links {
    pub public_url: String,
    pub shop: Option<String>,
    /// The tenant's sending connection: with it, a batch's first sends are
    /// queued together in the batch's transaction; without it each run's
    /// first step is a job.
    pub conn: Option<std::sync::Arc<Resolved>>,
}

impl Links {
    pub async fn of(ctx: &JobContext) -> Links {
        let shop = match ctx.tenant() {
            Some(t) => galantis_store::control::tenants::get(&ctx.app.db, t)
                .await
                .ok()
                .flatten()
                .map(|t| t.shop.to_string()),
            None => None,
        };
        let conn = match ctx.tenant() {
            Some(t) => connection::resolve(&ctx.app, t).await.ok(),
            None => None,
        };
        Links {
            public_url: ctx.app.config.public_url(),
            shop,
            conn,
        }
    }
}

/// Creates the tenant's back-in-stock automation from its recipe when it
/// has none and a restock template is `APPROVED`. Returns the new one.
pub async fn ensure_automation(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
) -> Result<Option<Automation>, StoreError> {
    // Two restocks processed at once must not both create one.
    tx.serialize_tenant_writes().await?;
    if automations::any_for_trigger(tx, TriggerKind::BackInStock).await? {
        return Ok(None);
    }
    let approved = templates::list(tx, Some(&["APPROVED"]), None, 1000).await?;
    let Some(t) = approved
        .iter()
        .find(|t| t.name.to_lowercase().starts_with(TEMPLATE_PREFIX))
    else {
        return Ok(None);
    };
    let mut given = RecipeTemplates::default();
    given
        .template_ids
        .insert(RecipeKind::BackInStock.slots()[0].to_owned(), t.id);
    let r = recipe(RecipeKind::BackInStock, &given);
    let Ok(flow) = Flow::parse(&r.flow) else {
        return Ok(None);
    };
    let now_ms = now.timestamp_millis();
    let a = automations::create(
        tx,
        &NewAutomation {
            name: r.name,
            flow: (&r.flow, &flow),
            frequency_cap: Some(r.frequency_cap),
            exclusions: &[],
            include_existing_users: false,
        },
        now_ms,
    )
    .await?;
    let a = automations::set_status(tx, a.id, AutomationStatus::Active, now_ms).await?;
    tracing::info!(automation = %a.id, template = %t.id, "back-in-stock automation created from its recipe");
    Ok(Some(a))
}

/// One page of the fan-out (steps 6–11 in the module doc). Returns how
/// many runs were created; enqueues the next page when this one was full.
#[allow(clippy::too_many_arguments)]
pub async fn batch(
    tx: &mut TenantTx,
    a: &Automation,
    fact: &TriggerFact,
    event_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
    links: &Links,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let Some(variant_id) = fact.variant_id else {
        return Ok(0);
    };
    // Nobody is enrolled in an automation that is not running: write no
    // links for them either.
    if a.status != AutomationStatus::Active || versions::current(a).is_none() {
        return Ok(0);
    }
    let Some(v) = bis::notice_variant(tx, variant_id).await? else {
        return Ok(0);
    };
    // Sold out again: the rest wait, ACTIVE, for the next restock.
    if v.inventory_quantity.is_some_and(|q| q <= 0) {
        metrics::counter!("galantis_restock_stopped_total").increment(1);
        tracing::info!(
            variant = v.shopify_variant_id,
            "variant sold out again: fan-out stops"
        );
        return Ok(0);
    }
    let subs = bis::active_for_variant(tx, v.shopify_variant_id, after, limit).await?;
    let now_ms = now.timestamp_millis();
    let target = match (&links.shop, &v.handle) {
        (Some(shop), Some(h)) => {
            format!(
                "https://{shop}/products/{h}?variant={}",
                v.shopify_variant_id
            )
        }
        (Some(shop), None) => format!("https://{shop}/"),
        _ => links.public_url.clone(),
    };
    let mut base = fact.clone();
    for (k, val) in [
        ("product.title", &v.product_title),
        ("variant.title", &v.variant_title),
        ("variant.price", &v.price),
        ("product.price", &v.price),
    ] {
        if let Some(val) = val {
            base.variables.insert(k.into(), val.clone());
        }
    }
    base.variables.insert("product.url".into(), target.clone());
    // A link only for those the gate may let through, all in one insert.
    let linked = |s: &&bis::ActiveSubscriber| s.marketing_state == "SUBSCRIBED";
    let attributions: Vec<Attribution> = subs
        .iter()
        .filter(linked)
        .map(|s| Attribution {
            contact_id: Some(s.contact_id),
            subscription_id: Some(s.subscription_id),
            message_id: None,
        })
        .collect();
    let mut codes = short_links::create_many(tx, &target, &attributions, now_ms)
        .await?
        .into_iter();
    let public = links.public_url.trim_end_matches('/');
    let facts: Vec<TriggerFact> = subs
        .iter()
        .map(|s| {
            let mut f = base.clone();
            if linked(&s) {
                let link = codes.next().expect("one link per linked subscriber");
                let url = format!("{public}/r/{}", link.code);
                f.variables.insert("variant.url".into(), url);
            }
            f
        })
        .collect();
    let candidates: Vec<(Uuid, &TriggerFact)> =
        subs.iter().map(|s| s.contact_id).zip(&facts).collect();
    let outcomes = enrol_many(tx, a, &candidates, now).await?;
    let mut notified = Vec::with_capacity(subs.len());
    let mut started = Vec::new();
    for (s, (outcome, new)) in subs.iter().zip(outcomes) {
        match outcome {
            Enrolment::Enrolled(_) | Enrolment::Duplicate => notified.push(s.subscription_id),
            Enrolment::Blocked(_) => {}
            Enrolment::NotActive => return Ok(0),
        }
        started.extend(new);
    }
    let enrolled = started.len();
    match &links.conn {
        Some(conn) => start_many(tx, a, conn, started, now).await?,
        None => {
            for (run, _) in &started {
                engine::queue_start(tx, run.id, now).await?;
            }
        }
    }
    bis::mark_notified(tx, &notified, now_ms).await?;
    if subs.len() == limit as usize
        && let Some(last) = subs.last()
    {
        let next = RestockJob {
            event_id,
            automation_id: a.id,
            variant_id,
            key: fact.key.clone(),
            occurred_at: fact.occurred_at,
            after: last.subscription_id,
            limit: next_page(limit),
        };
        crate::jobs::enqueue(tx, &next, now).await?;
    }
    Ok(enrolled)
}

/// Steps 9–10 for a batch: each new run's first step, with the first send
/// of every run queued by one `queue_many` (one credit snapshot, one
/// transaction), then each run's state saved and the batch's activity
/// written together.
async fn start_many(
    tx: &mut TenantTx,
    a: &Automation,
    conn: &Resolved,
    started: Vec<NewRun>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use galantis_core::automation::{Input, Step, step};
    let Some(version) = versions::current(a) else {
        return Ok(());
    };
    let mut templates = Templates::default();
    let mut steps = Vec::with_capacity(started.len());
    for (run, contact) in started {
        let f = facts::load(tx, &run, &version, Some(contact), &mut templates).await?;
        let out = step(&version.flow, &run.state, Input::Start, &f, now);
        steps.push((run, out));
    }
    let pairs: Vec<(&automations::runs::Run, &Step)> = steps.iter().map(|(r, o)| (r, o)).collect();
    let firsts = step_batch::queue_first_sends(tx, &mut templates, Some(conn), &pairs, now).await?;
    let mut written = engine::Written::default();
    for ((run, out), first_send) in steps.into_iter().zip(firsts) {
        let applied = engine::Applied {
            conn: Some(conn),
            first_send,
            written: &mut written,
        };
        engine::apply_into(tx, &run, out, &mut templates, applied, now).await?;
    }
    written.write(tx, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_waits_only_while_more_than_two_seconds_of_sends_are_queued() {
        assert_eq!(pace(0, 80), None);
        assert_eq!(pace(160, 80), None, "exactly two seconds ahead: go");
        assert_eq!(pace(2_000, 1_000), None);
        // 2.5 s ahead: wait until about one second is left.
        assert_eq!(pace(200, 80), Some(Duration::from_millis(1_500)));
        assert_eq!(pace(5_000, 1_000), Some(Duration::from_secs(4)));
        assert_eq!(pace(-3, 80), None);
        assert_eq!(
            pace(10, 0),
            Some(Duration::from_secs(9)),
            "a rate of 0 counts as 1/s"
        );
    }

    #[test]
    fn pages_grow_from_the_first_to_the_largest() {
        let mut sizes = vec![FIRST_BATCH];
        while *sizes.last().unwrap() < BATCH {
            sizes.push(next_page(*sizes.last().unwrap()));
        }
        assert_eq!(sizes, [10, 50, 250, 500]);
        assert_eq!(next_page(BATCH), BATCH);
        assert_eq!(next_page(0), 1);
    }
}
