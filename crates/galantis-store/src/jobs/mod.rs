//! The durable job queue's storage. See docs/decisions/0003-job-queue.md.
//!
//! Jobs are rows. A tenant's jobs are enqueued inside the tenant transaction
//! whose business write causes them ([`enqueue`]), so both commit or neither
//! does. On PostgreSQL every job is in `public.jobs`; on SQLite a tenant's
//! jobs are in its own file and global jobs in the control database.
//! Workers claim with `FOR UPDATE SKIP LOCKED` (PostgreSQL) or inside a
//! `BEGIN IMMEDIATE` transaction (SQLite's single writer), so no job is ever
//! claimed twice. Times are epoch milliseconds on both engines.

pub mod admin;
pub mod run;
pub mod signals;

pub use crate::pg_notify::JOBS_CHANNEL;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use galantis_core::{JobId, Lane, TenantId, UniqueScope};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::{ControlTx, TenantTx, Tx};
use crate::error::StoreError;
use crate::on_tx;

pub use signals::{JobSource, LaneSet};

/// A job to enqueue, with its kind's policy already applied.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: &'static str,
    pub lane: Lane,
    /// Lower runs first within a lane.
    pub priority: i16,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub payload: Value,
    pub run_at: DateTime<Utc>,
    pub unique: Option<(String, UniqueScope)>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created(JobId),
    /// A job with the same unique key exists; nothing was added.
    Duplicate(JobId),
}

impl NewJob {
    /// The stored form of a job of kind `K`, to run at `run_at`, with the
    /// kind's policy (lane, priority, attempts, timeout, unique key).
    pub fn of<K: galantis_core::JobKind>(
        job: &K,
        run_at: DateTime<Utc>,
    ) -> Result<Self, serde_json::Error> {
        Ok(NewJob {
            kind: K::KIND,
            lane: K::LANE,
            priority: K::PRIORITY,
            max_attempts: K::MAX_ATTEMPTS,
            timeout: K::TIMEOUT,
            payload: serde_json::to_value(job)?,
            run_at,
            unique: job.unique_key().map(|k| (k, K::UNIQUE_SCOPE)),
        })
    }
}

