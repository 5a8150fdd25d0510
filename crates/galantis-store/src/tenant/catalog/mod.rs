//! Products, variants, inventory levels and collections synced from Shopify.
//! Restock detection lives here because it needs the stored quantity: a
//! variant whose stored inventory was 0 (or below) and becomes positive.
//! Collections and their contents are in [`collections`].

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

mod collections;

pub use collections::{
    CollectionFields, CollectionGeneration, CollectionView, collection_generation,
    collection_products, delete_collection, forget_deleted_products, list_collections,
    live_collection_ids, remove_product_from_collections, set_collection_products,
    upsert_collection,
};

#[derive(Debug, Clone, Default)]
pub struct VariantFields {
    pub shopify_variant_id: i64,
    pub title: Option<String>,
    pub sku: Option<String>,
    pub price: Option<String>,
    pub compare_at_price: Option<String>,
    pub inventory_quantity: Option<i64>,
    pub inventory_item_id: Option<i64>,
    pub option1: Option<String>,
    pub option2: Option<String>,
    pub option3: Option<String>,
    pub image_id: Option<i64>,
    pub position: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProductFields {
    pub shopify_product_id: i64,
    pub title: Option<String>,
    pub body_html: Option<String>,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
    pub handle: Option<String>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub images: Value,
    pub options: Value,
    pub payload: Value,
    pub version: i64,
    pub variants: Vec<VariantFields>,
}

/// A variant that went from no stock to stock.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Restock {
    pub variant_id: Uuid,
    pub shopify_variant_id: i64,
    pub shopify_product_id: i64,
    pub previous_quantity: i64,
    pub quantity: i64,
}

#[derive(Debug, Default)]
pub struct ProductOutcome {
    pub product_id: Option<Uuid>,
    pub created: bool,
    pub skipped: bool,
    /// The payload is the one already stored (a redelivery): nothing written.
    pub unchanged: bool,
    pub restocks: Vec<Restock>,
}

async fn product_row(
    tx: &mut TenantTx,
    shopify_id: i64,
) -> Result<Option<(Uuid, Option<i64>, Option<i64>)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shopify_updated_at, deleted_at FROM products WHERE shopify_product_id = $1",
        )
        .bind(shopify_id)
        .fetch_optional(&mut *c)
        .await?
    }))
}

