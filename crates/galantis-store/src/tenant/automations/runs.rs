//! Automation runs: one per (automation, contact, trigger key), holding the
//! engine's `RunState` and the columns that find a run again — waiting for
//! a reply or a status (by contact, by last message), by checkout (to
//! cancel), by start time (frequency caps).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use galantis_core::automation::{Awaited, RunState, RunStatus, WaitKind};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub automation_id: Uuid,
    pub version: i32,
    pub contact_id: Uuid,
    pub trigger_key: String,
    pub trigger_event_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub checkout_id: Option<Uuid>,
    pub variant_id: Option<Uuid>,
    /// What the trigger carried (its variables), for facts.
    pub context: Value,
    pub state: RunState,
    pub status: RunStatus,
    pub current_node: Option<String>,
    pub waiting_for: Option<Awaited>,
    pub wait_until: Option<DateTime<Utc>>,
    pub last_message_id: Option<Uuid>,
    pub end_reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT id, automation_id, version, contact_id, trigger_key, trigger_event_id,
        order_id, checkout_id, variant_id, context, state, status, current_node, waiting_for,
        wait_until, last_message_id, end_reason, started_at, updated_at, ended_at
     FROM automation_runs ";

#[derive(sqlx::FromRow)]
struct Flat {
    id: Uuid,
    automation_id: Uuid,
    version: i32,
    contact_id: Uuid,
    trigger_key: String,
    trigger_event_id: Option<Uuid>,
    order_id: Option<Uuid>,
    checkout_id: Option<Uuid>,
    variant_id: Option<Uuid>,
    context: Json<Value>,
    state: Json<RunState>,
    status: String,
    current_node: Option<String>,
    waiting_for: Option<String>,
    wait_until: Option<i64>,
    last_message_id: Option<Uuid>,
    end_reason: Option<String>,
    started_at: i64,
    updated_at: i64,
    ended_at: Option<i64>,
}

fn to_run(r: Flat) -> Run {
    Run {
        id: r.id,
        automation_id: r.automation_id,
        version: r.version,
        contact_id: r.contact_id,
        trigger_key: r.trigger_key,
        trigger_event_id: r.trigger_event_id,
        order_id: r.order_id,
        checkout_id: r.checkout_id,
        variant_id: r.variant_id,
        context: r.context.0,
        state: r.state.0,
        status: RunStatus::parse(&r.status).unwrap_or(RunStatus::Failed),
        current_node: r.current_node,
        waiting_for: r.waiting_for.as_deref().and_then(Awaited::parse),
        wait_until: r.wait_until.map(from_ms),
        last_message_id: r.last_message_id,
        end_reason: r.end_reason,
        started_at: from_ms(r.started_at),
        updated_at: from_ms(r.updated_at),
        ended_at: r.ended_at.map(from_ms),
    }
}

/// An enrolment.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub automation_id: Uuid,
    pub version: i32,
    pub contact_id: Uuid,
    /// `TriggerFact::key`.
    pub trigger_key: &'a str,
    pub trigger_event_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub checkout_id: Option<Uuid>,
    pub variant_id: Option<Uuid>,
    pub context: &'a Value,
}

/// Enrols a contact: inserts a run with a fresh `RunState` unless one
/// exists for (automation, contact, trigger key). Returns the new run's
/// id, `None` when it already existed (a duplicate event).
pub async fn enrol(
    tx: &mut TenantTx,
    new: &NewRun<'_>,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    Ok(enrol_run(tx, new, now_ms).await?.map(|r| r.id))
}

/// [`enrol`], returning the new run as stored (no read back), so its first
/// step can be taken in the same transaction.
pub async fn enrol_run(
    tx: &mut TenantTx,
    new: &NewRun<'_>,
    now_ms: i64,
) -> Result<Option<Run>, StoreError> {
    Ok(enrol_many(tx, std::slice::from_ref(new), now_ms)
        .await?
        .pop()
        .flatten())
}

/// Runs per multi-row `INSERT` (12 binds each, well under both engines'
/// bind limits).
const ENROL_CHUNK: usize = 200;

