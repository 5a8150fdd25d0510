//! `AutomationActivity`: one row per node visit (run, node, visit) with a
//! time per transition, blocked enrolments (rows without a run, at the
//! trigger node, `SKIPPED` with the gate's reason), listing and stats.

use chrono::{DateTime, Utc};
use galantis_core::automation::ActivityStatus;
use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub id: Uuid,
    /// `None` for a blocked enrolment.
    pub run_id: Option<Uuid>,
    pub automation_id: Uuid,
    pub contact_id: Uuid,
    pub node_id: String,
    pub visit: i32,
    pub status: ActivityStatus,
    pub reason: Option<String>,
    pub message_id: Option<Uuid>,
    pub pending_at: Option<DateTime<Utc>>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub skipped_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    run_id: Option<Uuid>,
    automation_id: Uuid,
    contact_id: Uuid,
    node_id: String,
    visit: i32,
    status: String,
    reason: Option<String>,
    message_id: Option<Uuid>,
    pending_at: Option<i64>,
    scheduled_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    skipped_at: Option<i64>,
    updated_at: i64,
}

fn to_activity(r: Row) -> Activity {
    Activity {
        id: r.id,
        run_id: r.run_id,
        automation_id: r.automation_id,
        contact_id: r.contact_id,
        node_id: r.node_id,
        visit: r.visit,
        status: ActivityStatus::parse(&r.status).unwrap_or(ActivityStatus::Failed),
        reason: r.reason,
        message_id: r.message_id,
        pending_at: r.pending_at.map(from_ms),
        scheduled_at: r.scheduled_at.map(from_ms),
        completed_at: r.completed_at.map(from_ms),
        failed_at: r.failed_at.map(from_ms),
        skipped_at: r.skipped_at.map(from_ms),
        updated_at: from_ms(r.updated_at),
    }
}

/// Which node visit a transition is about.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    pub run_id: Uuid,
    pub automation_id: Uuid,
    pub contact_id: Uuid,
    pub node_id: &'a str,
    pub visit: u32,
}

/// A status's time column, as its place in the columns `pending_at,
/// scheduled_at, completed_at, failed_at, skipped_at`.
fn time_column(s: ActivityStatus) -> usize {
    match s {
        ActivityStatus::Pending => 0,
        ActivityStatus::Scheduled => 1,
        ActivityStatus::Completed => 2,
        ActivityStatus::Failed => 3,
        ActivityStatus::Skipped => 4,
    }
}

/// Records a transition of a node visit: creates the row on its first
/// transition, then moves its status, stamps the status's time (the first
/// time only, so a retried step keeps the original), and keeps a reason or
/// message id once given.
pub async fn transition(
    tx: &mut TenantTx,
    v: &Visit<'_>,
    status: ActivityStatus,
    reason: Option<&str>,
    message_id: Option<Uuid>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let t = Transition::new(v, status, reason.map(str::to_owned), message_id);
    transition_many(tx, &[t], now_ms).await
}

/// One transition for [`transition_many`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub run_id: Uuid,
    pub automation_id: Uuid,
    pub contact_id: Uuid,
    pub node_id: String,
    pub visit: u32,
    pub status: ActivityStatus,
    pub reason: Option<String>,
    pub message_id: Option<Uuid>,
}

impl Transition {
    pub fn new(
        v: &Visit<'_>,
        status: ActivityStatus,
        reason: Option<String>,
        message_id: Option<Uuid>,
    ) -> Transition {
        Transition {
            run_id: v.run_id,
            automation_id: v.automation_id,
            contact_id: v.contact_id,
            node_id: v.node_id.to_owned(),
            visit: v.visit,
            status,
            reason,
            message_id,
        }
    }
}

/// Rows per multi-row upsert (16 binds each).
const TRANSITION_CHUNK: usize = 200;

/// A visit's transitions merged in order, as [`transition`] would leave
/// its row after each: the last status, each status's first time, the
/// last reason and message id given. One statement may not touch a row
/// twice (PostgreSQL refuses it), so a visit is one row here.
struct Merged<'a> {
    first: &'a Transition,
    status: ActivityStatus,
    stamped: [bool; 5],
    reason: Option<&'a str>,
    message_id: Option<Uuid>,
}

fn merge(ts: &[Transition]) -> Vec<Merged<'_>> {
    let mut out: Vec<Merged<'_>> = Vec::with_capacity(ts.len());
    let mut at: std::collections::HashMap<(Uuid, &str, u32), usize> =
        std::collections::HashMap::with_capacity(ts.len());
    for t in ts {
        let i = *at
            .entry((t.run_id, t.node_id.as_str(), t.visit))
            .or_insert_with(|| {
                out.push(Merged {
                    first: t,
                    status: t.status,
                    stamped: [false; 5],
                    reason: None,
                    message_id: None,
                });
                out.len() - 1
            });
        let m = &mut out[i];
        m.status = t.status;
        m.stamped[time_column(t.status)] = true;
        m.reason = t.reason.as_deref().or(m.reason);
        m.message_id = t.message_id.or(m.message_id);
    }
    out
}

