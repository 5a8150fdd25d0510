//! The queue's maintenance and operator view: rescuing jobs of dead workers,
//! pruning, discovering SQLite sources, stats, listing and manual retry.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::{JobId, JobState, Lane, TenantId};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::signals::{JobSource, LaneSet};
use super::{JobView, from_ms, ms};
use crate::db::{Db, Engine};
use crate::error::StoreError;
use crate::on_tx;

/// Every source that can hold jobs: on PostgreSQL the one table; on SQLite
/// the control database and each tenant's file.
async fn all_sources(db: &Db) -> Result<Vec<JobSource>, StoreError> {
    if db.engine() == Engine::Postgres {
        return Ok(vec![JobSource::Global]);
    }
    let mut v = vec![JobSource::Global];
    v.extend(
        crate::control::tenants::list(db)
            .await?
            .into_iter()
            .map(|t| JobSource::Tenant(t.id)),
    );
    Ok(v)
}

/// Sources worth visiting for rescue: PostgreSQL's one table, or on SQLite
/// those known to hold pending or running jobs (every running job's source
/// stays known until it finishes; start-up discovers the rest).
fn active_sources(db: &Db) -> Vec<JobSource> {
    if db.engine() == Engine::Postgres {
        vec![JobSource::Global]
    } else {
        db.signals.sources().into_iter().map(|(s, _)| s).collect()
    }
}

/// SQLite: finds every source holding pending or running jobs (after a
/// restart nothing is known in memory). Returns how many were found.
pub async fn discover_sources(db: &Db) -> Result<usize, StoreError> {
    if db.engine() == Engine::Postgres {
        return Ok(0);
    }
    let mut found = 0;
    for source in all_sources(db).await? {
        let mut tx = match db.jobs_tx(source.tenant()).await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(source = ?source, error = %e, "cannot open job source");
                continue;
            }
        };
        let n: i64 = on_tx!(&mut tx, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE state IN ('available', 'running') LIMIT 1) x")
                .fetch_one(&mut *c)
                .await?
        });
        tx.commit().await?;
        if n > 0 {
            db.signals.mark_source(source);
            found += 1;
        }
    }
    Ok(found)
}

/// What a rescue pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RescueReport {
    pub retried: u64,
    pub dead: u64,
    #[serde(skip)]
    pub lanes: LaneSet,
}

/// Jobs whose worker stopped heartbeating for `timeout` go back to the
/// queue (counting the lost attempt), or die when that was their last one.
///
/// `live` are the jobs the calling node is running: never rescued by it,
/// whatever their heartbeat says. On SQLite a heartbeat waits for the
/// tenant file's one writer, so a long write transaction can keep a live
/// job's heartbeat back past the timeout; a node's own rescue must not
/// take that job from it (its claim would be lost and the work redone,
/// each time spending an attempt until the job dies).
pub async fn rescue(
    db: &Db,
    now: DateTime<Utc>,
    timeout: Duration,
    live: &[(Option<TenantId>, JobId)],
) -> Result<RescueReport, StoreError> {
    let cutoff = ms(now) - i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let mut report = RescueReport::default();
    for source in active_sources(db) {
        let spared: Vec<Uuid> = live
            .iter()
            .filter(|(t, _)| {
                db.engine() == Engine::Postgres || JobSource::from_tenant(*t) == source
            })
            .map(|(_, id)| id.as_uuid())
            .collect();
        let mut tx = db.jobs_tx(source.tenant()).await?;
        let rows: Vec<(String, String)> = on_tx!(
            &mut tx,
            sqlite
                | c
                | {
                    // Ids are 16-byte blobs here; `hex(id)` is upper-case.
                    let spared_hex = serde_json::to_string(
                        &spared
                            .iter()
                            .map(|u| u.simple().to_string().to_uppercase())
                            .collect::<Vec<_>>(),
                    )
                    .expect("strings serialise");
                    sqlx::query_as(
                    "UPDATE jobs SET
                        state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'available' END,
                        finished_at = CASE WHEN attempt >= max_attempts THEN $1 ELSE NULL END,
                        unique_key = CASE WHEN attempt >= max_attempts AND unique_while_active THEN NULL ELSE unique_key END,
                        run_at = $1, claimed_by = NULL, heartbeat_at = NULL, updated_at = $1,
                        last_error = 'worker lost: no heartbeat within the timeout',
                        errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', $1,
                                 'error', 'worker lost: no heartbeat within the timeout'))
                     WHERE state = 'running' AND heartbeat_at < $2
                       AND hex(id) NOT IN (SELECT value FROM json_each($3))
                     RETURNING lane, state",
                )
                .bind(ms(now)).bind(cutoff).bind(&spared_hex)
                .fetch_all(&mut *c).await?
                },
            postgres
                | c
                | {
                    sqlx::query_as(
                    "UPDATE jobs SET
                        state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'available' END,
                        finished_at = CASE WHEN attempt >= max_attempts THEN $1 ELSE NULL END,
                        unique_key = CASE WHEN attempt >= max_attempts AND unique_while_active THEN NULL ELSE unique_key END,
                        run_at = $1, claimed_by = NULL, heartbeat_at = NULL, updated_at = $1,
                        last_error = 'worker lost: no heartbeat within the timeout',
                        errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $1::bigint,
                                 'error', 'worker lost: no heartbeat within the timeout'))
                     WHERE state = 'running' AND heartbeat_at < $2 AND id <> ALL($3)
                     RETURNING lane, state",
                )
                .bind(ms(now)).bind(cutoff).bind(&spared)
                .fetch_all(&mut *c).await?
                }
        );
        tx.commit().await?;
        for (lane, state) in rows {
            if state == "dead" {
                report.dead += 1;
            } else {
                report.retried += 1;
                if let Ok(l) = lane.parse::<Lane>() {
                    report.lanes.insert(l);
                }
            }
        }
    }
    if report.retried + report.dead > 0 {
        tracing::warn!(
            retried = report.retried,
            dead = report.dead,
            "rescued jobs of lost workers"
        );
    }
    for lane in Lane::ALL {
        if report.lanes.contains(lane) {
            db.signals.wake(lane);
        }
    }
    Ok(report)
}

