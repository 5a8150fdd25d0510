//! Checkouts, stored for abandoned-checkout automations.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

#[derive(Debug, Clone, Default)]
pub struct CheckoutFields {
    /// Shopify's numeric id; current payloads may carry only the token.
    pub shopify_checkout_id: Option<i64>,
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

/// How a webhook names a checkout: by id, by token, or both.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutKey<'a> {
    pub shopify_checkout_id: Option<i64>,
    pub token: Option<&'a str>,
}

type Existing = (Uuid, Option<i64>, Option<i64>, Option<i64>);

/// The stored checkout a key names: by id first, else by token (a checkout
/// first seen without an id is the same checkout once one arrives).
async fn find(tx: &mut TenantTx, key: CheckoutKey<'_>) -> Result<Option<Existing>, StoreError> {
    if let Some(sid) = key.shopify_checkout_id {
        let row: Option<Existing> = on_tx!(tx.tx(), |c| {
            sqlx::query_as("SELECT id, shopify_checkout_id, shopify_updated_at, deleted_at FROM checkouts WHERE shopify_checkout_id = $1")
                .bind(sid).fetch_optional(&mut *c).await?
        });
        if row.is_some() {
            return Ok(row);
        }
    }
    let Some(token) = key.token else {
        return Ok(None);
    };
    // A token row that already has another id is another checkout.
    let row: Option<Existing> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shopify_checkout_id, shopify_updated_at, deleted_at FROM checkouts
             WHERE token = $1 AND (shopify_checkout_id IS NULL OR $2 IS NULL OR shopify_checkout_id = $2)
             ORDER BY created_at LIMIT 1",
        )
        .bind(token).bind(key.shopify_checkout_id).fetch_optional(&mut *c).await?
    });
    Ok(row)
}

/// Upserts; `None` when skipped (stale, identical to the stored payload, or
/// deleted), else whether it was new.
/// The caller guarantees an id or a token.
pub async fn upsert(
    tx: &mut TenantTx,
    f: &CheckoutFields,
    now_ms: i64,
) -> Result<Option<(Uuid, bool)>, StoreError> {
    let key = CheckoutKey {
        shopify_checkout_id: f.shopify_checkout_id,
        token: f.token.as_deref(),
    };
    let existing = find(tx, key).await?;
    if let Some((_, _, v, d)) = existing
        && (d.is_some() || v.is_some_and(|v| v > f.version))
    {
        return Ok(None);
    }
    if let Some((id, ..)) = existing {
        // A redelivery (same body, new webhook id) is no new version.
        let stored: Json<Value> = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar("SELECT payload FROM checkouts WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *c)
                .await?
        });
        if stored.0 == f.payload {
            return Ok(None);
        }
    }
    let id = match existing {
        Some(e) => e.0,
        None => {
            let id = Uuid::now_v7();
            on_tx!(tx.tx(), |c| {
                sqlx::query("INSERT INTO checkouts (id, shopify_checkout_id, token, payload, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                    .bind(id).bind(f.shopify_checkout_id).bind(&f.token).bind(Json(&f.payload)).bind(now_ms)
                    .execute(&mut *c).await?.rows_affected()
            });
            id
        }
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE checkouts SET shopify_checkout_id = COALESCE($1, shopify_checkout_id), token = COALESCE($2, token),
                 contact_id = $3, email = $4, phone = $5, total_price = $6, total_price_cents = $7, currency = $8,
                 abandoned_checkout_url = $9, line_items = $10, completed_at = COALESCE(completed_at, $11), payload = $12,
                 shopify_updated_at = $13, updated_at = $14
             WHERE id = $15",
        )
        .bind(f.shopify_checkout_id).bind(&f.token).bind(f.contact_id).bind(&f.email).bind(&f.phone)
        .bind(&f.total_price).bind(f.total_price_cents).bind(&f.currency).bind(&f.abandoned_checkout_url)
        .bind(Json(&f.line_items)).bind(f.completed_at).bind(Json(&f.payload)).bind(f.version).bind(now_ms).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(Some((id, existing.is_none())))
}

/// Marks a checkout deleted; a delete before the create leaves a tombstone
/// so a late create does not bring it back. Returns the checkout's id.
pub async fn delete(
    tx: &mut TenantTx,
    key: CheckoutKey<'_>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    Ok(match find(tx, key).await? {
        Some((id, ..)) => {
            on_tx!(tx.tx(), |c| {
                sqlx::query("UPDATE checkouts SET deleted_at = COALESCE(deleted_at, $1), updated_at = $1 WHERE id = $2")
                    .bind(now_ms).bind(id).execute(&mut *c).await?.rows_affected()
            });
            id
        }
        None => {
            let id = Uuid::now_v7();
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "INSERT INTO checkouts (id, shopify_checkout_id, token, payload, deleted_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5, $5)",
                )
                .bind(id).bind(key.shopify_checkout_id).bind(key.token)
                .bind(Json(serde_json::json!({}))).bind(now_ms)
                .execute(&mut *c).await?.rows_affected()
            });
            id
        }
    })
}

