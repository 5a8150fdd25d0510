//! Raw webhook events as received, with their processing status.

use galantis_core::TenantId;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// A webhook to store.
#[derive(Debug, Clone)]
pub struct NewWebhookEvent<'a> {
    pub source: &'static str,
    pub topic: &'a str,
    /// Redelivery key: Shopify's webhook id; for Meta a digest of the change.
    pub external_id: &'a str,
    /// Shop domain or phone number id / WABA id.
    pub origin: &'a str,
    /// The JSON as received (stored without being parsed into a tree and
    /// serialised again).
    pub payload: &'a RawValue,
    pub triggered_at: Option<i64>,
    pub received_at: i64,
    /// `received` (to process) or `ignored` (stored only).
    pub status: &'static str,
    pub failure_reason: Option<&'a str>,
}

/// Stores the event unless one with the same (source, external id) exists.
/// Returns the new id, or `None` for a duplicate.
pub async fn insert(
    tx: &mut TenantTx,
    e: &NewWebhookEvent<'_>,
) -> Result<Option<Uuid>, StoreError> {
    let id = Uuid::now_v7();
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO webhook_events (id, source, topic, external_id, origin, status, failure_reason, payload,
                                         triggered_at, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (source, external_id) DO NOTHING",
        )
        .bind(id)
        .bind(e.source)
        .bind(e.topic)
        .bind(e.external_id)
        .bind(e.origin)
        .bind(e.status)
        .bind(e.failure_reason)
        .bind(Json(e.payload))
        .bind(e.triggered_at)
        .bind(e.received_at)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok((n == 1).then_some(id))
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant: Option<TenantId>,
    pub source: String,
    pub topic: String,
    pub external_id: String,
    pub origin: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub attempts: i64,
    pub payload: Value,
    pub triggered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Row = (
    Uuid,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Json<Value>,
    Option<i64>,
    i64,
    Option<i64>,
);

macro_rules! columns {
    () => {
        "id, source, topic, external_id, origin, status, failure_reason, attempts, payload, triggered_at, received_at, processed_at"
    };
}

fn to_event(r: Row) -> WebhookEvent {
    WebhookEvent {
        id: r.0,
        tenant: None,
        source: r.1,
        topic: r.2,
        external_id: r.3,
        origin: r.4,
        status: r.5,
        failure_reason: r.6,
        attempts: r.7,
        payload: r.8.0,
        triggered_at: r.9.map(from_ms),
        received_at: from_ms(r.10),
        processed_at: r.11.map(from_ms),
    }
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<WebhookEvent>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM webhook_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_event))
}

/// Filters for listing.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub status: Option<String>,
    pub source: Option<String>,
    pub topic: Option<String>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list(tx: &mut TenantTx, f: &Filter) -> Result<Vec<WebhookEvent>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM webhook_events
              WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR source = $2) AND ($3 IS NULL OR topic = $3)
                AND ($4 IS NULL OR id < $4)
              ORDER BY id DESC LIMIT $5"
        ))
        .bind(f.status.as_deref())
        .bind(f.source.as_deref())
        .bind(f.topic.as_deref())
        .bind(f.before)
        .bind(i64::from(f.limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_event).collect())
}

/// Records the outcome of a processing attempt.
pub async fn set_status(
    tx: &mut TenantTx,
    id: Uuid,
    status: &str,
    failure_reason: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE webhook_events SET status = $1, failure_reason = $2, attempts = attempts + 1,
                    processed_at = CASE WHEN $1 IN ('processed', 'ignored') THEN $3 ELSE processed_at END
             WHERE id = $4",
        )
        .bind(status)
        .bind(failure_reason)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Replaces payloads mentioning any of `needles` (personal data being erased).
pub async fn scrub_mentions(tx: &mut TenantTx, needles: &[String]) -> Result<u64, StoreError> {
    super::redaction::scrub_mentions(tx, super::redaction::PayloadTable::WebhookEvents, needles)
        .await
}

/// Shop erasure: every stored payload replaced by a redaction marker.
pub async fn scrub_all(tx: &mut TenantTx) -> Result<u64, StoreError> {
    super::redaction::scrub_all(tx, super::redaction::PayloadTable::WebhookEvents).await
}

/// Stores many events in one statement. Returns, for each input, its new id
/// or `None` when it was a duplicate (also of an earlier row of the batch).
pub async fn insert_many(
    tx: &mut TenantTx,
    events: &[NewWebhookEvent<'_>],
) -> Result<Vec<Option<Uuid>>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let mut inserted: Vec<Uuid> = Vec::with_capacity(events.len());
    for chunk in crate::db::pow2_chunks(events.len()) {
        let (events, ids) = (&events[chunk.clone()], &ids[chunk]);
        let got: Vec<Uuid> = on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_events (id, source, topic, external_id, origin, status, failure_reason, payload,
                                             triggered_at, received_at) ",
            );
            qb.push_values(events.iter().zip(ids), |mut row, (e, id)| {
                row.push_bind(*id)
                    .push_bind(e.source)
                    .push_bind(e.topic)
                    .push_bind(e.external_id)
                    .push_bind(e.origin)
                    .push_bind(e.status)
                    .push_bind(e.failure_reason)
                    .push_bind(Json(e.payload))
                    .push_bind(e.triggered_at)
                    .push_bind(e.received_at);
            });
            qb.push(" ON CONFLICT (source, external_id) DO NOTHING RETURNING id");
            qb.build_query_scalar().fetch_all(&mut *c).await?
        });
        inserted.extend(got);
    }
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    Ok(ids
        .into_iter()
        .map(|id| inserted.contains(&id).then_some(id))
        .collect())
}