impl Enqueued {
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Unique keys are namespaced by tenant so one index serves all tenants on
/// PostgreSQL (and the SQLite files agree with it).
pub(crate) fn namespaced(tenant: Option<TenantId>, key: &str) -> String {
    match tenant {
        Some(t) => format!("{t}:{key}"),
        None => format!("global:{key}"),
    }
}

/// Enqueues `job` for the transaction's tenant, atomically with whatever
/// else the transaction writes. Workers are woken after commit.
pub async fn enqueue(tx: &mut TenantTx, job: &NewJob) -> Result<Enqueued, StoreError> {
    let tenant = tx.tenant();
    let now = tx.now();
    let r = insert(tx.tx(), Some(tenant), job, now).await?;
    tx.pending.lanes.insert(job.lane);
    Ok(r)
}

/// Enqueues many jobs for the transaction's tenant in one statement (group
/// commit of webhooks). Jobs whose unique key exists are skipped.
pub async fn enqueue_many(tx: &mut TenantTx, jobs: &[NewJob]) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let tenant = tx.tenant();
    let now = ms(tx.now());
    let rows: Vec<(Uuid, Option<String>, bool, i64)> = jobs
        .iter()
        .map(|j| {
            (
                Uuid::now_v7(),
                j.unique.as_ref().map(|(k, _)| namespaced(Some(tenant), k)),
                matches!(j.unique, Some((_, UniqueScope::WhileActive))),
                i64::try_from(j.timeout.as_millis()).unwrap_or(i64::MAX),
            )
        })
        .collect();
    let mut lanes: Vec<Lane> = jobs.iter().map(|j| j.lane).collect();
    lanes.sort();
    lanes.dedup();
    for chunk in crate::db::pow2_chunks(jobs.len()) {
        let (jobs, rows) = (&jobs[chunk.clone()], &rows[chunk]);
        on_tx!(
            tx.tx(),
            sqlite
                | c
                | {
                    let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO jobs (id, kind, lane, priority, state, payload, max_attempts, timeout_ms, run_at,
                                       unique_key, unique_while_active, created_at, updated_at) ",
                );
                    qb.push_values(jobs.iter().zip(rows), |mut b, (j, r)| {
                        b.push_bind(r.0)
                            .push_bind(j.kind)
                            .push_bind(j.lane.as_str())
                            .push_bind(i64::from(j.priority))
                            .push_bind("available")
                            .push_bind(Json(&j.payload))
                            .push_bind(i64::from(j.max_attempts))
                            .push_bind(r.3)
                            .push_bind(ms(j.run_at))
                            .push_bind(&r.1)
                            .push_bind(r.2)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    qb.push(" ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING");
                    qb.build().execute(&mut *c).await?.rows_affected()
                },
            postgres
                | c
                | {
                    let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO public.jobs (id, tenant_id, kind, lane, priority, state, payload, max_attempts, timeout_ms,
                                              run_at, unique_key, unique_while_active, created_at, updated_at) ",
                );
                    qb.push_values(jobs.iter().zip(rows), |mut b, (j, r)| {
                        b.push_bind(r.0)
                            .push_bind(tenant.as_uuid())
                            .push_bind(j.kind)
                            .push_bind(j.lane.as_str())
                            .push_bind(i64::from(j.priority))
                            .push_bind("available")
                            .push_bind(Json(&j.payload))
                            .push_bind(i64::from(j.max_attempts))
                            .push_bind(r.3)
                            .push_bind(ms(j.run_at))
                            .push_bind(&r.1)
                            .push_bind(r.2)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    qb.push(" ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING");
                    qb.build().execute(&mut *c).await?.rows_affected()
                }
        );
    }
    for lane in lanes {
        tx.pending.lanes.insert(lane);
    }
    Ok(())
}

/// Enqueues a global (not tenant-scoped) job.
pub async fn enqueue_global(tx: &mut ControlTx, job: &NewJob) -> Result<Enqueued, StoreError> {
    let now = tx.now();
    let r = insert(&mut tx.0, None, job, now).await?;
    tx.1.lanes.insert(job.lane);
    Ok(r)
}

/// Enqueues a global job in its own transaction.
pub async fn enqueue_global_now(db: &crate::Db, job: &NewJob) -> Result<Enqueued, StoreError> {
    let mut tx = db.control_tx().await?;
    let r = enqueue_global(&mut tx, job).await?;
    tx.commit().await?;
    Ok(r)
}

/// Other nodes hear of the job after commit (`pg_notify`).
async fn insert(
    tx: &mut Tx,
    tenant: Option<TenantId>,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    let id = JobId::new();
    let now = ms(now);
    let key = job.unique.as_ref().map(|(k, _)| namespaced(tenant, k));
    let while_active = matches!(job.unique, Some((_, UniqueScope::WhileActive)));
    let timeout_ms = i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX);
    let inserted = on_tx!(
        tx,
        sqlite
            | c
            | {
                sqlx::query(
                "INSERT INTO jobs (id, kind, lane, priority, state, payload, max_attempts, timeout_ms, run_at,
                                   unique_key, unique_while_active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'available', $5, $6, $7, $8, $9, $10, $11, $11)
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
            )
            .bind(id.as_uuid())
            .bind(job.kind)
            .bind(job.lane.as_str())
            .bind(i64::from(job.priority))
            .bind(Json(&job.payload))
            .bind(i64::from(job.max_attempts))
            .bind(timeout_ms)
            .bind(ms(job.run_at))
            .bind(&key)
            .bind(while_active)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
            },
        postgres
            | c
            | {
                sqlx::query(
                "INSERT INTO public.jobs (id, tenant_id, kind, lane, priority, state, payload, max_attempts, timeout_ms,
                                          run_at, unique_key, unique_while_active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8, $9, $10, $11, $12, $12)
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
            )
            .bind(id.as_uuid())
            .bind(tenant.map(|t| t.as_uuid()))
            .bind(job.kind)
            .bind(job.lane.as_str())
            .bind(i64::from(job.priority))
            .bind(Json(&job.payload))
            .bind(i64::from(job.max_attempts))
            .bind(timeout_ms)
            .bind(ms(job.run_at))
            .bind(&key)
            .bind(while_active)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
            }
    );
    if inserted == 1 {
        return Ok(Enqueued::Created(id));
    }
    let existing: Uuid = on_tx!(
        tx,
        sqlite | c | {
            sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1")
                .bind(&key)
                .fetch_one(&mut *c)
                .await?
        },
        postgres | c | {
            sqlx::query_scalar("SELECT id FROM public.jobs WHERE unique_key = $1")
                .bind(&key)
                .fetch_one(&mut *c)
                .await?
        }
    );
    Ok(Enqueued::Duplicate(JobId::from_uuid(existing)))
}

