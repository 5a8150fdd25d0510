//! The send path's records, split by concern: here an outbound message's
//! send state and attempts; [`reservations`] the credits queued messages
//! hold; [`connection`] the WhatsApp connection and its numbers. Waking
//! held sends is the queue's `galantis_store::jobs::wake_jobs`.
//!
//! A send is recorded in steps so that a retried job can tell what happened:
//! `mark_sending` commits *before* the call to Meta, and `record_acceptance`
//! or `mark_rejected` commit the outcome (with the job's completion). A job that
//! finds `send_state = 'sending'` knows a call may have reached Meta and
//! reconciles instead of sending again.

use galantis_core::{MessageKind, MessageSource, MessageStatus};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::{StoreError, typed};
use crate::jobs::from_ms;
use crate::on_tx;
use crate::tenant::messaging;

pub mod connection;
pub mod reservations;

pub use connection::{
    Connection, NumberSettings, connection, halt, numbers, put_connection, replace_numbers,
};
pub use reservations::{balance_and_reserved, reserved_credits};

/// An outbound message as the send job needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub phone_number_id: String,
    pub idempotency_key: Option<String>,
    pub kind: MessageKind,
    pub body: Option<String>,
    pub content: Value,
    pub source: Option<MessageSource>,
    pub template_name: Option<String>,
    pub template_language: Option<String>,
    pub status: MessageStatus,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_reason: Option<String>,
    pub send_state: Option<String>,
    pub send_started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub send_attempts: i64,
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    pub billable: bool,
    pub is_sandbox: bool,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
    pub failed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const OUTBOUND_COLUMNS: &str = "id, contact_id, conversation_id, phone_number_id, idempotency_key, kind, body, content, source,
    template_name, template_language, status, wamid, error_code, error_reason, send_state, send_started_at, send_attempts,
    accepted_at, billable, is_sandbox, sent_at, delivered_at, read_at, failed_at, created_at, updated_at";

type OutboundRow = (
    (
        Uuid,
        Uuid,
        Option<Uuid>,
        String,
        Option<String>,
        String,
        Option<String>,
        Json<Value>,
        Option<String>,
    ),
    (
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    ),
    (
        Option<i64>,
        bool,
        bool,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        i64,
        i64,
    ),
);

fn to_outbound(r: OutboundRow) -> Result<Outbound, StoreError> {
    let (a, b, c) = r;
    Ok(Outbound {
        id: a.0,
        contact_id: a.1,
        conversation_id: a.2,
        phone_number_id: a.3,
        idempotency_key: a.4,
        kind: typed(a.5)?,
        body: a.6,
        content: a.7.0,
        source: a.8.map(typed).transpose()?,
        template_name: b.0,
        template_language: b.1,
        status: typed(b.2)?,
        wamid: b.3,
        error_code: b.4,
        error_reason: b.5,
        send_state: b.6,
        send_started_at: b.7.map(from_ms),
        send_attempts: b.8,
        accepted_at: c.0.map(from_ms),
        billable: c.1,
        is_sandbox: c.2,
        sent_at: c.3.map(from_ms),
        delivered_at: c.4.map(from_ms),
        read_at: c.5.map(from_ms),
        failed_at: c.6.map(from_ms),
        created_at: from_ms(c.7),
        updated_at: from_ms(c.8),
    })
}

macro_rules! decode_outbound {
    ($row:expr) => {{
        use sqlx::Row;
        let r = $row;
        (
            (
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
            ),
            (
                r.try_get(9)?,
                r.try_get(10)?,
                r.try_get(11)?,
                r.try_get(12)?,
                r.try_get(13)?,
                r.try_get(14)?,
                r.try_get(15)?,
                r.try_get(16)?,
                r.try_get(17)?,
            ),
            (
                r.try_get(18)?,
                r.try_get(19)?,
                r.try_get(20)?,
                r.try_get(21)?,
                r.try_get(22)?,
                r.try_get(23)?,
                r.try_get(24)?,
                r.try_get(25)?,
                r.try_get(26)?,
            ),
        )
    }};
}