/// [`enrol_run`] for many contacts in one statement per [`ENROL_CHUNK`]:
/// per `new`, in order, the new run or `None` when one existed for
/// (automation, contact, trigger key) — before, or earlier in `new`.
pub async fn enrol_many(
    tx: &mut TenantTx,
    new: &[NewRun<'_>],
    now_ms: i64,
) -> Result<Vec<Option<Run>>, StoreError> {
    let state = RunState::new();
    let ids: Vec<Uuid> = new.iter().map(|_| Uuid::now_v7()).collect();
    let mut inserted = std::collections::HashSet::with_capacity(new.len());
    for (rows, ids) in new.chunks(ENROL_CHUNK).zip(ids.chunks(ENROL_CHUNK)) {
        let got: Vec<Uuid> = on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO automation_runs (id, automation_id, version, contact_id, trigger_key,
                     trigger_event_id, order_id, checkout_id, variant_id, context, state, status,
                     started_at, updated_at) ",
            );
            qb.push_values(rows.iter().zip(ids), |mut row, (n, id)| {
                row.push_bind(*id)
                    .push_bind(n.automation_id)
                    .push_bind(n.version)
                    .push_bind(n.contact_id)
                    .push_bind(n.trigger_key)
                    .push_bind(n.trigger_event_id)
                    .push_bind(n.order_id)
                    .push_bind(n.checkout_id)
                    .push_bind(n.variant_id)
                    .push_bind(Json(n.context))
                    .push_bind(Json(&state))
                    .push("'ACTIVE'")
                    .push_bind(now_ms)
                    .push_bind(now_ms);
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING id");
            qb.build_query_scalar().fetch_all(&mut *c).await?
        });
        inserted.extend(got);
    }
    let at = from_ms(now_ms);
    Ok(new
        .iter()
        .zip(ids)
        .map(|(new, id)| {
            inserted.contains(&id).then(|| Run {
                id,
                automation_id: new.automation_id,
                version: new.version,
                contact_id: new.contact_id,
                trigger_key: new.trigger_key.to_owned(),
                trigger_event_id: new.trigger_event_id,
                order_id: new.order_id,
                checkout_id: new.checkout_id,
                variant_id: new.variant_id,
                context: new.context.clone(),
                state: state.clone(),
                status: RunStatus::Active,
                current_node: None,
                waiting_for: None,
                wait_until: None,
                last_message_id: None,
                end_reason: None,
                started_at: at,
                updated_at: at,
                ended_at: None,
            })
        })
        .collect())
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Run>, StoreError> {
    let row: Option<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_run))
}

/// [`get`], locking the row until the transaction ends (PostgreSQL; a
/// SQLite write transaction is already exclusive), so two jobs of one run
/// never step it at once.
pub async fn lock(tx: &mut TenantTx, id: Uuid) -> Result<Option<Run>, StoreError> {
    let row: Option<Flat> = on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
                .bind(id)
                .fetch_optional(&mut *c)
                .await?
        },
        postgres | c | {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        }
    );
    Ok(row.map(to_run))
}

/// Saves a stepped state: status, node and wait columns follow it;
/// `last_message_id` is set when given (the step sent a message);
/// `end_reason` is kept for a run that ends.
pub async fn save(
    tx: &mut TenantTx,
    id: Uuid,
    state: &RunState,
    last_message_id: Option<Uuid>,
    end_reason: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let save = Save {
        id,
        state: state.clone(),
        last_message_id,
        end_reason: end_reason.map(str::to_owned),
    };
    save_many(tx, &[save], now_ms).await
}

/// One run's [`save`], for [`save_many`].
#[derive(Debug, Clone)]
pub struct Save {
    pub id: Uuid,
    pub state: RunState,
    pub last_message_id: Option<Uuid>,
    pub end_reason: Option<String>,
}

/// Runs per multi-row `UPDATE` (9 binds each).
const SAVE_CHUNK: usize = 200;

