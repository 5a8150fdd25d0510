//! Collections synced from Shopify and their contents (the products of
//! each, for "purchased from collection" segment rules).

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

#[derive(Debug, Clone, Default)]
pub struct CollectionFields {
    pub shopify_collection_id: i64,
    pub title: Option<String>,
    pub handle: Option<String>,
    pub products_count: Option<i64>,
    pub payload: Value,
    pub version: i64,
}

/// Upserts a collection; `false` when skipped (stale or deleted).
pub async fn upsert_collection(
    tx: &mut TenantTx,
    f: &CollectionFields,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let existing: Option<(Uuid, Option<i64>, Option<i64>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, shopify_updated_at, deleted_at FROM collections WHERE shopify_collection_id = $1")
            .bind(f.shopify_collection_id).fetch_optional(&mut *c).await?
    });
    if let Some((_, v, d)) = existing
        && (d.is_some() || v.is_some_and(|v| v > f.version))
    {
        return Ok(false);
    }
    let id = existing.map(|e| e.0).unwrap_or_else(Uuid::now_v7);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO collections (id, shopify_collection_id, title, handle, products_count, payload, shopify_updated_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (shopify_collection_id) DO UPDATE SET title = excluded.title, handle = excluded.handle,
                 products_count = excluded.products_count, payload = excluded.payload,
                 shopify_updated_at = excluded.shopify_updated_at, updated_at = excluded.updated_at",
        )
        .bind(id).bind(f.shopify_collection_id).bind(&f.title).bind(&f.handle).bind(f.products_count)
        .bind(Json(&f.payload)).bind(f.version).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(true)
}

/// What identifies a stored collection's state: (Shopify `updated_at`,
/// local `updated_at`, `deleted_at`). A change between two reads means a
/// webhook touched the collection meanwhile. `None`: never stored.
pub type CollectionGeneration = (Option<i64>, i64, Option<i64>);

pub async fn collection_generation(
    tx: &mut TenantTx,
    shopify_id: i64,
) -> Result<Option<CollectionGeneration>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT shopify_updated_at, updated_at, deleted_at FROM collections WHERE shopify_collection_id = $1",
        )
        .bind(shopify_id)
        .fetch_optional(&mut *c)
        .await?
    }))
}

/// The Shopify ids of the collections not deleted.
pub async fn live_collection_ids(tx: &mut TenantTx) -> Result<Vec<i64>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT shopify_collection_id FROM collections WHERE deleted_at IS NULL ORDER BY shopify_collection_id",
        )
        .fetch_all(&mut *c)
        .await?
    }))
}

pub async fn delete_collection(
    tx: &mut TenantTx,
    shopify_id: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO collections (id, shopify_collection_id, payload, deleted_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4, $4)
             ON CONFLICT (shopify_collection_id) DO UPDATE SET deleted_at = COALESCE(collections.deleted_at, excluded.deleted_at)",
        )
        .bind(Uuid::now_v7()).bind(shopify_id).bind(Json(serde_json::json!({}))).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectionView {
    pub id: Uuid,
    pub shopify_collection_id: i64,
    pub title: Option<String>,
    pub handle: Option<String>,
    pub products_count: Option<i64>,
}

pub async fn list_collections(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<CollectionView>, StoreError> {
    let rows: Vec<(Uuid, i64, Option<String>, Option<String>, Option<i64>)> =
        on_tx!(tx.tx(), |c| {
            sqlx::query_as(
                "SELECT id, shopify_collection_id, title, handle, products_count FROM collections
             WHERE deleted_at IS NULL AND ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
        });
    Ok(rows
        .into_iter()
        .map(|r| CollectionView {
            id: r.0,
            shopify_collection_id: r.1,
            title: r.2,
            handle: r.3,
            products_count: r.4,
        })
        .collect())
}

/// Removes a deleted product from every collection; returns the
/// collections it was in (their segments need re-evaluation). The table
/// mirrors Shopify's current collection contents, and Shopify drops a
/// deleted product from its collections.
pub async fn remove_product_from_collections(
    tx: &mut TenantTx,
    product: i64,
) -> Result<Vec<i64>, StoreError> {
    let collections: Vec<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "DELETE FROM collection_products WHERE shopify_product_id = $1
             RETURNING shopify_collection_id",
        )
        .bind(product)
        .fetch_all(&mut *c)
        .await?
    });
    let mut collections = collections;
    collections.sort_unstable();
    collections.dedup();
    Ok(collections)
}

/// Drops from a collection the products known to be deleted (a read from
/// Shopify that raced with a `products/delete` webhook may still list one).
pub async fn forget_deleted_products(
    tx: &mut TenantTx,
    collection: i64,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "DELETE FROM collection_products WHERE shopify_collection_id = $1
               AND shopify_product_id IN (SELECT shopify_product_id FROM products WHERE deleted_at IS NOT NULL)",
        )
        .bind(collection)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}

/// The product ids of a collection, ascending.
pub async fn collection_products(
    tx: &mut TenantTx,
    collection: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT shopify_product_id FROM collection_products WHERE shopify_collection_id = $1
             ORDER BY shopify_product_id",
        )
        .bind(collection)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// Replaces the products of a collection (for "purchased collection").
pub async fn set_collection_products(
    tx: &mut TenantTx,
    collection: i64,
    products: &[i64],
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM collection_products WHERE shopify_collection_id = $1")
            .bind(collection)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    for p in products {
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "INSERT INTO collection_products (shopify_collection_id, shopify_product_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(collection)
            .bind(*p)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    Ok(())
}