/// Creates or updates a product and its variants (variants missing from the
/// payload are marked deleted). Stale or post-delete payloads are skipped.
pub async fn upsert_product(
    tx: &mut TenantTx,
    p: &ProductFields,
    now_ms: i64,
) -> Result<ProductOutcome, StoreError> {
    let existing = product_row(tx, p.shopify_product_id).await?;
    if let Some((_, version, deleted)) = existing
        && (deleted.is_some() || version.is_some_and(|v| v > p.version))
    {
        return Ok(ProductOutcome {
            skipped: true,
            ..Default::default()
        });
    }
    if let Some((id, _, _)) = existing {
        // Shopify redelivers (and sends the same product again on unrelated
        // shop changes): an identical payload is no new version of it.
        let stored: Json<Value> = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar("SELECT payload FROM products WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *c)
                .await?
        });
        if stored.0 == p.payload {
            return Ok(ProductOutcome {
                product_id: Some(id),
                unchanged: true,
                ..Default::default()
            });
        }
    }
    let id = existing.map(|e| e.0).unwrap_or_else(Uuid::now_v7);
    if existing.is_none() {
        on_tx!(tx.tx(), |c| {
            sqlx::query("INSERT INTO products (id, shopify_product_id, payload, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(id).bind(p.shopify_product_id).bind(Json(&p.payload)).bind(now_ms)
                .execute(&mut *c).await?.rows_affected()
        });
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE products SET title = $1, body_html = $2, vendor = $3, product_type = $4, handle = $5, status = $6,
                    tags = $7, images = $8, options = $9, payload = $10, shopify_updated_at = $11, updated_at = $12,
                    meta_sync_status = 'PENDING'
             WHERE id = $13",
        )
        .bind(&p.title).bind(&p.body_html).bind(&p.vendor).bind(&p.product_type).bind(&p.handle).bind(&p.status)
        .bind(Json(&p.tags)).bind(Json(&p.images)).bind(Json(&p.options)).bind(Json(&p.payload))
        .bind(p.version).bind(now_ms).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    let mut restocks = Vec::new();
    let mut kept = Vec::new();
    for v in &p.variants {
        kept.push(v.shopify_variant_id);
        let stored: Option<(Uuid, Option<i64>)> = on_tx!(tx.tx(), |c| {
            sqlx::query_as(
                "SELECT id, inventory_quantity FROM variants WHERE shopify_variant_id = $1",
            )
            .bind(v.shopify_variant_id)
            .fetch_optional(&mut *c)
            .await?
        });
        let vid = stored.map(|s| s.0).unwrap_or_else(Uuid::now_v7);
        if stored.is_none() {
            on_tx!(tx.tx(), |c| {
                sqlx::query("INSERT INTO variants (id, shopify_variant_id, product_id, updated_at) VALUES ($1, $2, $3, $4)")
                    .bind(vid).bind(v.shopify_variant_id).bind(id).bind(now_ms)
                    .execute(&mut *c).await?.rows_affected()
            });
        }
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "UPDATE variants SET product_id = $1, title = $2, sku = $3, price = $4, compare_at_price = $5,
                        inventory_quantity = COALESCE($6, inventory_quantity), inventory_item_id = COALESCE($7, inventory_item_id),
                        option1 = $8, option2 = $9, option3 = $10, image_id = $11, position = $12, deleted_at = NULL, updated_at = $13
                 WHERE id = $14",
            )
            .bind(id).bind(&v.title).bind(&v.sku).bind(&v.price).bind(&v.compare_at_price)
            .bind(v.inventory_quantity).bind(v.inventory_item_id).bind(&v.option1).bind(&v.option2).bind(&v.option3)
            .bind(v.image_id).bind(v.position).bind(now_ms).bind(vid)
            .execute(&mut *c).await?.rows_affected()
        });
        if let (Some((_, Some(old))), Some(new)) = (stored, v.inventory_quantity)
            && old <= 0
            && new > 0
        {
            restocks.push(Restock {
                variant_id: vid,
                shopify_variant_id: v.shopify_variant_id,
                shopify_product_id: p.shopify_product_id,
                previous_quantity: old,
                quantity: new,
            });
        }
    }
    let current: Vec<(Uuid, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, shopify_variant_id FROM variants WHERE product_id = $1 AND deleted_at IS NULL")
            .bind(id).fetch_all(&mut *c).await?
    });
    for (vid, sid) in current {
        if !kept.contains(&sid) {
            on_tx!(tx.tx(), |c| {
                sqlx::query("UPDATE variants SET deleted_at = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(vid)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
        }
    }
    Ok(ProductOutcome {
        product_id: Some(id),
        created: existing.is_none(),
        skipped: false,
        unchanged: false,
        restocks,
    })
}

/// Whether the product is stored as deleted (a tombstone counts).
pub async fn product_deleted(tx: &mut TenantTx, shopify_id: i64) -> Result<bool, StoreError> {
    Ok(product_row(tx, shopify_id)
        .await?
        .is_some_and(|(_, _, deleted)| deleted.is_some()))
}

/// Marks a product (and its variants) deleted; a later update will not
/// bring it back. A delete before the create leaves a tombstone.
pub async fn delete_product(
    tx: &mut TenantTx,
    shopify_id: i64,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    match product_row(tx, shopify_id).await? {
        Some((id, _, _)) => {
            on_tx!(tx.tx(), |c| {
                sqlx::query("UPDATE products SET deleted_at = COALESCE(deleted_at, $1), updated_at = $1 WHERE id = $2")
                    .bind(now_ms).bind(id).execute(&mut *c).await?;
                sqlx::query("UPDATE variants SET deleted_at = COALESCE(deleted_at, $1) WHERE product_id = $2")
                    .bind(now_ms).bind(id).execute(&mut *c).await?.rows_affected()
            });
            Ok(Some(id))
        }
        None => {
            on_tx!(tx.tx(), |c| {
                sqlx::query("INSERT INTO products (id, shopify_product_id, payload, deleted_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, $4)")
                    .bind(Uuid::now_v7()).bind(shopify_id).bind(Json(serde_json::json!({}))).bind(now_ms)
                    .execute(&mut *c).await?.rows_affected()
            });
            Ok(None)
        }
    }
}

/// Applies one location's inventory level; the variant's quantity becomes
/// the sum of its known locations. Returns the restock, if this was one.
pub async fn apply_inventory_level(
    tx: &mut TenantTx,
    inventory_item_id: i64,
    location_id: i64,
    available: i64,
    version: i64,
) -> Result<Option<Restock>, StoreError> {
    let stored: Option<Option<i64>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT shopify_updated_at FROM inventory_levels WHERE inventory_item_id = $1 AND location_id = $2")
            .bind(inventory_item_id).bind(location_id).fetch_optional(&mut *c).await?
    });
    if stored.flatten().is_some_and(|s| s > version) {
        return Ok(None);
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO inventory_levels (inventory_item_id, location_id, available, shopify_updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (inventory_item_id, location_id) DO UPDATE SET available = excluded.available,
                 shopify_updated_at = excluded.shopify_updated_at",
        )
        .bind(inventory_item_id).bind(location_id).bind(available).bind(version)
        .execute(&mut *c).await?.rows_affected()
    });
    let variant: Option<(Uuid, i64, Option<i64>, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT v.id, v.shopify_variant_id, v.inventory_quantity, p.shopify_product_id
             FROM variants v JOIN products p ON p.id = v.product_id
             WHERE v.inventory_item_id = $1 AND v.deleted_at IS NULL",
        )
        .bind(inventory_item_id)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some((vid, shopify_variant_id, old, shopify_product_id)) = variant else {
        return Ok(None);
    };
    let total: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM inventory_levels WHERE inventory_item_id = $1")
            .bind(inventory_item_id).fetch_one(&mut *c).await?
    });
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE variants SET inventory_quantity = $1 WHERE id = $2")
            .bind(total)
            .bind(vid)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(match old {
        Some(old) if old <= 0 && total > 0 => Some(Restock {
            variant_id: vid,
            shopify_variant_id,
            shopify_product_id,
            previous_quantity: old,
            quantity: total,
        }),
        _ => None,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantView {
    pub id: Uuid,
    pub shopify_variant_id: i64,
    pub title: Option<String>,
    pub sku: Option<String>,
    pub price: Option<String>,
    pub compare_at_price: Option<String>,
    pub inventory_quantity: Option<i64>,
    pub option1: Option<String>,
    pub option2: Option<String>,
    pub option3: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductView {
    pub id: Uuid,
    pub shopify_product_id: i64,
    pub title: Option<String>,
    pub vendor: Option<String>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub images: Value,
    pub options: Value,
    pub meta_sync_status: String,
    pub variants: Vec<VariantView>,
}

type ProductRow = (
    Uuid,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Json<Vec<String>>,
    Json<Value>,
    Json<Value>,
    String,
);
type VariantRow = (
    Uuid,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub async fn list_products(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ProductView>, StoreError> {
    let rows: Vec<ProductRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shopify_product_id, title, vendor, status, tags, images, options, meta_sync_status FROM products
             WHERE deleted_at IS NULL AND ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before).bind(i64::from(limit)).fetch_all(&mut *c).await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let variants: Vec<VariantRow> = on_tx!(tx.tx(), |c| {
            sqlx::query_as(
                "SELECT id, shopify_variant_id, title, sku, price, compare_at_price, inventory_quantity, option1, option2, option3
                 FROM variants WHERE product_id = $1 AND deleted_at IS NULL ORDER BY position, shopify_variant_id",
            )
            .bind(r.0).fetch_all(&mut *c).await?
        });
        out.push(ProductView {
            id: r.0,
            shopify_product_id: r.1,
            title: r.2,
            vendor: r.3,
            status: r.4,
            tags: r.5.0,
            images: r.6.0,
            options: r.7.0,
            meta_sync_status: r.8,
            variants: variants
                .into_iter()
                .map(|v| VariantView {
                    id: v.0,
                    shopify_variant_id: v.1,
                    title: v.2,
                    sku: v.3,
                    price: v.4,
                    compare_at_price: v.5,
                    inventory_quantity: v.6,
                    option1: v.7,
                    option2: v.8,
                    option3: v.9,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// A variant's current stored quantity (None: unknown variant or quantity).
pub async fn variant_quantity(
    tx: &mut TenantTx,
    shopify_variant_id: i64,
) -> Result<Option<i64>, StoreError> {
    let q: Option<Option<i64>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT inventory_quantity FROM variants WHERE shopify_variant_id = $1")
            .bind(shopify_variant_id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(q.flatten())
}