/// A stored checkout, for tests and the API.
#[derive(Debug, Clone)]
pub struct StoredCheckout {
    pub id: Uuid,
    pub shopify_checkout_id: Option<i64>,
    pub token: Option<String>,
    pub contact_id: Option<Uuid>,
    pub phone: Option<String>,
    pub deleted: bool,
}

pub async fn by_token(tx: &mut TenantTx, token: &str) -> Result<Vec<StoredCheckout>, StoreError> {
    let rows: Vec<(
        Uuid,
        Option<i64>,
        Option<String>,
        Option<Uuid>,
        Option<String>,
        Option<i64>,
    )> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, shopify_checkout_id, token, contact_id, phone, deleted_at FROM checkouts WHERE token = $1 ORDER BY created_at")
            .bind(token).fetch_all(&mut *c).await?
    });
    Ok(rows
        .into_iter()
        .map(|r| StoredCheckout {
            id: r.0,
            shopify_checkout_id: r.1,
            token: r.2,
            contact_id: r.3,
            phone: r.4,
            deleted: r.5.is_some(),
        })
        .collect())
}

/// Marks checkouts with `token` completed (an order arrived for it);
/// returns how many were still open (0 for a later update of the order).
pub async fn complete_by_token(tx: &mut TenantTx, token: &str, at: i64) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE checkouts SET completed_at = $1, abandon_due_at = NULL WHERE token = $2 AND completed_at IS NULL",
        )
        .bind(at)
        .bind(token)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}

/// Arms (or moves) the checkout's abandonment timer: due at `due_ms`.
/// `false` (nothing armed) when the checkout is completed or deleted.
pub async fn arm_abandonment(tx: &mut TenantTx, id: Uuid, due_ms: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE checkouts SET abandon_due_at = $1
             WHERE id = $2 AND completed_at IS NULL AND deleted_at IS NULL",
        )
        .bind(due_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Disarms the abandonment timers of the checkouts `ids`.
pub async fn disarm_abandonment(tx: &mut TenantTx, ids: &[Uuid]) -> Result<(), StoreError> {
    for id in ids {
        on_tx!(tx.tx(), |c| {
            sqlx::query("UPDATE checkouts SET abandon_due_at = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}

/// What the abandonment timer reads when it runs.
#[derive(Debug, Clone)]
pub struct AbandonmentRow {
    pub id: Uuid,
    pub token: Option<String>,
    pub contact_id: Option<Uuid>,
    pub phone: Option<String>,
    pub total_price: Option<String>,
    pub currency: Option<String>,
    pub abandoned_checkout_url: Option<String>,
    pub line_items: Value,
    pub state: galantis_core::checkout::AbandonmentState,
}

type AbandonmentTuple = (
    Uuid,
    Option<String>,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Json<Value>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub async fn for_abandonment(
    tx: &mut TenantTx,
    id: Uuid,
) -> Result<Option<AbandonmentRow>, StoreError> {
    let row: Option<AbandonmentTuple> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, token, contact_id, phone, total_price, currency, abandoned_checkout_url, line_items,
                    completed_at, deleted_at, abandon_due_at, shopify_updated_at, abandoned_version
             FROM checkouts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(|r| AbandonmentRow {
        id: r.0,
        token: r.1,
        contact_id: r.2,
        state: galantis_core::checkout::AbandonmentState {
            deleted: r.9.is_some(),
            completed: r.8.is_some(),
            has_phone: r.3.is_some(),
            due_at: r.10,
            version: r.11,
            abandoned_version: r.12,
        },
        phone: r.3,
        total_price: r.4,
        currency: r.5,
        abandoned_checkout_url: r.6,
        line_items: r.7.0,
    }))
}

/// Records that `version` of the checkout was abandoned (and disarms its
/// timer). `false` when that version was already recorded: the caller must
/// then not record the event again.
pub async fn mark_abandoned(
    tx: &mut TenantTx,
    id: Uuid,
    version: i64,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE checkouts SET abandoned_version = $1, abandoned_at = $2, abandon_due_at = NULL
             WHERE id = $3 AND (abandoned_version IS NULL OR abandoned_version <> $1)",
        )
        .bind(version)
        .bind(at_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}