/// [`save`] for many distinct runs (a batch's first steps) in one
/// statement per [`SAVE_CHUNK`]. `NotFound` if one of them is gone.
pub async fn save_many(tx: &mut TenantTx, saves: &[Save], now_ms: i64) -> Result<(), StoreError> {
    for rows in saves.chunks(SAVE_CHUNK) {
        let n = on_tx!(tx.tx(), |c| {
            // The same text on both engines: a CTE with named columns
            // (SQLite has no column list on a subquery alias).
            let mut qb = sqlx::QueryBuilder::new(
                "WITH v(id, state, status, current_node, waiting_for, wait_until, last_message_id,
                        end_reason, ended_at) AS (",
            );
            qb.push_values(rows, |mut row, save| {
                let state = &save.state;
                let (waiting_for, wait_until) = match &state.wait {
                    Some(w) => (
                        match w.kind {
                            WaitKind::Event { awaited } => Some(awaited.as_str()),
                            WaitKind::Delay => None,
                        },
                        Some(w.until.timestamp_millis()),
                    ),
                    None => (None, None),
                };
                row.push_bind(save.id)
                    .push_bind(Json(state))
                    .push_bind(state.status.as_str())
                    .push_bind(state.node.as_deref())
                    .push_bind(waiting_for)
                    .push_bind(wait_until)
                    .push_bind(save.last_message_id)
                    .push_bind(save.end_reason.as_deref())
                    .push_bind(state.status.is_terminal().then_some(now_ms));
            });
            qb.push(
                ") UPDATE automation_runs SET state = v.state, status = v.status,
                     current_node = v.current_node, waiting_for = v.waiting_for,
                     wait_until = v.wait_until,
                     last_message_id = COALESCE(v.last_message_id, automation_runs.last_message_id),
                     end_reason = COALESCE(v.end_reason, automation_runs.end_reason),
                     ended_at = COALESCE(automation_runs.ended_at, v.ended_at),
                     updated_at = ",
            )
            .push_bind(now_ms)
            .push(" FROM v WHERE automation_runs.id = v.id");
            qb.build().execute(&mut *c).await?.rows_affected()
        });
        if n != rows.len() as u64 {
            return Err(StoreError::NotFound);
        }
    }
    Ok(())
}

/// When this contact last entered this automation (for the frequency cap).
pub async fn last_enrolled_at(
    tx: &mut TenantTx,
    automation_id: Uuid,
    contact_id: Uuid,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let ms: Option<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT MAX(started_at) FROM automation_runs WHERE automation_id = $1 AND contact_id = $2",
        )
        .bind(automation_id)
        .bind(contact_id)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(ms.map(from_ms))
}

/// Runs of this contact waiting on a condition for a reply (an inbound
/// message wakes them), by index, oldest first.
pub async fn waiting_for_reply(
    tx: &mut TenantTx,
    contact_id: Uuid,
) -> Result<Vec<Run>, StoreError> {
    let rows: Vec<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE contact_id = $1 AND waiting_for IN ('reply', 'reply_or_message_status') ORDER BY id"
        )))
        .bind(contact_id)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_run).collect())
}

/// Runs whose last message is `message_id` and that wait for its status.
pub async fn waiting_for_status(
    tx: &mut TenantTx,
    message_id: Uuid,
) -> Result<Vec<Run>, StoreError> {
    let rows: Vec<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE last_message_id = $1 AND waiting_for IN ('message_status', 'reply_or_message_status') ORDER BY id"
        )))
        .bind(message_id)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_run).collect())
}

/// Whether a run waits for the status of `message_id` now. The status
/// handler asks after applying the status (the message row is locked
/// on PostgreSQL), so a step writing its wait concurrently either holds
/// the row first and is seen here, or reads the status after this commit
/// ([`crate::tenant::sending::status_for_wait`]).
pub async fn awaits_status(tx: &mut TenantTx, message_id: Uuid) -> Result<bool, StoreError> {
    let found: Option<i32> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT 1 FROM automation_runs WHERE last_message_id = $1
               AND waiting_for IN ('message_status', 'reply_or_message_status') LIMIT 1",
        )
        .bind(message_id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(found.is_some())
}

/// Live (not ended) runs started by this checkout, for cancelling when it
/// completes.
pub async fn live_for_checkout(
    tx: &mut TenantTx,
    checkout_id: Uuid,
) -> Result<Vec<Run>, StoreError> {
    let rows: Vec<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE checkout_id = $1 AND status IN ('ACTIVE', 'WAITING') ORDER BY id"
        )))
        .bind(checkout_id)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_run).collect())
}

/// Ends a live run as `status` (SKIPPED, FAILED) with a reason, outside
/// the step function (a completed checkout, a deleted automation).
/// Returns whether it was live; the caller records the activity of the
/// node the run was at (`SKIPPED` with the same reason).
pub async fn end(
    tx: &mut TenantTx,
    id: Uuid,
    status: RunStatus,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(run) = lock(tx, id).await? else {
        return Ok(false);
    };
    if run.status.is_terminal() {
        return Ok(false);
    }
    let mut state = run.state;
    state.status = status;
    state.wait = None;
    save(tx, id, &state, None, Some(reason), now_ms).await?;
    Ok(true)
}

/// Ids per `IN (…)` list of [`prior_many`].
const PRIOR_CHUNK: usize = 500;