/// Deletes completed jobs finished before `completed_before` and dead jobs
/// finished before `dead_before`. Visits every source.
pub async fn prune(
    db: &Db,
    completed_before: DateTime<Utc>,
    dead_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    for source in all_sources(db).await? {
        let mut tx = db.jobs_tx(source.tenant()).await?;
        total += on_tx!(&mut tx, |c| {
            sqlx::query(
                "DELETE FROM jobs WHERE (state = 'completed' AND finished_at < $1) OR (state = 'dead' AND finished_at < $2)",
            )
            .bind(ms(completed_before))
            .bind(ms(dead_before))
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
    }
    Ok(total)
}

/// Counts for one lane.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct LaneStats {
    pub lane: String,
    /// Due now, waiting for a worker.
    pub queued: i64,
    /// Waiting for a future `run_at` (delays, retries).
    pub scheduled: i64,
    pub running: i64,
    pub completed: i64,
    pub dead: i64,
    /// Age of the oldest queued job, in seconds (0 when none).
    pub oldest_queued_age_secs: f64,
}

/// Per-lane counts for one tenant, or for everything (`None`).
pub async fn stats(
    db: &Db,
    tenant: Option<TenantId>,
    now: DateTime<Utc>,
) -> Result<Vec<LaneStats>, StoreError> {
    let sources = match (db.engine(), tenant) {
        (Engine::Postgres, _) => vec![JobSource::Global],
        (Engine::Sqlite, Some(t)) => vec![JobSource::Tenant(t)],
        (Engine::Sqlite, None) => all_sources(db).await?,
    };
    let filter_tenant = if db.engine() == Engine::Postgres {
        tenant.map(|t| t.as_uuid())
    } else {
        None
    };
    let mut by_lane: BTreeMap<Lane, LaneStats> = Lane::ALL
        .into_iter()
        .map(|l| {
            (
                l,
                LaneStats {
                    lane: l.as_str().into(),
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut oldest: BTreeMap<Lane, i64> = BTreeMap::new();
    for source in sources {
        let mut tx = db.jobs_tx(source.tenant()).await?;
        let rows: Vec<StatsRow> = on_tx!(
            &mut tx,
            sqlite | c | {
                sqlx::query_as(STATS_SQL_SQLITE)
                    .bind(ms(now))
                    .fetch_all(&mut *c)
                    .await?
            },
            postgres | c | {
                sqlx::query_as(STATS_SQL_PG)
                    .bind(ms(now))
                    .bind(filter_tenant)
                    .fetch_all(&mut *c)
                    .await?
            }
        );
        tx.commit().await?;
        for (lane, queued, scheduled, running, completed, dead, min_run_at) in rows {
            let Ok(lane) = lane.parse::<Lane>() else {
                continue;
            };
            let s = by_lane.entry(lane).or_default();
            s.queued += queued;
            s.scheduled += scheduled;
            s.running += running;
            s.completed += completed;
            s.dead += dead;
            if let Some(m) = min_run_at {
                let e = oldest.entry(lane).or_insert(m);
                *e = (*e).min(m);
            }
        }
    }
    for (lane, m) in oldest {
        if let Some(s) = by_lane.get_mut(&lane) {
            s.oldest_queued_age_secs = ((ms(now) - m).max(0)) as f64 / 1000.0;
        }
    }
    Ok(by_lane.into_values().collect())
}

/// lane, queued, scheduled, running, completed, dead, oldest queued run_at.
type StatsRow = (String, i64, i64, i64, i64, i64, Option<i64>);

const STATS_SQL_SQLITE: &str = "SELECT lane,
        SUM(CASE WHEN state = 'available' AND run_at <= $1 THEN 1 ELSE 0 END),
        SUM(CASE WHEN state = 'available' AND run_at > $1 THEN 1 ELSE 0 END),
        SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END),
        SUM(CASE WHEN state = 'completed' THEN 1 ELSE 0 END),
        SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END),
        MIN(CASE WHEN state = 'available' AND run_at <= $1 THEN run_at END)
     FROM jobs GROUP BY lane";

const STATS_SQL_PG: &str = "SELECT lane,
        COUNT(*) FILTER (WHERE state = 'available' AND run_at <= $1),
        COUNT(*) FILTER (WHERE state = 'available' AND run_at > $1),
        COUNT(*) FILTER (WHERE state = 'running'),
        COUNT(*) FILTER (WHERE state = 'completed'),
        COUNT(*) FILTER (WHERE state = 'dead'),
        MIN(run_at) FILTER (WHERE state = 'available' AND run_at <= $1)
     FROM jobs WHERE ($2::uuid IS NULL OR tenant_id = $2) GROUP BY lane";

type ViewRow = (
    Uuid,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Json<Value>,
    Json<Value>,
);

macro_rules! view_columns {
    () => {
        "id, kind, lane, priority, state, attempt, max_attempts, run_at, created_at, updated_at, finished_at, last_error, errors, payload"
    };
}

fn to_view(r: ViewRow, tenant: Option<TenantId>) -> JobView {
    JobView {
        id: JobId::from_uuid(r.0),
        tenant_id: tenant,
        kind: r.1,
        lane: r.2,
        priority: r.3,
        state: r.4,
        attempt: r.5,
        max_attempts: r.6,
        run_at: from_ms(r.7),
        created_at: from_ms(r.8),
        updated_at: from_ms(r.9),
        finished_at: r.10.map(from_ms),
        last_error: r.11,
        errors: r.12.0,
        payload: r.13.0,
    }
}

/// A tenant's jobs (or global ones with `None`), newest first, optionally in
/// one state, after the `before` cursor (a job id).
pub async fn list(
    db: &Db,
    tenant: Option<TenantId>,
    state: Option<JobState>,
    before: Option<JobId>,
    limit: u32,
) -> Result<Vec<JobView>, StoreError> {
    let mut tx = db.jobs_tx(tenant).await?;
    let state = state.map(|s| s.as_str());
    let before = before.map(|b| b.as_uuid());
    let rows: Vec<ViewRow> = on_tx!(
        &mut tx,
        sqlite
            | c
            | {
                sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM jobs
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"))
                .bind(state).bind(before).bind(i64::from(limit))
                .fetch_all(&mut *c).await?
            },
        postgres | c | {
            sqlx::query_as(concat!(
                "SELECT ",
                view_columns!(),
                " FROM jobs
                 WHERE tenant_id IS NOT DISTINCT FROM $4 AND ($1::text IS NULL OR state = $1)
                   AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ))
            .bind(state)
            .bind(before)
            .bind(i64::from(limit))
            .bind(tenant.map(|t| t.as_uuid()))
            .fetch_all(&mut *c)
            .await?
        }
    );
    tx.commit().await?;
    Ok(rows.into_iter().map(|r| to_view(r, tenant)).collect())
}

/// One job of `tenant` (`None`: global).
pub async fn get(
    db: &Db,
    tenant: Option<TenantId>,
    id: JobId,
) -> Result<Option<JobView>, StoreError> {
    let mut tx = db.jobs_tx(tenant).await?;
    let row: Option<ViewRow> = on_tx!(
        &mut tx,
        sqlite | c | {
            sqlx::query_as(concat!(
                "SELECT ",
                view_columns!(),
                " FROM jobs WHERE id = $1"
            ))
            .bind(id.as_uuid())
            .fetch_optional(&mut *c)
            .await?
        },
        postgres | c | {
            sqlx::query_as(concat!(
                "SELECT ",
                view_columns!(),
                " FROM jobs WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2"
            ))
            .bind(id.as_uuid())
            .bind(tenant.map(|t| t.as_uuid()))
            .fetch_optional(&mut *c)
            .await?
        }
    );
    tx.commit().await?;
    Ok(row.map(|r| to_view(r, tenant)))
}

/// Why a manual retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such job")]
    NotFound,
    #[error("only dead jobs can be retried; this one is {0}")]
    NotRetryable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Puts a dead job back in the queue with a fresh set of attempts.
pub async fn retry_dead(
    db: &Db,
    tenant: Option<TenantId>,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<JobView, RetryError> {
    let job = get(db, tenant, id).await?.ok_or(RetryError::NotFound)?;
    if job.state != JobState::Dead.as_str() {
        return Err(RetryError::NotRetryable(job.state));
    }
    let mut tx = db.jobs_tx(tenant).await?;
    let n = on_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = 0, run_at = $1, finished_at = NULL, updated_at = $1
             WHERE id = $2 AND state = 'dead'",
        )
        .bind(ms(now))
        .bind(id.as_uuid())
        .execute(&mut *c)
        .await
        .map_err(StoreError::from)?
        .rows_affected()
    });
    tx.commit().await?;
    if n == 0 {
        return Err(RetryError::NotRetryable("no longer dead".into()));
    }
    db.signals.jobs_committed(tenant, {
        let mut l = LaneSet::default();
        if let Ok(lane) = job.lane.parse() {
            l.insert(lane);
        }
        l
    });
    get(db, tenant, id).await?.ok_or(RetryError::NotFound)
}
