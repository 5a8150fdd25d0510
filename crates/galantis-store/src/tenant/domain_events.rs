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

/// A recorded event with its per-tenant sequence number (realtime replay).
#[derive(Debug, Clone)]
pub struct SequencedEvent {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub payload: Value,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// An event recorded in a transaction, written at its commit.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    pub subject_id: Option<String>,
    pub payload: Value,
    pub webhook_event_id: Option<Uuid>,
    pub occurred_at_ms: i64,
}

/// Rows per multi-row `INSERT` on SQLite (7 binds each).
const SQLITE_CHUNK: usize = 100;

/// Writes the transaction's events (in order) numbered with the tenant's
/// next sequence numbers; returns the last. Called just before commit:
/// the counter row stays locked until then (PostgreSQL; SQLite has one
/// writer), so a number never becomes visible before every smaller one — a
/// reader that saw N may later ask for "after N" and miss nothing — and,
/// being the last lock the transaction takes, it cannot deadlock with the
/// others. Each event is one insert, already numbered: no row is written
/// twice (ADR 0039).
pub(crate) async fn insert_numbered(
    tx: &mut TenantTx,
    events: &[NewEvent],
) -> Result<i64, StoreError> {
    let n = events.len() as i64;
    // PostgreSQL: the counter and every event in one statement, so the
    // counter's row (which every tenant transaction with events takes) is
    // held for one round trip and the commit.
    if let crate::db::Tx::Postgres(c) = tx.tx() {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        let subjects: Vec<Option<&str>> = events.iter().map(|e| e.subject_id.as_deref()).collect();
        let payloads: Vec<Json<&Value>> = events.iter().map(|e| Json(&e.payload)).collect();
        let causes: Vec<Option<Uuid>> = events.iter().map(|e| e.webhook_event_id).collect();
        let times: Vec<i64> = events.iter().map(|e| e.occurred_at_ms).collect();
        let last: Option<i64> = sqlx::query_scalar(
            "WITH counter AS (
                 UPDATE domain_event_seq SET last = last + $1 WHERE id = 1 RETURNING last
             ), written AS (
                 INSERT INTO domain_events (id, kind, subject_id, payload, webhook_event_id, occurred_at, seq)
                 SELECT v.id, v.kind, v.subject_id, v.payload, v.cause, v.at, (SELECT last FROM counter) - $1 + v.ord
                 FROM unnest($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::uuid[], $7::int8[])
                      WITH ORDINALITY AS v(id, kind, subject_id, payload, cause, at, ord)
                 RETURNING id
             )
             SELECT last FROM counter WHERE (SELECT COUNT(*) FROM written) >= 0",
        )
        .bind(n)
        .bind(ids)
        .bind(kinds)
        .bind(subjects)
        .bind(payloads)
        .bind(causes)
        .bind(times)
        .fetch_optional(&mut **c)
        .await?;
        return last.ok_or_else(|| StoreError::Config("domain_event_seq has no row".into()));
    }
    let last: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "UPDATE domain_event_seq SET last = last + $1 WHERE id = 1 RETURNING last",
        )
        .bind(n)
        .fetch_one(&mut *c)
        .await?
    });
    let first = last - n + 1;
    for (i, chunk) in events.chunks(SQLITE_CHUNK).enumerate() {
        let base = first + (i * SQLITE_CHUNK) as i64;
        on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO domain_events (id, kind, subject_id, payload, webhook_event_id, occurred_at, seq) ",
            );
            qb.push_values(chunk.iter().enumerate(), |mut row, (j, e)| {
                row.push_bind(e.id)
                    .push_bind(e.kind)
                    .push_bind(e.subject_id.as_deref())
                    .push_bind(Json(&e.payload))
                    .push_bind(e.webhook_event_id)
                    .push_bind(e.occurred_at_ms)
                    .push_bind(base + j as i64);
            });
            qb.build().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(last)
}

/// Events numbered after `after`, in order, at most `limit`.
pub async fn after_seq(
    tx: &mut TenantTx,
    after: i64,
    limit: u32,
) -> Result<Vec<SequencedEvent>, StoreError> {
    let rows: Vec<(i64, Uuid, String, Json<Value>, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT seq, id, kind, payload, occurred_at FROM domain_events
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| SequencedEvent {
            seq: r.0,
            id: r.1,
            kind: r.2,
            payload: r.3.0,
            occurred_at: from_ms(r.4),
        })
        .collect())
}

/// The last sequence number given out (0 before the first event).
pub async fn last_seq(tx: &mut TenantTx) -> Result<i64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT last FROM domain_event_seq WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?
            .unwrap_or(0)
    }))
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

/// Replaces payloads mentioning any of `needles` (personal data being
/// erased), also those of events this transaction recorded (written at its
/// commit).
pub async fn scrub_mentions(tx: &mut TenantTx, needles: &[String]) -> Result<u64, StoreError> {
    use super::redaction::{PayloadTable, scrub_pending};
    let pending = scrub_pending(tx.pending.events.payloads_mut(), Some(needles));
    Ok(pending + super::redaction::scrub_mentions(tx, PayloadTable::DomainEvents, needles).await?)
}

/// Every payload becomes the marker (shop erasure), also those of events
/// this transaction recorded.
pub async fn scrub_all(tx: &mut TenantTx) -> Result<u64, StoreError> {
    use super::redaction::{PayloadTable, scrub_pending};
    scrub_pending(tx.pending.events.payloads_mut(), None);
    super::redaction::scrub_all(tx, PayloadTable::DomainEvents).await
}