/// An outbound message by id.
pub async fn outbound(tx: &mut TenantTx, id: Uuid) -> Result<Option<Outbound>, StoreError> {
    let sql =
        format!("SELECT {OUTBOUND_COLUMNS} FROM messages WHERE id = $1 AND direction = 'outbound'");
    let row: Option<OutboundRow> = on_tx!(tx.tx(), |c| {
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        {
            Some(r) => Some(decode_outbound!(r)),
            None => None,
        }
    });
    row.map(to_outbound).transpose()
}

/// PostgreSQL's SQLSTATE for a `NOWAIT` lock that is taken.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The status of outbound message `id`, read by a step about to write a
/// wait for its next status. On PostgreSQL the row is locked `FOR SHARE`
/// until the step commits: a status being applied (its handler holds the
/// row `FOR UPDATE`) is waited for and seen here, and one applied later
/// waits for the step and then sees its wait
/// ([`crate::tenant::automations::runs::awaits_status`]), so a status is
/// never missed by both sides. A transaction that may not wait for locks
/// ([`TenantTx::wait_for_locks`]) gets [`StoreError::LockBusy`] instead.
pub async fn status_for_wait(
    tx: &mut TenantTx,
    id: Uuid,
) -> Result<Option<MessageStatus>, StoreError> {
    let lock = if tx.waits_for_locks() {
        "FOR SHARE"
    } else {
        "FOR SHARE NOWAIT"
    };
    let status: Option<String> = on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query_scalar(
                "SELECT status FROM messages WHERE id = $1 AND direction = 'outbound'",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        },
        postgres | c | {
            let sql = format!(
                "SELECT status FROM messages WHERE id = $1 AND direction = 'outbound' {lock}"
            );
            match sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *c)
                .await
            {
                Err(sqlx::Error::Database(d))
                    if d.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
                {
                    return Err(StoreError::LockBusy(format!("message {id}")));
                }
                r => r?,
            }
        }
    );
    Ok(status.and_then(|s| s.parse().ok()))
}

/// The outbound messages of `ids` that exist, by id, in one statement per
/// 500 ids (a campaign's batch reads back what it queued).
pub async fn outbound_many(
    tx: &mut TenantTx,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Outbound>, StoreError> {
    use crate::tenant::contacts::{IN_CHUNK, placeholders};
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {OUTBOUND_COLUMNS} FROM messages WHERE direction = 'outbound' AND id IN ({})",
            placeholders(chunk.len())
        );
        let rows: Vec<OutboundRow> = on_tx!(tx.tx(), |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for id in chunk {
                q = q.bind(*id);
            }
            let mut rows = Vec::with_capacity(chunk.len());
            for r in q.fetch_all(&mut *c).await? {
                rows.push(decode_outbound!(r));
            }
            rows
        });
        for r in rows {
            let m = to_outbound(r)?;
            out.insert(m.id, m);
        }
    }
    Ok(out)
}

/// The messages already holding some of `keys`, by key, in one statement
/// per 500 keys.
pub async fn message_ids_by_keys(
    tx: &mut TenantTx,
    keys: &[&str],
) -> Result<std::collections::HashMap<String, Uuid>, StoreError> {
    use crate::tenant::contacts::{IN_CHUNK, placeholders};
    let mut out = std::collections::HashMap::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT idempotency_key, id FROM messages WHERE idempotency_key IN ({})",
            placeholders(chunk.len())
        );
        let rows: Vec<(String, Uuid)> = on_tx!(tx.tx(), |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for k in chunk {
                q = q.bind(*k);
            }
            q.fetch_all(&mut *c).await?
        });
        out.extend(rows);
    }
    Ok(out)
}

