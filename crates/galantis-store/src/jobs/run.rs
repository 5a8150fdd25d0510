//! Claiming jobs and recording their outcomes. Every outcome update is
//! guarded by `state = 'running' AND claimed_by = <worker>`: a worker whose
//! job was rescued by someone else learns it (the update matches nothing)
//! instead of overwriting the newer state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::{JobId, Lane, TenantId};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::signals::JobSource;
use super::{from_ms, ms};
use crate::db::{Db, Engine, TenantTx, Tx};
use crate::error::StoreError;
use crate::{on_conn, on_tx};

/// A job a worker holds.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub tenant: Option<TenantId>,
    pub kind: String,
    pub lane: Lane,
    pub priority: i64,
    pub payload: Value,
    /// This run's attempt number, starting at 1.
    pub attempt: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub worker: String,
}

type ClaimRow = (
    Uuid,
    String,
    String,
    i64,
    Json<Value>,
    i64,
    i64,
    i64,
    i64,
    i64,
);
/// The same, plus the tenant (PostgreSQL keeps every tenant's jobs in one table).
type PgClaimRow = (
    Uuid,
    String,
    String,
    i64,
    Json<Value>,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<Uuid>,
);

fn to_claimed(r: ClaimRow, tenant: Option<TenantId>, worker: &str) -> Option<ClaimedJob> {
    Some(ClaimedJob {
        id: JobId::from_uuid(r.0),
        tenant,
        kind: r.1,
        lane: r.2.parse().ok()?,
        priority: r.3,
        payload: r.4.0,
        attempt: u32::try_from(r.5).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.6).unwrap_or(1),
        timeout: Duration::from_millis(u64::try_from(r.7).unwrap_or(0)),
        run_at: from_ms(r.8),
        created_at: from_ms(r.9),
        worker: worker.to_owned(),
    })
}

macro_rules! claim_sql {
    ($kinds:literal, $lock:literal, $tenant_col:literal) => {
        concat!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, claimed_by = $1,
                    heartbeat_at = $2, updated_at = $2
             WHERE id IN (SELECT id FROM jobs WHERE lane = $3 AND state = 'available' AND run_at <= $2
                          AND ",
            $kinds,
            "
                          ORDER BY priority, run_at, id LIMIT $4 ",
            $lock,
            ")
             RETURNING id, kind, lane, priority, payload, attempt, max_attempts, timeout_ms, run_at, created_at",
            $tenant_col
        )
    };
}