/// Stores many events and, for each one that is new, the job `job_of`
/// returns for it (by index and new id), atomically with the transaction.
/// Returns what [`insert_many`] returns.
///
/// On PostgreSQL this is one statement for any batch size: the events, their
/// jobs and the lanes' `NOTIFY` as `UNNEST`ed arrays in one `WITH` (a single
/// statement shape, so it stays prepared). On SQLite (no data-modifying
/// `WITH`) it is [`insert_many`] then [`crate::jobs::enqueue_many`].
pub async fn insert_many_with_jobs(
    tx: &mut TenantTx,
    events: &[NewWebhookEvent<'_>],
    mut job_of: impl FnMut(usize, Uuid) -> Option<crate::jobs::NewJob>,
) -> Result<Vec<Option<Uuid>>, StoreError> {
    use crate::db::Tx;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    if !matches!(tx.tx(), Tx::Postgres(_)) {
        let ids = insert_many(tx, events).await?;
        let jobs: Vec<_> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.and_then(|id| job_of(i, id)))
            .collect();
        crate::jobs::enqueue_many(tx, &jobs).await?;
        return Ok(ids);
    }
    let tenant = tx.tenant();
    let now = crate::jobs::ms(tx.now());
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let mut j_event = Vec::new();
    let mut j_id = Vec::new();
    let mut j_kind = Vec::new();
    let mut j_lane = Vec::new();
    let mut j_priority = Vec::new();
    let mut j_payload = Vec::new();
    let mut j_max = Vec::new();
    let mut j_timeout = Vec::new();
    let mut j_run_at = Vec::new();
    let mut j_unique = Vec::new();
    let mut j_while_active = Vec::new();
    let mut lanes: Vec<galantis_core::Lane> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(j) = job_of(i, *id) else { continue };
        j_event.push(*id);
        j_id.push(Uuid::now_v7());
        j_kind.push(j.kind);
        j_lane.push(j.lane.as_str());
        j_priority.push(i64::from(j.priority));
        j_payload.push(j.payload.to_string());
        j_max.push(i64::from(j.max_attempts));
        j_timeout.push(i64::try_from(j.timeout.as_millis()).unwrap_or(i64::MAX));
        j_run_at.push(crate::jobs::ms(j.run_at));
        j_unique.push(
            j.unique
                .as_ref()
                .map(|(k, _)| crate::jobs::namespaced(Some(tenant), k)),
        );
        j_while_active.push(matches!(
            j.unique,
            Some((_, galantis_core::UniqueScope::WhileActive))
        ));
        if !lanes.contains(&j.lane) {
            lanes.push(j.lane);
        }
    }
    let Tx::Postgres(c) = tx.tx() else {
        unreachable!("checked above")
    };
    let got: Vec<Option<Uuid>> = sqlx::query_scalar(
        "WITH ev AS (
            INSERT INTO webhook_events (id, source, topic, external_id, origin, status, failure_reason, payload,
                                        triggered_at, received_at)
            SELECT e.id, e.source, e.topic, e.external_id, e.origin, e.status, e.failure_reason, e.payload::jsonb,
                   e.triggered_at, e.received_at
            FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                        $8::text[], $9::int8[], $10::int8[])
                 AS e(id, source, topic, external_id, origin, status, failure_reason, payload, triggered_at, received_at)
            ON CONFLICT (source, external_id) DO NOTHING
            RETURNING id
         ), jb AS (
            INSERT INTO public.jobs (id, tenant_id, kind, lane, priority, state, payload, max_attempts, timeout_ms,
                                     run_at, unique_key, unique_while_active, created_at, updated_at)
            SELECT j.id, $11, j.kind, j.lane, j.priority, 'available', j.payload::jsonb, j.max_attempts, j.timeout_ms,
                   j.run_at, j.unique_key, j.while_active, $12, $12
            FROM UNNEST($13::uuid[], $14::uuid[], $15::text[], $16::text[], $17::int8[], $18::text[], $19::int8[],
                        $20::int8[], $21::int8[], $22::text[], $23::bool[])
                 AS j(event_id, id, kind, lane, priority, payload, max_attempts, timeout_ms, run_at, unique_key,
                      while_active)
            WHERE j.event_id IN (SELECT id FROM ev)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            RETURNING 1
         )
         SELECT id FROM ev",
    )
    .bind(&ids)
    .bind(events.iter().map(|e| e.source).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.topic).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.external_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.origin).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.status).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.failure_reason).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.payload.get()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.triggered_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
    .bind(tenant.as_uuid())
    .bind(now)
    .bind(&j_event)
    .bind(&j_id)
    .bind(&j_kind)
    .bind(&j_lane)
    .bind(&j_priority)
    .bind(&j_payload)
    .bind(&j_max)
    .bind(&j_timeout)
    .bind(&j_run_at)
    .bind(&j_unique)
    .bind(&j_while_active)
    .fetch_all(&mut **c)
    .await?;
    for l in lanes {
        tx.pending.lanes.insert(l);
    }
    let inserted: std::collections::HashSet<Uuid> = got.into_iter().flatten().collect();
    Ok(ids
        .into_iter()
        .map(|id| inserted.contains(&id).then_some(id))
        .collect())
}