/// Filters of [`list_outbound`].
#[derive(Debug, Clone, Default)]
pub struct OutboundFilter {
    pub status: Option<String>,
    pub contact_id: Option<Uuid>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Outbound messages, newest first.
pub async fn list_outbound(
    tx: &mut TenantTx,
    f: &OutboundFilter,
) -> Result<Vec<Outbound>, StoreError> {
    let sql = format!(
        "SELECT {OUTBOUND_COLUMNS} FROM messages WHERE direction = 'outbound'
           AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR contact_id = $2) AND ($3 IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<OutboundRow> = on_tx!(tx.tx(), |c| {
        let raw = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(f.status.as_deref())
            .bind(f.contact_id)
            .bind(f.before)
            .bind(i64::from(f.limit))
            .fetch_all(&mut *c)
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            out.push(decode_outbound!(r));
        }
        out
    });
    rows.into_iter().map(to_outbound).collect()
}

/// Marks the message billable (decided when it is queued).
pub async fn set_billable(tx: &mut TenantTx, id: Uuid, billable: bool) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE messages SET billable = $1 WHERE id = $2")
            .bind(billable)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A call to Meta is about to start: commit this before making it.
///
/// Only a message still `QUEUED` is claimed: `false` when it was withdrawn
/// (e.g. its campaign was cancelled) since the send job read it, and the
/// job must not call Meta.
pub async fn mark_sending(tx: &mut TenantTx, id: Uuid, now_ms: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET send_state = 'sending', send_started_at = $1, send_attempts = send_attempts + 1,
                 updated_at = $1 WHERE id = $2 AND status = 'QUEUED'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// The call ended without reaching Meta, or Meta refused it with a
/// retryable error: nothing was accepted, a retry may send.
pub async fn clear_sending(tx: &mut TenantTx, id: Uuid, now_ms: i64) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET send_state = NULL, updated_at = $1 WHERE id = $2 AND send_state = 'sending'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Serialises this transaction with every other touching `wamid`'s
/// message through that wamid (PostgreSQL; SQLite's single writer already
/// does): the send recording Meta's answer and the status webhooks for it.
/// A status that arrives before the wamid is stored is then either recorded
/// before the send looks for early statuses, or finds the wamid stored.
/// Take it before any row lock, and a webhook takes all of its wamids at
/// once in sorted order, so that two transactions never wait on each other.
pub async fn lock_wamid(tx: &mut TenantTx, wamid: &str) -> Result<(), StoreError> {
    tx.serialize_on(&format!("wamid:{wamid}")).await
}

/// [`lock_wamid`] without waiting: `false` when another transaction holds
/// it (a group of acceptances then leaves that message to be recorded
/// alone, so the group never waits on a wamid while holding others).
pub async fn try_lock_wamid(tx: &mut TenantTx, wamid: &str) -> Result<bool, StoreError> {
    tx.try_serialize_on(&format!("wamid:{wamid}")).await
}

/// An outbound message as settling its credits needs it, read while its row
/// is held (see [`record_acceptance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settling {
    pub id: Uuid,
    pub status: String,
    pub wamid: Option<String>,
    pub idempotency_key: Option<String>,
    pub billable: bool,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub error_code: Option<i64>,
}

impl Settling {
    /// `FAILED` without any delivery recorded (a charge is refunded).
    pub fn failed_undelivered(&self) -> bool {
        failed_without_delivery(
            &self.status,
            self.delivered_at.is_some() || self.read_at.is_some(),
        )
    }
}

type SettlingRow = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn to_settling(r: SettlingRow) -> Settling {
    Settling {
        id: r.0,
        status: r.1,
        wamid: r.2,
        idempotency_key: r.3,
        billable: r.4,
        delivered_at: r.5,
        read_at: r.6,
        error_code: r.7,
    }
}

/// Records Meta's acceptance of message `id` — with `accepted`, `(wamid if
/// known, sandbox)`; without, it was recorded already (a retried job) or a
/// status webhook linked its wamid ([`link_by_callback_data`]) — in
/// one statement that always updates the row, so on PostgreSQL the row is
/// held until commit: a status webhook applying to this message (which
/// updates the row too) waits for this transaction, and one that committed
/// before it is seen. Then applies the statuses that arrived before the
/// wamid was known. Returns the message as its credits must be settled, or
/// `None` if there is no such outbound message.
///
/// The caller holds the wamid's lock ([`lock_wamid`]) when it knows it.
pub async fn record_acceptance(
    tx: &mut TenantTx,
    id: Uuid,
    accepted: Option<(Option<&str>, bool)>,
    now_ms: i64,
) -> Result<Option<Settling>, StoreError> {
    let (accept, wamid, sandbox) = match accepted {
        Some((w, sb)) => (true, w, sb),
        None => (false, None, false),
    };
    // The acceptance fields are set once (the first acceptance recorded
    // wins, as before); the wamid only when none is stored.
    type Row = (
        Uuid,
        String,
        Option<String>,
        Option<String>,
        bool,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        i64,
    );
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "UPDATE messages SET
                 accepted_at = CASE WHEN ($1 OR wamid IS NOT NULL) AND (send_state IS NULL OR send_state <> 'accepted')
                                    THEN COALESCE(accepted_at, $2) ELSE accepted_at END,
                 is_sandbox = CASE WHEN $1 AND (send_state IS NULL OR send_state <> 'accepted') THEN $3 ELSE is_sandbox END,
                 updated_at = CASE WHEN (($1 OR wamid IS NOT NULL) AND (send_state IS NULL OR send_state <> 'accepted'))
                                     OR (wamid IS NULL AND $4 IS NOT NULL) THEN $2 ELSE updated_at END,
                 send_state = CASE WHEN $1 OR wamid IS NOT NULL THEN 'accepted' ELSE send_state END,
                 wamid = COALESCE(wamid, $4)
             WHERE id = $5 AND direction = 'outbound'
             RETURNING id, status, wamid, idempotency_key, billable, delivered_at, read_at, error_code,
                 (SELECT COUNT(*) FROM message_status_events e WHERE e.wamid = messages.wamid AND e.applied = $6)",
        )
        .bind(accept)
        .bind(now_ms)
        .bind(sandbox)
        .bind(wamid)
        .bind(id)
        .bind(false)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some((a, b, c0, d, e, f, g, h, pending)) = row else {
        return Ok(None);
    };
    let s = to_settling((a, b, c0, d, e, f, g, h));
    // Statuses that overtook the answer (counted by the same statement, so
    // the usual case costs nothing more).
    let Some(w) = s.wamid.clone().filter(|_| pending > 0) else {
        return Ok(Some(s));
    };
    if messaging::apply_pending(tx, &w, now_ms).await? == 0 {
        return Ok(Some(s));
    }
    let row: Option<SettlingRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, status, wamid, idempotency_key, billable, delivered_at, read_at, error_code
             FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_settling))
}