/// Claims up to `limit` due jobs of `lane` whose kind is one of `kinds`
/// (the kinds this node has handlers for), highest priority and oldest
/// first. Jobs of other kinds stay pending for a node that knows them: in a
/// rolling deploy an old node must not take, and so cannot kill, a new kind.
/// On SQLite the known sources are visited round-robin from a rotating
/// start, so one busy tenant cannot starve the others.
pub async fn claim(
    db: &Db,
    lane: Lane,
    kinds: &[&str],
    worker: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedJob>, StoreError> {
    if limit == 0 || kinds.is_empty() {
        return Ok(Vec::new());
    }
    if db.engine() == Engine::Postgres {
        return claim_from(db, JobSource::Global, lane, kinds, worker, now, limit).await;
    }
    let sources = db.signals.sources();
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let start = db.signals.next_cursor(lane) % sources.len();
    let mut out = Vec::new();
    for (source, epoch) in sources.iter().cycle().skip(start).take(sources.len()) {
        let want = limit - out.len() as u32;
        match claim_from(db, *source, lane, kinds, worker, now, want).await {
            Ok(got) if got.is_empty() => {
                if !has_pending(db, *source).await.unwrap_or(true) {
                    db.signals.forget_source(*source, *epoch);
                }
            }
            Ok(got) => out.extend(got),
            Err(e) => {
                // A tenant whose storage is gone (erased shop) must not
                // block the lane for everyone else.
                tracing::warn!(source = ?source, error = %e, "cannot claim from job source; skipping it");
                db.signals.forget_source(*source, *epoch);
            }
        }
        if out.len() as u32 >= limit {
            break;
        }
    }
    Ok(out)
}

async fn claim_from(
    db: &Db,
    source: JobSource,
    lane: Lane,
    kinds: &[&str],
    worker: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedJob>, StoreError> {
    // One statement in autocommit: one round trip on PostgreSQL, and on
    // SQLite the UPDATE holds the write lock from its start (with the
    // file's writer lock held here), like BEGIN IMMEDIATE did.
    let mut conn = db.jobs_conn(source.tenant()).await?;
    let mut jobs: Vec<ClaimedJob> = on_conn!(
        &mut conn,
        sqlite | c | {
            let rows: Vec<ClaimRow> = sqlx::query_as(claim_sql!(
                "kind IN (SELECT value FROM json_each($5))",
                "",
                ""
            ))
            .bind(worker)
            .bind(ms(now))
            .bind(lane.as_str())
            .bind(i64::from(limit))
            .bind(Json(kinds))
            .fetch_all(&mut *c)
            .await?;
            rows.into_iter()
                .filter_map(|r| to_claimed(r, source.tenant(), worker))
                .collect()
        },
        postgres | c | {
            let rows: Vec<PgClaimRow> = sqlx::query_as(claim_sql!(
                "kind = ANY($5)",
                "FOR UPDATE SKIP LOCKED",
                ", tenant_id"
            ))
            .bind(worker)
            .bind(ms(now))
            .bind(lane.as_str())
            .bind(i64::from(limit))
            .bind(kinds)
            .fetch_all(&mut *c)
            .await?;
            rows.into_iter()
                .filter_map(|r| {
                    let tenant = r.10.map(TenantId::from_uuid);
                    to_claimed(
                        (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9),
                        tenant,
                        worker,
                    )
                })
                .collect()
        }
    );
    conn.release();
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(jobs)
}

/// Whether a source still holds jobs that are waiting or running.
async fn has_pending(db: &Db, source: JobSource) -> Result<bool, StoreError> {
    let mut conn = db.jobs_conn(source.tenant()).await?;
    let n: i64 = on_conn!(&mut conn, |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE state IN ('available', 'running') LIMIT 1) x")
            .fetch_one(&mut *c)
            .await?
    });
    conn.release();
    Ok(n > 0)
}

macro_rules! complete_sql {
    ($table:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET state = 'completed', finished_at = $1, updated_at = $1, claimed_by = NULL,
                  unique_key = CASE WHEN unique_while_active THEN NULL ELSE unique_key END
              WHERE id = $2 AND state = 'running' AND claimed_by = $3"
        )
    };
}

async fn complete_on(
    tx: &mut Tx,
    job: &ClaimedJob,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(
        tx,
        sqlite | c | {
            sqlx::query(complete_sql!("jobs"))
                .bind(ms(now))
                .bind(job.id.as_uuid())
                .bind(&job.worker)
                .execute(&mut *c)
                .await?
                .rows_affected()
        },
        postgres | c | {
            sqlx::query(complete_sql!("public.jobs"))
                .bind(ms(now))
                .bind(job.id.as_uuid())
                .bind(&job.worker)
                .execute(&mut *c)
                .await?
                .rows_affected()
        }
    );
    Ok(n == 1)
}

/// Marks the job completed. `false`: the claim was lost (rescued elsewhere).
pub async fn complete(db: &Db, job: &ClaimedJob, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut conn = db.jobs_conn(job.tenant).await?;
    let n = on_conn!(
        &mut conn,
        sqlite | c | {
            sqlx::query(complete_sql!("jobs"))
                .bind(ms(now))
                .bind(job.id.as_uuid())
                .bind(&job.worker)
                .execute(&mut *c)
                .await?
                .rows_affected()
        },
        postgres | c | {
            sqlx::query(complete_sql!("public.jobs"))
                .bind(ms(now))
                .bind(job.id.as_uuid())
                .bind(&job.worker)
                .execute(&mut *c)
                .await?
                .rows_affected()
        }
    );
    conn.release();
    Ok(n == 1)
}