/// [`transition`] for many visits (a step's nodes, a batch's runs) in one
/// statement per [`TRANSITION_CHUNK`] visits.
pub async fn transition_many(
    tx: &mut TenantTx,
    transitions: &[Transition],
    now_ms: i64,
) -> Result<(), StoreError> {
    let merged = merge(transitions);
    for rows in merged.chunks(TRANSITION_CHUNK) {
        on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO automation_activity (id, run_id, automation_id, contact_id, node_id, visit,
                     status, reason, message_id, pending_at, scheduled_at, completed_at, failed_at,
                     skipped_at, created_at, updated_at) ",
            );
            qb.push_values(rows, |mut row, m| {
                row.push_bind(Uuid::now_v7())
                    .push_bind(m.first.run_id)
                    .push_bind(m.first.automation_id)
                    .push_bind(m.first.contact_id)
                    .push_bind(&m.first.node_id)
                    .push_bind(i64::from(m.first.visit))
                    .push_bind(m.status.as_str())
                    .push_bind(m.reason)
                    .push_bind(m.message_id);
                for stamped in m.stamped {
                    row.push_bind(stamped.then_some(now_ms));
                }
                row.push_bind(now_ms).push_bind(now_ms);
            });
            qb.push(
                " ON CONFLICT (run_id, node_id, visit) WHERE run_id IS NOT NULL DO UPDATE SET
                     status = excluded.status,
                     pending_at = COALESCE(automation_activity.pending_at, excluded.pending_at),
                     scheduled_at = COALESCE(automation_activity.scheduled_at, excluded.scheduled_at),
                     completed_at = COALESCE(automation_activity.completed_at, excluded.completed_at),
                     failed_at = COALESCE(automation_activity.failed_at, excluded.failed_at),
                     skipped_at = COALESCE(automation_activity.skipped_at, excluded.skipped_at),
                     reason = COALESCE(excluded.reason, automation_activity.reason),
                     message_id = COALESCE(excluded.message_id, automation_activity.message_id),
                     updated_at = excluded.updated_at",
            );
            qb.build().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// Logs a blocked enrolment (once per automation, contact and trigger
/// key): a `SKIPPED` row at the trigger node with the gate's reason code.
/// Returns whether it was new.
pub async fn log_blocked(
    tx: &mut TenantTx,
    automation_id: Uuid,
    contact_id: Uuid,
    trigger_node: &str,
    trigger_key: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO automation_activity (id, run_id, automation_id, contact_id, node_id, visit,
                 trigger_key, status, reason, skipped_at, created_at, updated_at)
             VALUES ($1, NULL, $2, $3, $4, 1, $5, 'SKIPPED', $6, $7, $7, $7)
             ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(automation_id)
        .bind(contact_id)
        .bind(trigger_node)
        .bind(trigger_key)
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n > 0)
}

/// Filters of [`list`]; `before` is the cursor (an activity id).
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter<'a> {
    pub automation_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub status: Option<ActivityStatus>,
    pub node_id: Option<&'a str>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Activity, newest first.
pub async fn list(tx: &mut TenantTx, f: &ActivityFilter<'_>) -> Result<Vec<Activity>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, run_id, automation_id, contact_id, node_id, visit, status, reason, message_id,
                    pending_at, scheduled_at, completed_at, failed_at, skipped_at, updated_at
             FROM automation_activity
             WHERE ($1 IS NULL OR automation_id = $1) AND ($2 IS NULL OR contact_id = $2)
               AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR node_id = $4)
               AND ($5 IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6",
        )
        .bind(f.automation_id)
        .bind(f.contact_id)
        .bind(f.status.map(ActivityStatus::as_str))
        .bind(f.node_id)
        .bind(f.before)
        .bind(i64::from(f.limit.max(1)))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_activity).collect())
}

/// An automation's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub enrolled: i64,
    /// Runs still going (ACTIVE or WAITING).
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Blocked enrolments by gate reason.
    pub blocked_by_reason: Vec<(String, i64)>,
    /// SKIPPED and FAILED node visits by reason.
    pub skipped_by_reason: Vec<(String, i64)>,
    pub failed_by_reason: Vec<(String, i64)>,
    /// Messages the automation sent, and how far they got.
    pub messages_sent: i64,
    pub messages_delivered: i64,
    pub messages_read: i64,
    pub messages_failed: i64,
}

/// Stats of one automation (every version).
pub async fn stats(tx: &mut TenantTx, automation_id: Uuid) -> Result<Stats, StoreError> {
    let runs: Vec<(String, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM automation_runs WHERE automation_id = $1 GROUP BY status",
        )
        .bind(automation_id)
        .fetch_all(&mut *c)
        .await?
    });
    let mut s = Stats::default();
    for (status, n) in runs {
        s.enrolled += n;
        match status.as_str() {
            "COMPLETED" => s.completed += n,
            "FAILED" => s.failed += n,
            "SKIPPED" => s.skipped += n,
            _ => s.in_progress += n,
        }
    }
    let reasons: Vec<(bool, String, String, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT run_id IS NULL, status, COALESCE(reason, ''), COUNT(*) FROM automation_activity
             WHERE automation_id = $1 AND status IN ('SKIPPED', 'FAILED')
             GROUP BY run_id IS NULL, status, COALESCE(reason, '') ORDER BY 4 DESC, 3",
        )
        .bind(automation_id)
        .fetch_all(&mut *c)
        .await?
    });
    for (blocked, status, reason, n) in reasons {
        match (blocked, status.as_str()) {
            (true, _) => s.blocked_by_reason.push((reason, n)),
            (false, "SKIPPED") => s.skipped_by_reason.push((reason, n)),
            _ => s.failed_by_reason.push((reason, n)),
        }
    }
    let msgs: (i64, i64, i64, i64) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT COUNT(*),
                    COALESCE(SUM(CASE WHEN m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN m.read_at IS NOT NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN m.status = 'FAILED' THEN 1 ELSE 0 END), 0)
             FROM automation_activity a JOIN messages m ON m.id = a.message_id
             WHERE a.automation_id = $1",
        )
        .bind(automation_id)
        .fetch_one(&mut *c)
        .await?
    });
    (
        s.messages_sent,
        s.messages_delivered,
        s.messages_read,
        s.messages_failed,
    ) = msgs;
    Ok(s)
}