/// Enqueues `job` for the transaction's tenant, or — when a job with its
/// unique key is waiting — moves that job to `job.run_at` with `job`'s
/// payload: a timer that restarts instead of duplicating. A job with the
/// key that is already running is left alone (its handler must re-check
/// what it acts on). `job` must have a unique key.
pub async fn schedule(tx: &mut TenantTx, job: &NewJob) -> Result<(), StoreError> {
    let Some((key, scope)) = &job.unique else {
        return Err(StoreError::Config(format!(
            "job kind {} has no unique key to reschedule by",
            job.kind
        )));
    };
    let tenant = tx.tenant();
    let key = namespaced(Some(tenant), key);
    let while_active = matches!(scope, UniqueScope::WhileActive);
    let timeout_ms = i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX);
    let now = ms(tx.now());
    on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query(
                "INSERT INTO jobs (id, kind, lane, priority, state, payload, max_attempts, timeout_ms, run_at,
                                   unique_key, unique_while_active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'available', $5, $6, $7, $8, $9, $10, $11, $11)
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO UPDATE
                 SET run_at = excluded.run_at, payload = excluded.payload, updated_at = excluded.updated_at
                 WHERE jobs.state = 'available'",
            )
            .bind(Uuid::now_v7())
            .bind(job.kind)
            .bind(job.lane.as_str())
            .bind(i64::from(job.priority))
            .bind(Json(&job.payload))
            .bind(i64::from(job.max_attempts))
            .bind(timeout_ms)
            .bind(ms(job.run_at))
            .bind(&key)
            .bind(while_active)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
            },
        postgres
            | c
            | {
                sqlx::query(
                "INSERT INTO public.jobs AS j (id, tenant_id, kind, lane, priority, state, payload, max_attempts,
                                               timeout_ms, run_at, unique_key, unique_while_active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8, $9, $10, $11, $12, $12)
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO UPDATE
                 SET run_at = excluded.run_at, payload = excluded.payload, updated_at = excluded.updated_at
                 WHERE j.state = 'available' AND j.tenant_id = excluded.tenant_id",
            )
            .bind(Uuid::now_v7())
            .bind(tenant.as_uuid())
            .bind(job.kind)
            .bind(job.lane.as_str())
            .bind(i64::from(job.priority))
            .bind(Json(&job.payload))
            .bind(i64::from(job.max_attempts))
            .bind(timeout_ms)
            .bind(ms(job.run_at))
            .bind(&key)
            .bind(while_active)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
            }
    );
    tx.pending.lanes.insert(job.lane);
    Ok(())
}

/// Deletes the transaction's tenant's waiting job with unique key `key`
/// (a cancelled timer). A running one is left to finish: its handler
/// re-checks. Returns how many were removed (0 or 1).
pub async fn cancel_unique(tx: &mut TenantTx, key: &str) -> Result<u64, StoreError> {
    let tenant = tx.tenant();
    let key = namespaced(Some(tenant), key);
    Ok(on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query("DELETE FROM jobs WHERE unique_key = $1 AND state = 'available'")
                .bind(&key)
                .execute(&mut *c)
                .await?
                .rows_affected()
        },
        postgres
            | c
            | {
                sqlx::query(
                "DELETE FROM public.jobs WHERE unique_key = $1 AND tenant_id = $2 AND state = 'available'",
            )
            .bind(&key)
            .bind(tenant.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected()
            }
    ))
}

/// Makes the tenant's waiting jobs of `kind` (in `lane`) due now, e.g. held
/// sends after a reconnect. Returns how many. The lane's workers here are
/// woken at commit, other nodes' by NOTIFY.
pub async fn wake_jobs(
    tx: &mut TenantTx,
    kind: &str,
    lane: Lane,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let tenant = tx.tenant().as_uuid();
    tx.pending.lanes.insert(lane);
    Ok(on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query(
                "UPDATE jobs SET run_at = $1 WHERE kind = $2 AND state = 'available' AND run_at > $1",
            )
            .bind(ms(now))
            .bind(kind)
            .execute(&mut *c)
            .await?
            .rows_affected()
            },
        postgres | c | {
            sqlx::query(
                "UPDATE public.jobs SET run_at = $1
                 WHERE tenant_id = $3 AND kind = $2 AND state = 'available' AND run_at > $1",
            )
            .bind(ms(now))
            .bind(kind)
            .bind(tenant)
            .execute(&mut *c)
            .await?
            .rows_affected()
        }
    ))
}

/// A job as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub tenant_id: Option<TenantId>,
    pub kind: String,
    pub lane: String,
    pub priority: i64,
    pub state: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub errors: Value,
    pub payload: Value,
}