/// Marks the job completed inside the tenant transaction that performs its
/// effect, so effect and completion commit together: a crash or a lost claim
/// can then never apply the effect twice. `false` means the claim was lost;
/// the caller must roll back.
pub async fn complete_in(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if job.tenant != Some(tx.tenant()) {
        return Err(StoreError::Config(format!(
            "job {} does not belong to tenant {}",
            job.id,
            tx.tenant()
        )));
    }
    complete_on(tx.tx(), job, now).await
}

/// [`complete_in`] for a batch of jobs of the transaction's tenant, all
/// claimed by one worker, in one statement. Returns how many were
/// completed: fewer than `jobs.len()` means some claim was lost, and the
/// caller must then not commit.
pub async fn complete_all_in(
    tx: &mut TenantTx,
    jobs: &[&ClaimedJob],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let Some(first) = jobs.first() else {
        return Ok(0);
    };
    if let Some(j) = jobs
        .iter()
        .find(|j| j.tenant != Some(tx.tenant()) || j.worker != first.worker)
    {
        return Err(StoreError::Config(format!(
            "job {} is not of tenant {} and worker {}",
            j.id,
            tx.tenant(),
            first.worker
        )));
    }
    const SET: &str =
        "SET state = 'completed', finished_at = $1, updated_at = $1, claimed_by = NULL,
            unique_key = CASE WHEN unique_while_active THEN NULL ELSE unique_key END
         WHERE state = 'running' AND claimed_by = $2";
    let n = on_tx!(
        tx.tx(),
        sqlite | c | {
            let ids = (0..jobs.len())
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("UPDATE jobs {SET} AND id IN ({ids})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(&first.worker);
            for j in jobs {
                q = q.bind(j.id.as_uuid());
            }
            q.execute(&mut *c).await?.rows_affected()
        },
        postgres | c | {
            let ids: Vec<Uuid> = jobs.iter().map(|j| j.id.as_uuid()).collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE public.jobs {SET} AND id = ANY($3)"
            )))
            .bind(ms(now))
            .bind(&first.worker)
            .bind(ids)
            .execute(&mut *c)
            .await?
            .rows_affected()
        }
    );
    Ok(n)
}

fn error_entry(job: &ClaimedJob, now: DateTime<Utc>, error: &str) -> Value {
    json!({ "attempt": job.attempt, "at": now, "error": truncate(error) })
}

