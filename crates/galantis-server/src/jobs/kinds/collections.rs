//! Collection contents for "purchased collection" segment rules. Shopify's
//! collection webhooks carry no product list, so:
//! - `shopify.collection_sync` (one per tenant and collection at a time)
//!   reads the collection's products through the
//!   [`crate::shopify_client::ShopifyClient`] port, replaces the stored
//!   rows (`collection_products`) and re-evaluates the segments whose rules
//!   mention the collection, emitting `USER_ADDED_TO_SEGMENT` for entries.
//!   `collections/create|update|delete` and `products/delete` enqueue it in
//!   their own transaction; a deleted collection is emptied without asking
//!   Shopify.
//!   Saving a segment that mentions a collection never heard of enqueues
//!   it too.
//! - `shopify.collection_reconcile` (daily, global) enqueues a sync of every
//!   known collection and every collection a segment mentions, for each
//!   active tenant: it catches what no webhook announces (smart collections
//!   whose rules match a product after a tag change, collections created
//!   before the app was installed).

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::segment::SegmentRules;
use galantis_core::{JobKind, Lane, RetrySchedule, UniqueScope};
use galantis_store::control::tenants;
use galantis_store::tenant::{catalog, segments};
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};

use crate::audience;
use crate::jobs::{JobContext, JobError, enqueue};
use crate::shopify_client::{Read, ShopifyError};

/// Re-reads one collection's products from Shopify.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncCollection {
    pub collection_id: i64,
}

impl JobKind for SyncCollection {
    const KIND: &'static str = "shopify.collection_sync";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(600);
    // While one is queued or running, another enqueue is the same job: the
    // run reads Shopify after it starts, and notices (below) a webhook that
    // touched the collection while it was reading.
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some(format!("collection_sync:{}", self.collection_id))
    }
}

/// Enqueues a sync of `collection` in the transaction that learnt about a
/// change to it.
pub async fn enqueue_sync(
    tx: &mut TenantTx,
    collection: i64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    enqueue(
        tx,
        &SyncCollection {
            collection_id: collection,
        },
        at,
    )
    .await?;
    Ok(())
}

/// A segment's rules were saved: collections they mention that Galantis
/// has never heard of (no collection webhook, no stored products: created
/// before the app was installed) are synced now rather than at the next
/// reconcile. Returns how many syncs were enqueued.
pub async fn sync_unknown_collections(
    tx: &mut TenantTx,
    rules: &SegmentRules,
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for id in rules.referenced_collections() {
        if catalog::collection_generation(tx, id).await?.is_none()
            && catalog::collection_products(tx, id).await?.is_empty()
        {
            enqueue_sync(tx, id, at).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// How many times a run reads Shopify again because a webhook changed the
/// collection while it was reading, before it gives the attempt up.
const ROUNDS: usize = 3;

pub async fn run_sync(ctx: JobContext, job: SyncCollection) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("collections belong to a tenant")))?;
    let db = ctx.app.db.clone();
    let id = job.collection_id;
    for _ in 0..ROUNDS {
        let mut tx = db.tenant_read(tenant).await?;
        let before = catalog::collection_generation(&mut tx, id).await?;
        tx.commit().await?;
        let deleted = before.is_some_and(|(_, _, deleted_at)| deleted_at.is_some());
        // `None`: keep the stored rows (Shopify was not asked).
        let products = if deleted {
            Some(Vec::new())
        } else {
            match ctx.app.shopify.collection_products(tenant, id).await {
                Ok(Read::Found(p)) => Some(p),
                Ok(Read::NotFound) => Some(Vec::new()),
                Ok(Read::Skipped(why)) => {
                    tracing::info!(collection = id, reason = why, "collection sync skipped");
                    None
                }
                Err(ShopifyError::Retryable(e)) => return Err(JobError::Retry(anyhow::anyhow!(e))),
                Err(ShopifyError::Permanent(e)) => {
                    return Err(JobError::Permanent(anyhow::anyhow!(e)));
                }
            }
        };
        let now = ctx.now().timestamp_millis();
        let mut tx = db.tenant_tx(tenant).await?;
        // Webhook processing of the tenant applies one at a time with this.
        tx.serialize_tenant_writes().await?;
        if catalog::collection_generation(&mut tx, id).await? != before {
            // A collection webhook was applied while Shopify was read (its
            // enqueue was this job): read again.
            tx.rollback().await?;
            continue;
        }
        if let Some(p) = &products {
            catalog::set_collection_products(&mut tx, id, p).await?;
            catalog::forget_deleted_products(&mut tx, id).await?;
        }
        // Always: `collections/delete` and `products/delete` already changed
        // the rows in their webhook's transaction.
        let (_, entered) = audience::collection_changed(&mut tx, id, now).await?;
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        if entered > 0 {
            tracing::info!(
                collection = id,
                entered,
                "collection sync moved contacts into segments"
            );
        }
        return Ok(());
    }
    Err(JobError::Retry(anyhow::anyhow!(
        "collection {id} kept changing while it was read"
    )))
}

/// Daily: enqueues [`SyncCollection`] for every collection of every active
/// tenant (known, or mentioned by a segment).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconcileCollections {}

impl JobKind for ReconcileCollections {
    const KIND: &'static str = "shopify.collection_reconcile";
    const LANE: Lane = Lane::Monitor;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_secs(60));
}

pub const RECONCILE_EVERY: Duration = Duration::from_secs(24 * 3600);

pub async fn run_reconcile(ctx: JobContext, _job: ReconcileCollections) -> Result<(), JobError> {
    let db = ctx.app.db.clone();
    let mut enqueued = 0usize;
    for t in tenants::list(&db).await? {
        if t.status != tenants::TenantStatus::Active {
            continue;
        }
        let mut tx = db.tenant_tx(t.id).await?;
        let mut ids = catalog::live_collection_ids(&mut tx).await?;
        for s in segments::load(&mut tx, None, false).await? {
            ids.extend(s.rules.referenced_collections());
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            tx.rollback().await?;
            continue;
        }
        for id in &ids {
            enqueue_sync(&mut tx, *id, ctx.now()).await?;
        }
        tx.commit().await?;
        enqueued += ids.len();
    }
    if enqueued > 0 {
        tracing::info!(collections = enqueued, "collection syncs enqueued");
    }
    Ok(())
}

/// The scheduler's entry for [`ReconcileCollections`].
pub fn periodic_job(at: DateTime<Utc>) -> galantis_store::jobs::NewJob {
    crate::jobs::new_job(&ReconcileCollections::default(), at).expect("empty payload serialises")
}

/// Collection syncs and their daily reconciliation.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<SyncCollection, _, _>(run_sync);
    r.register::<ReconcileCollections, _, _>(run_reconcile);
    r.periodic(|_| {
        Some(crate::jobs::scheduler::Periodic {
            name: ReconcileCollections::KIND,
            every: RECONCILE_EVERY,
            make: periodic_job,
        })
    });
}
