//! Domain events, persisted per tenant so consumers (automations, campaigns,
//! back in stock) can catch up after a restart. Written only through
//! [`crate::events::record`], which also enqueues their subscribers.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// A recorded event as stored (its payload decodes into
/// [`galantis_core::DomainEvent`] with `from_stored`).
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub id: Uuid,
    pub kind: String,
    pub subject_id: Option<String>,
    pub payload: Value,
    pub webhook_event_id: Option<Uuid>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) async fn insert(
    tx: &mut TenantTx,
    kind: &str,
    subject_id: Option<&str>,
    payload: &Value,
    webhook_event_id: Option<Uuid>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO domain_events (id, kind, subject_id, payload, webhook_event_id, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(kind)
        .bind(subject_id)
        .bind(Json(payload))
        .bind(webhook_event_id)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(id)
}

type Row = (Uuid, String, Option<String>, Json<Value>, Option<Uuid>, i64);

pub async fn list(
    tx: &mut TenantTx,
    kind: Option<&str>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, kind, subject_id, payload, webhook_event_id, occurred_at FROM domain_events
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(kind)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            id: r.0,
            kind: r.1,
            subject_id: r.2,
            payload: r.3.0,
            webhook_event_id: r.4,
            occurred_at: from_ms(r.5),
        })
        .collect())
}

/// Replaces payloads mentioning any of `needles` (personal data being erased).
pub async fn scrub_mentions(tx: &mut TenantTx, needles: &[String]) -> Result<u64, StoreError> {
    super::redaction::scrub_mentions(tx, super::redaction::PayloadTable::DomainEvents, needles)
        .await
}

/// Shop erasure: every stored payload replaced by a redaction marker.
pub async fn scrub_all(tx: &mut TenantTx) -> Result<u64, StoreError> {
    super::redaction::scrub_all(tx, super::redaction::PayloadTable::DomainEvents).await
}