pub(crate) fn truncate(error: &str) -> String {
    const MAX: usize = 2000;
    if error.len() <= MAX {
        return error.to_owned();
    }
    let mut end = MAX;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// Records a failed attempt. With `retry_at` the job waits and runs again;
/// without, it is dead (attempts exhausted or a permanent error).
pub async fn fail(
    db: &Db,
    job: &ClaimedJob,
    now: DateTime<Utc>,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    let entry = Json(error_entry(job, now, error));
    let error = truncate(error);
    let mut conn = db.jobs_conn(job.tenant).await?;
    let (state, run_at, finished) = match retry_at {
        Some(at) => ("available", ms(at), None),
        None => ("dead", ms(now), Some(ms(now))),
    };
    let n = on_conn!(
        &mut conn,
        sqlite
            | c
            | {
                sqlx::query(
                "UPDATE jobs SET state = $1, run_at = $2, finished_at = $3, claimed_by = NULL, heartbeat_at = NULL,
                        last_error = $4, errors = json_insert(errors, '$[#]', json($5)), updated_at = $6,
                        unique_key = CASE WHEN $1 = 'dead' AND unique_while_active THEN NULL ELSE unique_key END
                 WHERE id = $7 AND state = 'running' AND claimed_by = $8",
            )
            .bind(state).bind(run_at).bind(finished).bind(&error).bind(&entry).bind(ms(now))
            .bind(job.id.as_uuid()).bind(&job.worker)
            .execute(&mut *c).await?.rows_affected()
            },
        postgres
            | c
            | {
                sqlx::query(
                "UPDATE jobs SET state = $1, run_at = $2, finished_at = $3, claimed_by = NULL, heartbeat_at = NULL,
                        last_error = $4, errors = errors || jsonb_build_array($5::jsonb), updated_at = $6,
                        unique_key = CASE WHEN $1 = 'dead' AND unique_while_active THEN NULL ELSE unique_key END
                 WHERE id = $7 AND state = 'running' AND claimed_by = $8",
            )
            .bind(state).bind(run_at).bind(finished).bind(&error).bind(&entry).bind(ms(now))
            .bind(job.id.as_uuid()).bind(&job.worker)
            .execute(&mut *c).await?.rows_affected()
            }
    );
    conn.release();
    Ok(n == 1)
}

/// Puts the job back to run at `until` without counting this attempt (rate
/// limit waits, shutdown release).
pub async fn snooze(
    db: &Db,
    job: &ClaimedJob,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut conn = db.jobs_conn(job.tenant).await?;
    let n = on_conn!(&mut conn, |c| {
        sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1, run_at = $1, claimed_by = NULL,
                    heartbeat_at = NULL, updated_at = $2
             WHERE id = $3 AND state = 'running' AND claimed_by = $4",
        )
        .bind(ms(until))
        .bind(ms(now))
        .bind(job.id.as_uuid())
        .bind(&job.worker)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    conn.release();
    if n == 1 {
        db.signals.mark_source(JobSource::from_tenant(job.tenant));
    }
    Ok(n == 1)
}

/// Records that the worker is still alive for each of `jobs`.
///
/// On PostgreSQL one statement per worker that skips rows another
/// transaction holds: such a job is being completed (or snoozed) by its own
/// worker right now, and a rescue would have to wait for that transaction
/// too. Waiting for them instead — while holding the rows already updated —
/// made every batch completing one of those jobs queue behind the
/// heartbeat, every 5 s.
pub async fn heartbeat(db: &Db, jobs: &[ClaimedJob], now: DateTime<Utc>) -> Result<(), StoreError> {
    if db.engine() == Engine::Postgres {
        let mut by_worker: std::collections::BTreeMap<&str, Vec<uuid::Uuid>> = Default::default();
        for j in jobs {
            by_worker.entry(&j.worker).or_default().push(j.id.as_uuid());
        }
        if let crate::db::AutoConn::Postgres(c) = &mut db.jobs_conn(None).await? {
            for (worker, ids) in by_worker {
                sqlx::query(
                    "UPDATE jobs SET heartbeat_at = $1 WHERE id IN (
                         SELECT id FROM jobs WHERE id = ANY($2) AND state = 'running' AND claimed_by = $3
                         FOR UPDATE SKIP LOCKED)",
                )
                .bind(ms(now))
                .bind(&ids)
                .bind(worker)
                .execute(&mut **c)
                .await?;
            }
        }
        return Ok(());
    }
    let mut by_source: std::collections::BTreeMap<JobSource, Vec<&ClaimedJob>> = Default::default();
    for j in jobs {
        let key = if db.engine() == Engine::Postgres {
            JobSource::Global
        } else {
            JobSource::from_tenant(j.tenant)
        };
        by_source.entry(key).or_default().push(j);
    }
    for (source, jobs) in by_source {
        let mut tx = db.jobs_tx(source.tenant()).await?;
        for j in jobs {
            on_tx!(&mut tx, |c| {
                sqlx::query("UPDATE jobs SET heartbeat_at = $1 WHERE id = $2 AND state = 'running' AND claimed_by = $3")
                    .bind(ms(now))
                    .bind(j.id.as_uuid())
                    .bind(&j.worker)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
        }
        tx.commit().await?;
    }
    Ok(())
}