/// For each contact of `contact_ids` that has runs of this automation:
/// whether one is for `key` (a duplicate event), and the last run's start
/// (the frequency cap). Contacts without a run are absent.
pub async fn prior_many(
    tx: &mut TenantTx,
    automation_id: Uuid,
    contact_ids: &[Uuid],
    key: &str,
) -> Result<HashMap<Uuid, (bool, Option<DateTime<Utc>>)>, StoreError> {
    let mut out = HashMap::with_capacity(contact_ids.len());
    for chunk in contact_ids.chunks(PRIOR_CHUNK) {
        let rows: Vec<(Uuid, i64, Option<i64>)> = on_tx!(tx.tx(), |c| {
            let mut qb =
                sqlx::QueryBuilder::new("SELECT contact_id, COALESCE(SUM(CASE WHEN trigger_key = ");
            qb.push_bind(key)
                .push(" THEN 1 ELSE 0 END), 0), MAX(started_at) FROM automation_runs WHERE automation_id = ")
                .push_bind(automation_id)
                .push(" AND contact_id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(") GROUP BY contact_id");
            qb.build_query_as().fetch_all(&mut *c).await?
        });
        out.extend(
            rows.into_iter()
                .map(|(contact, dup, last)| (contact, (dup > 0, last.map(from_ms)))),
        );
    }
    Ok(out)
}

/// Whether this contact already has a run of this automation for `key`.
pub async fn exists(
    tx: &mut TenantTx,
    automation_id: Uuid,
    contact_id: Uuid,
    key: &str,
) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM automation_runs WHERE automation_id = $1 AND contact_id = $2 AND trigger_key = $3",
        )
        .bind(automation_id)
        .bind(contact_id)
        .bind(key)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n > 0)
}

/// The contacts in a segment (materialised membership), for
/// `include_existing_users`.
pub async fn segment_members(tx: &mut TenantTx, segment: Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT contact_id FROM segment_members WHERE segment_id = $1 ORDER BY contact_id",
        )
        .bind(segment)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// The contacts on a list, for `include_existing_users`.
pub async fn list_members(tx: &mut TenantTx, list: Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT contact_id FROM list_members WHERE list_id = $1 ORDER BY contact_id",
        )
        .bind(list)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// The contact's inbound messages since `since_ms`, for reply conditions:
/// when each arrived (epoch ms) and the quick-reply button it pressed, if
/// any; oldest first, at most 50.
pub async fn inbound_since(
    tx: &mut TenantTx,
    contact_id: Uuid,
    since_ms: i64,
) -> Result<Vec<(i64, Option<String>)>, StoreError> {
    let rows: Vec<(i64, Option<Json<Value>>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT created_at, content FROM messages WHERE contact_id = $1 AND direction = 'inbound'
                 AND created_at >= $2 ORDER BY created_at LIMIT 50",
        )
        .bind(contact_id)
        .bind(since_ms)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(at, content)| {
            let button =
                content.and_then(|c| galantis_core::messaging::inbound::button_reply_id(&c.0));
            (at, button)
        })
        .collect())
}

/// Serialises, until commit, the transactions that store an inbound
/// message of `contact_id` with those that write a run's wait for its
/// reply: a step that takes it and then reads [`inbound_since`] sees every
/// reply whose transaction did not wait for it, and a reply whose
/// transaction waited is stored after the wait commits, so its wake-up
/// finds the run (the status counterpart is
/// [`crate::tenant::sending::status_for_wait`]). Free on SQLite's single
/// writer. In a transaction that may not wait
/// ([`TenantTx::wait_for_locks`]), [`StoreError::LockBusy`].
pub async fn hold_replies(tx: &mut TenantTx, contact_id: Uuid) -> Result<(), StoreError> {
    tx.serialize_on(&format!("replies:{contact_id}")).await
}

/// An automation's runs, oldest first (at most `limit`).
pub async fn of_automation(
    tx: &mut TenantTx,
    automation_id: Uuid,
    limit: u32,
) -> Result<Vec<Run>, StoreError> {
    let rows: Vec<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE automation_id = $1 ORDER BY id LIMIT $2"
        )))
        .bind(automation_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_run).collect())
}

/// How many runs of an automation are in each status.
pub async fn count_by_status(
    tx: &mut TenantTx,
    automation_id: Uuid,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM automation_runs WHERE automation_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(automation_id)
        .fetch_all(&mut *c)
        .await?
    }))
}