/// The message will never be sent as it is: FAILED with the code (Meta's,
/// or none for a refusal before Meta) and a human reason. Returns false if
/// it had already moved on.
pub async fn mark_rejected(
    tx: &mut TenantTx,
    id: Uuid,
    code: Option<i64>,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET status = 'FAILED', send_state = 'rejected', error_code = $1, error_reason = $2,
                 failed_at = $3, updated_at = $3
             WHERE id = $4 AND status = 'QUEUED' AND wamid IS NULL",
        )
        .bind(code)
        .bind(reason)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// A status webhook for a wamid Galantis has not recorded yet, carrying our
/// idempotency key as `biz_opaque_callback_data`: the send was accepted
/// (its job may have died before storing the answer). Links the wamid and
/// applies pending statuses. Returns the message id if one was linked.
///
/// It does not record the acceptance (`send_state` stays as it is): that is
/// written with the charge, by the send's job ([`record_acceptance`]), so
/// the message holds its credit until then (see `reservations`).
pub async fn link_by_callback_data(
    tx: &mut TenantTx,
    idempotency_key: &str,
    wamid: &str,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    let id: Option<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT id FROM messages WHERE idempotency_key = $1 AND direction = 'outbound' AND wamid IS NULL",
        )
        .bind(idempotency_key)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some(id) = id else { return Ok(None) };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET accepted_at = COALESCE(accepted_at, $1), updated_at = $1 WHERE id = $2",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    messaging::set_wamid(tx, id, wamid, now_ms).await?;
    Ok(Some(id))
}

