//! GDPR requests: logged with their 30-day deadline and completion.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

pub const DEADLINE_MS: i64 = 30 * 24 * 3600 * 1000;

/// Logs a request. `request_key` identifies the request at Shopify (an id,
/// or a digest; never a raw identifier): a second request with the same kind and key is refused
/// with [`StoreError::Conflict`]; check [`find_by_key`] first.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    tx: &mut TenantTx,
    kind: &str,
    request_key: Option<&str>,
    shopify_customer_id: Option<i64>,
    webhook_event_id: Option<Uuid>,
    received_at: i64,
    completed_at: i64,
    export: Option<&Value>,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    let inserted = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO compliance_requests (id, kind, request_key, shopify_customer_id, webhook_event_id, received_at, deadline_at, completed_at, export)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (kind, request_key) WHERE request_key IS NOT NULL DO NOTHING",
        )
        .bind(id).bind(kind).bind(request_key).bind(shopify_customer_id).bind(webhook_event_id).bind(received_at)
        .bind(received_at + DEADLINE_MS).bind(completed_at).bind(export.map(Json))
        .execute(&mut *c).await?.rows_affected()
    });
    if inserted == 0 {
        return Err(StoreError::Conflict("compliance_request_already_recorded"));
    }
    Ok(id)
}

/// The request already logged with this kind and key, if any.
pub async fn find_by_key(
    tx: &mut TenantTx,
    kind: &str,
    request_key: &str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT id FROM compliance_requests WHERE kind = $1 AND request_key = $2",
        )
        .bind(kind)
        .bind(request_key)
        .fetch_optional(&mut *c)
        .await?
    }))
}

#[derive(Debug, Clone, Serialize)]
pub struct ComplianceRequest {
    pub id: Uuid,
    pub kind: String,
    pub shopify_customer_id: Option<i64>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub deadline_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub export: Option<Value>,
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<ComplianceRequest>, StoreError> {
    let rows: Vec<(
        Uuid,
        String,
        Option<i64>,
        i64,
        i64,
        Option<i64>,
        Option<Json<Value>>,
    )> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, kind, shopify_customer_id, received_at, deadline_at, completed_at, export
             FROM compliance_requests ORDER BY id DESC",
        )
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| ComplianceRequest {
            id: r.0,
            kind: r.1,
            shopify_customer_id: r.2,
            received_at: from_ms(r.3),
            deadline_at: from_ms(r.4),
            completed_at: r.5.map(from_ms),
            export: r.6.map(|j| j.0),
        })
        .collect())
}

/// Drops data exports (of one customer, or all with `None`): an export is
/// personal data too once its request is answered and erasure follows.
pub async fn clear_exports(
    tx: &mut TenantTx,
    shopify_customer_id: Option<i64>,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE compliance_requests SET export = NULL WHERE $1 IS NULL OR shopify_customer_id = $1")
            .bind(shopify_customer_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    }))
}
