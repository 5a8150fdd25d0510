//! Control and tenant migrations, per engine.
//!
//! Control migrations run once per database. Tenant migrations run once per
//! tenant (its SQLite file, or its PostgreSQL schema with the migrations table
//! inside that schema). `tenants.schema_version` records each tenant's level,
//! so readiness can tell whether every tenant is current without visiting it.
//! Everything here is idempotent: a second run applies nothing.

use futures::{StreamExt, TryStreamExt};
use galantis_core::TenantId;
use serde::Serialize;
use sqlx::migrate::Migrator;

use crate::db::{Backend, Db, DedicatedConn, quoted_schema};
use crate::error::StoreError;
use crate::on_tx;

static SQLITE_CONTROL: Migrator = sqlx::migrate!("migrations/sqlite/control");
static SQLITE_TENANT: Migrator = sqlx::migrate!("migrations/sqlite/tenant");
static PG_CONTROL: Migrator = sqlx::migrate!("migrations/postgres/control");
static PG_TENANT: Migrator = sqlx::migrate!("migrations/postgres/tenant");

fn latest(m: &Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The tenant schema version every tenant should be at.
pub fn latest_tenant_version(db: &Db) -> i64 {
    match db.backend() {
        Backend::Sqlite(_) => latest(&SQLITE_TENANT),
        Backend::Postgres(_) => latest(&PG_TENANT),
    }
}

/// What a `galantis migrate` run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MigrationReport {
    pub control_applied: u64,
    pub tenants_total: u64,
    pub tenants_upgraded: u64,
    pub tenant_version: i64,
}

async fn applied_count(db: &Db) -> Result<u64, StoreError> {
    // The table does not exist before the first run; that means zero.
    let q = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
    let n: Result<i64, sqlx::Error> = match db.backend() {
        Backend::Sqlite(s) => sqlx::query_scalar(q).fetch_one(&s.control).await,
        Backend::Postgres(p) => sqlx::query_scalar(q).fetch_one(p.pool()).await,
    };
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Applies pending control migrations; returns how many were applied.
pub async fn migrate_control(db: &Db) -> Result<u64, StoreError> {
    let before = applied_count(db).await?;
    match db.backend() {
        Backend::Sqlite(s) => SQLITE_CONTROL.run(&s.control).await?,
        Backend::Postgres(p) => PG_CONTROL.run(p.pool()).await?,
    }
    Ok(applied_count(db).await? - before)
}

/// Creates (when `create`) and migrates one tenant's storage. Returns the
/// version it is at afterwards.
pub(crate) async fn migrate_tenant_storage(
    db: &Db,
    tenant: TenantId,
    create: bool,
) -> Result<i64, StoreError> {
    let conn = db.dedicated_tenant_conn(tenant, create).await?;
    let result = match conn {
        DedicatedConn::Sqlite(mut c) => {
            let r = SQLITE_TENANT.run(&mut c).await;
            DedicatedConn::Sqlite(c).close().await?;
            r.map(|_| latest(&SQLITE_TENANT))
        }
        DedicatedConn::Postgres(mut c) => {
            let schema = quoted_schema(tenant);
            let mut m = Migrator::with_migrations(PG_TENANT.iter().cloned().collect());
            m.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
            // sqlx's own lock is one per database, which would serialise all
            // tenants; a lock per schema lets tenants migrate in parallel while
            // two `galantis migrate` runs still never touch one tenant at once.
            m.set_locking(false);
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(&schema)
                .execute(&mut c)
                .await?;
            let r = m.run(&mut c).await;
            DedicatedConn::Postgres(c).close().await?;
            r.map(|_| latest(&PG_TENANT))
        }
    };
    Ok(result?)
}

/// Migrates the control database, then every tenant, `concurrency` at a time,
/// reading tenants in pages of `batch_size`. Safe to re-run.
pub async fn migrate_all(
    db: &Db,
    batch_size: u32,
    concurrency: usize,
) -> Result<MigrationReport, StoreError> {
    let control_applied = migrate_control(db).await?;
    let target = latest_tenant_version(db);
    let mut report = MigrationReport {
        control_applied,
        tenant_version: target,
        ..Default::default()
    };
    let mut after: Option<TenantId> = None;
    loop {
        let page = tenant_versions_page(db, after, batch_size).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        report.tenants_total += page.len() as u64;
        let upgraded: Vec<bool> = futures::stream::iter(page)
            .map(|(tenant, version)| async move {
                let now = migrate_tenant_storage(db, tenant, false).await?;
                if now != version {
                    set_schema_version(db, tenant, now).await?;
                }
                Ok::<_, StoreError>(now != version)
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        report.tenants_upgraded += upgraded.into_iter().filter(|u| *u).count() as u64;
    }
    Ok(report)
}

async fn tenant_versions_page(
    db: &Db,
    after: Option<TenantId>,
    limit: u32,
) -> Result<Vec<(TenantId, i64)>, StoreError> {
    let mut tx = db.control_read().await?;
    let after = after.map(|t| t.as_uuid()).unwrap_or_default();
    let rows: Vec<(uuid::Uuid, i64)> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as("SELECT id, schema_version FROM tenants WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
    });
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(id, v)| (TenantId::from_uuid(id), v))
        .collect())
}

async fn set_schema_version(db: &Db, tenant: TenantId, version: i64) -> Result<(), StoreError> {
    let mut tx = db.control_tx().await?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query("UPDATE tenants SET schema_version = $1 WHERE id = $2")
            .bind(version)
            .bind(tenant.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await
}

/// Readiness: control migrations all applied and no tenant behind.
pub async fn migrations_current(db: &Db) -> Result<bool, StoreError> {
    let (control_latest, applied) = match db.backend() {
        Backend::Sqlite(_) => (
            SQLITE_CONTROL.iter().count() as u64,
            applied_count(db).await?,
        ),
        Backend::Postgres(_) => (PG_CONTROL.iter().count() as u64, applied_count(db).await?),
    };
    if applied < control_latest {
        return Ok(false);
    }
    let target = latest_tenant_version(db);
    let q = "SELECT COUNT(*) FROM tenants WHERE schema_version < $1";
    let behind: i64 = match db.backend() {
        Backend::Sqlite(s) => {
            sqlx::query_scalar(q)
                .bind(target)
                .fetch_one(&s.control)
                .await?
        }
        Backend::Postgres(p) => {
            sqlx::query_scalar(q)
                .bind(target)
                .fetch_one(p.pool())
                .await?
        }
    };
    Ok(behind == 0)
}
