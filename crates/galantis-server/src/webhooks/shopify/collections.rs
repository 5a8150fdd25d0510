//! `collections/*`: the collection itself here; its products are read by
//! the collection sync job, which also re-evaluates the segments that
//! mention it.

use galantis_store::TenantTx;
use galantis_store::tenant::catalog::{self, CollectionFields};
use serde_json::Value;

use super::super::parse::{int, string};
use super::{HandlerError, Outcome, id_of};
use crate::jobs::JobContext;
use crate::jobs::kinds::collections::enqueue_sync;

/// `collections/create` and `collections/update`.
pub(super) async fn upsert(
    ctx: &JobContext,
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let f = CollectionFields {
        shopify_collection_id: id_of(p, "id")?,
        title: string(p.get("title")),
        handle: string(p.get("handle")),
        products_count: int(p.get("products_count")),
        payload: p.clone(),
        version,
    };
    if catalog::upsert_collection(tx, &f, now).await? {
        // The webhook has no product list: a job reads it.
        enqueue_sync(tx, f.shopify_collection_id, ctx.now()).await?;
    } else {
        out.ignored = Some("stale or deleted collection".into());
    }
    Ok(())
}

/// `collections/delete`.
pub(super) async fn delete(
    ctx: &JobContext,
    tx: &mut TenantTx,
    p: &Value,
    now: i64,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    catalog::delete_collection(tx, id, now).await?;
    catalog::set_collection_products(tx, id, &[]).await?;
    // Re-evaluates the segments that mention it.
    enqueue_sync(tx, id, ctx.now()).await?;
    Ok(())
}
