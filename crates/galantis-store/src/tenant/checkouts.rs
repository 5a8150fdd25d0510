//! Checkouts, stored for abandoned-checkout automations.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

#[derive(Debug, Clone, Default)]
pub struct CheckoutFields {
    pub shopify_checkout_id: i64,
    pub token: Option<String>,
    pub contact_id: Option<Uuid>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub total_price: Option<String>,
    pub total_price_cents: i64,
    pub currency: Option<String>,
    pub abandoned_checkout_url: Option<String>,
    pub line_items: Value,
    pub completed_at: Option<i64>,
    pub payload: Value,
    pub version: i64,
}

/// Upserts; `None` when skipped (stale or deleted), else whether it was new.
pub async fn upsert(
    tx: &mut TenantTx,
    f: &CheckoutFields,
    now_ms: i64,
) -> Result<Option<(Uuid, bool)>, StoreError> {
    let existing: Option<(Uuid, Option<i64>, Option<i64>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, shopify_updated_at, deleted_at FROM checkouts WHERE shopify_checkout_id = $1")
            .bind(f.shopify_checkout_id).fetch_optional(&mut *c).await?
    });
    if let Some((_, v, d)) = existing
        && (d.is_some() || v.is_some_and(|v| v > f.version))
    {
        return Ok(None);
    }
    let id = existing.map(|e| e.0).unwrap_or_else(Uuid::now_v7);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO checkouts (id, shopify_checkout_id, token, contact_id, email, phone, total_price, total_price_cents,
                                    currency, abandoned_checkout_url, line_items, completed_at, payload, shopify_updated_at,
                                    created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
             ON CONFLICT (shopify_checkout_id) DO UPDATE SET token = excluded.token, contact_id = excluded.contact_id,
                 email = excluded.email, phone = excluded.phone, total_price = excluded.total_price,
                 total_price_cents = excluded.total_price_cents, currency = excluded.currency,
                 abandoned_checkout_url = excluded.abandoned_checkout_url, line_items = excluded.line_items,
                 completed_at = COALESCE(checkouts.completed_at, excluded.completed_at), payload = excluded.payload,
                 shopify_updated_at = excluded.shopify_updated_at, updated_at = excluded.updated_at",
        )
        .bind(id).bind(f.shopify_checkout_id).bind(&f.token).bind(f.contact_id).bind(&f.email).bind(&f.phone)
        .bind(&f.total_price).bind(f.total_price_cents).bind(&f.currency).bind(&f.abandoned_checkout_url)
        .bind(Json(&f.line_items)).bind(f.completed_at).bind(Json(&f.payload)).bind(f.version).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(Some((id, existing.is_none())))
}

pub async fn delete(tx: &mut TenantTx, shopify_id: i64, now_ms: i64) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO checkouts (id, shopify_checkout_id, payload, deleted_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, $4)
             ON CONFLICT (shopify_checkout_id) DO UPDATE SET deleted_at = COALESCE(checkouts.deleted_at, excluded.deleted_at)",
        )
        .bind(Uuid::now_v7()).bind(shopify_id).bind(Json(serde_json::json!({}))).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}

/// Marks checkouts with `token` completed (an order arrived for it).
pub async fn complete_by_token(tx: &mut TenantTx, token: &str, at: i64) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE checkouts SET completed_at = COALESCE(completed_at, $1) WHERE token = $2",
        )
        .bind(at)
        .bind(token)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}