/// Whether a message's status is `FAILED` without any delivery recorded.
pub fn failed_undelivered(m: &Outbound) -> bool {
    failed_without_delivery(
        m.status.as_str(),
        m.delivered_at.is_some() || m.read_at.is_some(),
    )
}

/// `FAILED` and never delivered nor read: a charge for it is refunded.
fn failed_without_delivery(status: &str, ever_delivered: bool) -> bool {
    status == MessageStatus::Failed.as_str() && !ever_delivered
}

/// The message recorded under an idempotency key.
pub async fn message_id_by_key(tx: &mut TenantTx, key: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT id FROM messages WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut *c)
            .await?
    }))
}

/// Records an outbound message as QUEUED with its billable flag, once per
/// idempotency key (the unique index decides, so two sends racing with one
/// key cannot both insert). Returns the new id, or `None` when the key was
/// taken: the caller reads that message with [`message_id_by_key`].
pub async fn insert_queued(
    tx: &mut TenantTx,
    m: &messaging::OutboundMessage<'_>,
    billable: bool,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    let mut ids = insert_queued_many(tx, &[(m.clone(), billable)], now_ms).await?;
    Ok(ids.pop().flatten())
}

/// Messages per multi-row `INSERT` (13 binds each).
const INSERT_CHUNK: usize = 200;

/// [`insert_queued`] for many messages in one statement per
/// [`INSERT_CHUNK`]: per message, in order, its new id or `None` when its
/// key was taken (before, or earlier in `messages`).
pub async fn insert_queued_many(
    tx: &mut TenantTx,
    messages: &[(messaging::OutboundMessage<'_>, bool)],
    now_ms: i64,
) -> Result<Vec<Option<Uuid>>, StoreError> {
    let ids: Vec<Uuid> = messages.iter().map(|_| Uuid::now_v7()).collect();
    let mut inserted = std::collections::HashSet::with_capacity(ids.len());
    for (rows, ids) in messages.chunks(INSERT_CHUNK).zip(ids.chunks(INSERT_CHUNK)) {
        let got: Vec<Uuid> = on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO messages (id, contact_id, phone_number_id, direction, idempotency_key, kind, body, content,
                     source, template_name, template_language, status, is_sandbox, billable, created_at, updated_at) ",
            );
            qb.push_values(rows.iter().zip(ids), |mut row, ((m, billable), id)| {
                row.push_bind(*id)
                    .push_bind(m.contact_id)
                    .push_bind(m.phone_number_id)
                    .push("'outbound'")
                    .push_bind(m.idempotency_key)
                    .push_bind(m.kind)
                    .push_bind(m.body)
                    .push_bind(Json(m.content))
                    .push_bind(m.source)
                    .push_bind(m.template_name)
                    .push_bind(m.template_language)
                    .push("'QUEUED'")
                    .push_bind(m.is_sandbox)
                    .push_bind(*billable)
                    .push_bind(now_ms)
                    .push_bind(now_ms);
            });
            qb.push(
                " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            );
            qb.build_query_scalar().fetch_all(&mut *c).await?
        });
        inserted.extend(got);
    }
    Ok(ids
        .into_iter()
        .map(|id| inserted.contains(&id).then_some(id))
        .collect())
}
