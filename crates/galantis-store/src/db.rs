//! One store, two engines.
//!
//! [`Db`] is either embedded SQLite (a control database plus one file per
//! tenant, WAL mode) or PostgreSQL (a `public` control schema plus one schema
//! per tenant). Repository code is written once against [`Tx`] with the
//! [`on_tx!`] macro, which type-checks the same body for both engines; only
//! where dialects really differ does a repository write two statements.
//!
//! Tenant isolation is structural: tenant tables are reachable only through a
//! [`TenantTx`], which can only be made by [`Db::tenant_tx`]. On PostgreSQL its
//! first statement pins `search_path` to the tenant's schema for the
//! transaction; on SQLite it is a transaction on the tenant's own file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use galantis_core::{Clock, SystemClock, TenantId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Sqlite, SqlitePool};

use crate::error::StoreError;
use crate::jobs::signals::{JobSignals, LaneSet};

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://…` selects PostgreSQL; `None` selects SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub max_connections: u32,
}

#[derive(Clone)]
pub struct Db {
    backend: Arc<Backend>,
    pub(crate) signals: Arc<JobSignals>,
    /// The one clock: stamps the store writes that are not given a time
    /// (job bookkeeping, control rows), so a test's clock rules them too.
    clock: Arc<RwLock<Arc<dyn Clock>>>,
    events: Arc<crate::events::EventBus>,
    /// Resolved API tokens, for at most 2 s (see `control::auth_cache`).
    pub(crate) auth_cache: Arc<crate::control::auth_cache::AuthCache>,
    /// Announces commits to other nodes (PostgreSQL only; `pg_notify`).
    notifier: Option<Arc<crate::pg_notify::PgNotifier>>,
}

pub(crate) enum Backend {
    Sqlite(SqliteBackend),
    Postgres(Arc<crate::pg_conns::PgConns>),
}

pub(crate) struct SqliteBackend {
    pub(crate) dir: PathBuf,
    pub(crate) control: SqlitePool,
    tenants: DashMap<TenantId, SqlitePool>,
    /// One writer per file at a time, queued in-process. SQLite allows one
    /// writer anyway; waiting here (fair, no polling) instead of in SQLite's
    /// busy handler (which sleeps and retries) keeps latency low under load.
    writers: DashMap<Option<TenantId>, Arc<tokio::sync::Mutex<()>>>,
}

pub type WriterGuard = tokio::sync::OwnedMutexGuard<()>;

impl SqliteBackend {
    async fn writer(&self, file: Option<TenantId>) -> WriterGuard {
        let lock = self.writers.entry(file).or_default().clone();
        lock.lock_owned().await
    }

    async fn begin_write(
        &self,
        pool: &SqlitePool,
        file: Option<TenantId>,
    ) -> Result<Tx, StoreError> {
        let guard = self.writer(file).await;
        Ok(Tx::Sqlite(
            pool.begin_with("BEGIN IMMEDIATE").await?,
            Some(guard),
        ))
    }
}

/// An open transaction on either engine. Repository bodies reach the
/// connection through [`on_tx!`].
pub enum Tx {
    /// A SQLite write transaction also holds its file's in-process writer
    /// lock (see `SqliteBackend::writer`).
    Sqlite(sqlx::Transaction<'static, Sqlite>, Option<WriterGuard>),
    Postgres(crate::pg_conns::PgTx),
}

/// Runs `$body` with `$c` bound to the transaction's connection; the body is
/// compiled once per engine, so it must be valid SQL and types for both.
/// The two-body form is for statements whose dialects differ.
#[macro_export]
#[doc(hidden)]
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(t, _) => {
                let $c = &mut **t;
                $body
            }
            $crate::db::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
    ($tx:expr, sqlite |$s:ident| $sbody:expr, postgres |$p:ident| $pbody:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(t, _) => {
                let $s = &mut **t;
                $sbody
            }
            $crate::db::Tx::Postgres(t) => {
                let $p = &mut **t;
                $pbody
            }
        }
    };
}
pub use on_tx;

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t, _guard) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t, _guard) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        match self {
            Tx::Sqlite(..) => Engine::Sqlite,
            Tx::Postgres(_) => Engine::Postgres,
        }
    }
}

/// A transaction on the control tables (tenants, members, tokens, keyring,
/// global jobs).
pub struct ControlTx(pub(crate) Tx, pub(crate) PendingSignals);

impl ControlTx {
    /// Now, by the store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.1.now()
    }

    /// Commits, then wakes the workers of every lane a job was enqueued in.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.0.commit().await?;
        self.1.fire(None);
        Ok(())
    }
}

/// Lanes that received jobs in a transaction: their workers are woken only
/// after the commit, when the jobs are visible.
/// Domain events recorded in it are published then too.
pub(crate) struct PendingSignals {
    signals: Arc<JobSignals>,
    pub(crate) lanes: LaneSet,
    pub(crate) events: crate::events::PendingEvents,
    clock: Arc<dyn Clock>,
    notifier: Option<Arc<crate::pg_notify::PgNotifier>>,
}

impl PendingSignals {
    fn new(db: &Db) -> Self {
        Self {
            signals: db.signals.clone(),
            lanes: LaneSet::default(),
            events: crate::events::PendingEvents::new(&db.events),
            clock: db.clock(),
            notifier: db.notifier.clone(),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn fire(&mut self, tenant: Option<TenantId>) {
        if let Some(notifier) = &self.notifier {
            let event = tenant.zip(self.events.announced_seq());
            notifier.post(self.lanes, event);
        }
        if !self.lanes.is_empty() {
            self.signals.jobs_committed(tenant, self.lanes);
        }
        self.events.publish();
    }
}

/// A transaction scoped to one tenant: the only way to reach tenant tables.
///
/// Repository functions take `&mut TenantTx` first, so calling one without a
/// tenant scope does not compile; neither can a `TenantTx` be built outside
/// this crate, because its fields are private:
///
/// ```compile_fail
/// use galantis_store::{TenantTx, tenant::settings};
/// async fn leak(pool: &sqlx::SqlitePool) {
///     let mut conn = pool.acquire().await.unwrap();
///     // error: expected `&mut TenantTx`, found `&mut PoolConnection<Sqlite>`
///     settings::get(&mut conn, "k").await.unwrap();
/// }
/// ```
///
/// ```compile_fail
/// use galantis_store::TenantTx;
/// // error: fields of `TenantTx` are private
/// let tx = TenantTx { tenant: galantis_core::TenantId::new(), tx: todo!() };
/// ```
pub struct TenantTx {
    tenant: TenantId,
    tx: Tx,
    pub(crate) pending: PendingSignals,
    /// The tenant lock is held (PostgreSQL): taking it again would be a
    /// round trip for nothing (a batch of webhook events takes it per event).
    tenant_locked: bool,
    /// Some advisory lock (tenant or keyed) is held (PostgreSQL).
    holds_locks: bool,
    /// Whether lock requests wait (the default) or fail at once with
    /// [`StoreError::LockBusy`] when another transaction holds the lock.
    wait_for_locks: bool,
}

impl TenantTx {
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub(crate) fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    pub fn engine(&self) -> Engine {
        self.tx.engine()
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.pending.now()
    }

    /// Serialises this transaction with every other that calls it for the
    /// same tenant, until commit. SQLite's `BEGIN IMMEDIATE` already does;
    /// on PostgreSQL it takes a transaction-scoped advisory lock. Used where
    /// read-then-write sequences (upserts ordered by version) must not
    /// interleave.
    pub async fn serialize_tenant_writes(&mut self) -> Result<(), StoreError> {
        if let Tx::Postgres(t) = &mut self.tx
            && !self.tenant_locked
        {
            if self.wait_for_locks {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(self.tenant.schema_name())
                    .execute(&mut **t)
                    .await?;
            } else {
                let got: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                        .bind(self.tenant.schema_name())
                        .fetch_one(&mut **t)
                        .await?;
                if !got {
                    return Err(StoreError::LockBusy("the tenant's write lock".into()));
                }
            }
            self.tenant_locked = true;
            self.holds_locks = true;
        }
        Ok(())
    }

    /// Whether this transaction holds an advisory lock (tenant or keyed;
    /// always `false` on SQLite, whose single writer needs none).
    pub fn holds_locks(&self) -> bool {
        self.holds_locks
    }

    /// Makes later lock requests wait (`true`, the default) or fail at once
    /// with [`StoreError::LockBusy`] when the lock is taken (`false`). A
    /// batch that runs several units of work in one transaction turns
    /// waiting off once it holds locks: waiting then, in an order no one
    /// agreed on, is how two batches deadlock.
    pub fn wait_for_locks(&mut self, wait: bool) {
        self.wait_for_locks = wait;
    }

    /// Whether lock requests wait (see [`Self::wait_for_locks`]).
    pub(crate) fn waits_for_locks(&self) -> bool {
        self.wait_for_locks
    }

    /// Serialises this transaction with every other that calls it with the
    /// same `key` for the same tenant, until commit — a lock on one thing
    /// (a wamid), where [`serialize_tenant_writes`](Self::serialize_tenant_writes)
    /// locks the whole tenant. SQLite's single writer already serialises;
    /// on PostgreSQL it is a transaction-scoped advisory lock in the two-key
    /// space (`(hash of schema, hash of key)`), which never conflicts with
    /// the tenant lock's one-key space.
    pub async fn serialize_on(&mut self, key: &str) -> Result<(), StoreError> {
        if !self.wait_for_locks {
            return match self.try_serialize_on(key).await? {
                true => Ok(()),
                false => Err(StoreError::LockBusy(key.to_owned())),
            };
        }
        if let Tx::Postgres(t) = &mut self.tx {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
                .bind(self.tenant.schema_name())
                .bind(key)
                .execute(&mut **t)
                .await?;
            self.holds_locks = true;
        }
        Ok(())
    }

    /// [`serialize_on`](Self::serialize_on) without waiting: `false` when
    /// another transaction holds `key` (nothing is taken then). For
    /// transactions that hold several such locks and must never wait for
    /// one (group commits).
    pub async fn try_serialize_on(&mut self, key: &str) -> Result<bool, StoreError> {
        if let Tx::Postgres(t) = &mut self.tx {
            let got: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2))")
                    .bind(self.tenant.schema_name())
                    .bind(key)
                    .fetch_one(&mut **t)
                    .await?;
            self.holds_locks |= got;
            return Ok(got);
        }
        Ok(true)
    }

    /// Commits, then wakes the workers of every lane a job was enqueued in.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        crate::events::number_pending(&mut self).await?;
        self.tx.commit().await?;
        self.pending.fire(Some(self.tenant));
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await
    }
}

fn sqlite_options(path: &Path, create: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL in WAL mode survives a process crash (kill -9) without losing
        // committed transactions; only an OS crash or power loss can lose the
        // last ones, which is the usual trade-off for an embedded default.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .disable_statement_logging()
}

impl Db {
    /// Opens the store. SQLite creates its directory and control database
    /// when missing; PostgreSQL must be reachable. Does not migrate.
    pub async fn connect(config: &DbConfig) -> Result<Self, StoreError> {
        let mut notifier = None;
        let backend = match &config.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let opts: PgConnectOptions = url
                    .parse::<PgConnectOptions>()
                    .map_err(|e| {
                        StoreError::Config(format!(
                            "DATABASE_URL is not a valid PostgreSQL URL: {e}"
                        ))
                    })?
                    .disable_statement_logging();
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections + crate::pg_conns::DIRECT_RESERVE)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(|e| {
                        StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
                    })?;
                notifier = Some(crate::pg_notify::PgNotifier::new(pool.clone()));
                Backend::Postgres(crate::pg_conns::PgConns::new(pool, config.max_connections))
            }
            Some(_) => {
                return Err(StoreError::Config(
                    "DATABASE_URL must start with postgres:// (leave it unset for embedded SQLite)"
                        .into(),
                ));
            }
            None => {
                let dir = config.data_dir.clone();
                crate::files::create_private_dir(&dir.join("tenants")).map_err(|e| {
                    StoreError::Config(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let control = SqlitePoolOptions::new()
                    .max_connections(config.max_connections.clamp(1, 16))
                    // A local file cannot drop a connection the way a network
                    // can; pinging on every acquire is a wasted round trip.
                    .test_before_acquire(false)
                    .connect_with(sqlite_options(&dir.join("control.db"), true))
                    .await
                    .map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot open {}: {e}",
                            dir.join("control.db").display()
                        ))
                    })?;
                Backend::Sqlite(SqliteBackend {
                    dir,
                    control,
                    tenants: DashMap::new(),
                    writers: DashMap::new(),
                })
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
            signals: Arc::new(JobSignals::default()),
            clock: Arc::new(RwLock::new(Arc::new(SystemClock))),
            events: Arc::default(),
            auth_cache: Arc::default(),
            notifier,
        })
    }

    /// Replaces the clock of this store and of every clone of it (the
    /// application's clock; a test's fixed clock).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }

    /// This process's cache of resolved API tokens.
    pub fn auth_cache(&self) -> &crate::control::auth_cache::AuthCache {
        &self.auth_cache
    }

    /// Domain event subscribers and the in-process feed of committed events.
    pub fn events(&self) -> &crate::events::EventBus {
        &self.events
    }

    pub fn engine(&self) -> Engine {
        match &*self.backend {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Where SQLite keeps its files (`None` on PostgreSQL).
    pub fn data_dir(&self) -> Option<&Path> {
        match &*self.backend {
            Backend::Sqlite(s) => Some(&s.dir),
            Backend::Postgres(_) => None,
        }
    }

    /// A write transaction on the control tables. On SQLite it begins
    /// IMMEDIATE, taking the write lock up front so two writers never deadlock
    /// on a lock upgrade.
    pub async fn control_tx(&self) -> Result<ControlTx, StoreError> {
        Ok(ControlTx(
            match &*self.backend {
                Backend::Sqlite(s) => s.begin_write(&s.control, None).await?,
                Backend::Postgres(p) => Tx::Postgres(p.begin(None, "BEGIN").await?),
            },
            PendingSignals::new(self),
        ))
    }

    /// A read transaction on the control tables (no write lock on SQLite).
    pub async fn control_read(&self) -> Result<ControlTx, StoreError> {
        Ok(ControlTx(
            match &*self.backend {
                Backend::Sqlite(s) => Tx::Sqlite(s.control.begin().await?, None),
                Backend::Postgres(p) => Tx::Postgres(p.begin(None, "BEGIN").await?),
            },
            PendingSignals::new(self),
        ))
    }

    fn tenant_pool(s: &SqliteBackend, tenant: TenantId) -> SqlitePool {
        s.tenants
            .entry(tenant)
            .or_insert_with(|| {
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .min_connections(0)
                    .test_before_acquire(false)
                    .idle_timeout(Duration::from_secs(120))
                    .connect_lazy_with(sqlite_options(&tenant_file(&s.dir, tenant), false))
            })
            .clone()
    }

    /// A write transaction scoped to `tenant`.
    pub async fn tenant_tx(&self, tenant: TenantId) -> Result<TenantTx, StoreError> {
        let tx = match &*self.backend {
            Backend::Sqlite(s) => {
                s.begin_write(&Self::tenant_pool(s, tenant), Some(tenant))
                    .await?
            }
            Backend::Postgres(p) => {
                // BEGIN and the tenant's search path in one round trip (one
                // simple query; the schema name is hex digits only). `SET
                // LOCAL` ends with the transaction, so the pooled connection
                // is clean again after commit or rollback.
                let begin = format!("BEGIN; SET LOCAL search_path TO {}", quoted_schema(tenant));
                Tx::Postgres(p.begin(Some(tenant), &begin).await?)
            }
        };
        Ok(TenantTx {
            tenant,
            tx,
            pending: PendingSignals::new(self),
            tenant_locked: false,
            holds_locks: false,
            wait_for_locks: true,
        })
    }

    /// A read transaction scoped to `tenant` (no write lock on SQLite).
    pub async fn tenant_read(&self, tenant: TenantId) -> Result<TenantTx, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => Ok(TenantTx {
                tenant,
                tx: Tx::Sqlite(Self::tenant_pool(s, tenant).begin().await?, None),
                pending: PendingSignals::new(self),
                tenant_locked: false,
                holds_locks: false,
                wait_for_locks: true,
            }),
            Backend::Postgres(_) => self.tenant_tx(tenant).await,
        }
    }

    /// A write transaction on the store that holds `tenant`'s jobs (the
    /// tenant's file on SQLite, control database for global jobs; the one
    /// database on PostgreSQL). For the queue's own bookkeeping only.
    pub(crate) async fn jobs_tx(&self, tenant: Option<TenantId>) -> Result<Tx, StoreError> {
        Ok(match (&*self.backend, tenant) {
            (Backend::Sqlite(s), None) => s.begin_write(&s.control, None).await?,
            (Backend::Sqlite(s), Some(t)) => {
                s.begin_write(&Self::tenant_pool(s, t), Some(t)).await?
            }
            (Backend::Postgres(p), _) => Tx::Postgres(p.begin(None, "BEGIN").await?),
        })
    }

    /// A connection to the store that holds `tenant`'s jobs, for one
    /// statement in autocommit mode (a claim, a completion): one round trip
    /// instead of `BEGIN`, the statement and `COMMIT`. A single statement is
    /// atomic on both engines; on SQLite the connection comes with the
    /// file's in-process writer lock (an `UPDATE` takes SQLite's write lock
    /// when it starts, like `BEGIN IMMEDIATE`). For the queue's own
    /// bookkeeping only.
    pub(crate) async fn jobs_conn(&self, tenant: Option<TenantId>) -> Result<AutoConn, StoreError> {
        Ok(match (&*self.backend, tenant) {
            (Backend::Sqlite(s), file) => {
                let guard = s.writer(file).await;
                let pool = match file {
                    None => s.control.clone(),
                    Some(t) => Self::tenant_pool(s, t),
                };
                AutoConn::Sqlite(pool.acquire().await?, guard)
            }
            (Backend::Postgres(p), _) => AutoConn::Postgres(p.acquire(None).await?),
        })
    }

    /// Wakes this process's idle workers of `lane` (e.g. on a NOTIFY from
    /// another node).
    pub fn wake_lane(&self, lane: galantis_core::Lane) {
        self.signals.wake(lane);
    }

    /// A receiver that changes whenever jobs are committed to `lane`.
    pub fn lane_signal(&self, lane: galantis_core::Lane) -> tokio::sync::watch::Receiver<u64> {
        self.signals.subscribe(lane)
    }

    /// The PostgreSQL pool (for LISTEN), if that is the engine.
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &*self.backend {
            Backend::Postgres(p) => Some(p.pool()),
            Backend::Sqlite(_) => None,
        }
    }

    /// Database reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.control.acquire().await?.ping().await?,
            Backend::Postgres(p) => p.pool().acquire().await?.ping().await?,
        }
        Ok(())
    }

    /// Forgets the cached pool of a tenant (after its storage is dropped).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        if let Backend::Sqlite(s) = &*self.backend {
            s.tenants.remove(&tenant);
        }
    }

    /// A fresh, unpooled connection to one tenant's storage with the tenant
    /// selected for the whole session; used by migrations, which must not
    /// leave a session-wide `search_path` on a pooled connection.
    pub(crate) async fn dedicated_tenant_conn(
        &self,
        tenant: TenantId,
        create: bool,
    ) -> Result<DedicatedConn, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => Ok(DedicatedConn::Sqlite(
                sqlite_options(&tenant_file(&s.dir, tenant), create)
                    .connect()
                    .await?,
            )),
            Backend::Postgres(p) => {
                let mut conn = p.pool().connect_options().connect().await?;
                let schema = quoted_schema(tenant);
                if create {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS {schema}"
                    )))
                    .execute(&mut conn)
                    .await?;
                }
                sqlx::query("SELECT set_config('search_path', $1, false)")
                    .bind(&schema)
                    .execute(&mut conn)
                    .await?;
                Ok(DedicatedConn::Postgres(conn))
            }
        }
    }

    /// Removes a tenant's storage entirely (file or schema).
    pub async fn drop_tenant_storage(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.forget_tenant(tenant);
        match &*self.backend {
            Backend::Sqlite(s) => {
                let base = tenant_file(&s.dir, tenant);
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = base.clone().into_os_string();
                    p.push(suffix);
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::Io(e)),
                    }
                }
            }
            Backend::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quoted_schema(tenant)
                )))
                .execute(p.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// [`Db::close`] has been called: background loops stop instead of
    /// reporting the closed pool as a failure.
    pub fn is_closed(&self) -> bool {
        match &*self.backend {
            Backend::Sqlite(s) => s.control.is_closed(),
            Backend::Postgres(p) => p.pool().is_closed(),
        }
    }

    /// Closes every pool; pending work finishes first.
    pub async fn close(&self) {
        match &*self.backend {
            Backend::Sqlite(s) => {
                // Cloned out first: a map guard held across an await would
                // block (not yield) a task that opens a tenant's pool
                // meanwhile, stalling a single-threaded runtime for good.
                let pools: Vec<SqlitePool> = s.tenants.iter().map(|e| e.value().clone()).collect();
                for pool in pools {
                    pool.close().await;
                }
                s.control.close().await;
            }
            Backend::Postgres(p) => {
                if let Some(n) = &self.notifier {
                    n.close();
                }
                p.close().await;
            }
        }
    }
}

/// A pooled connection used outside a transaction (see [`Db::jobs_conn`]).
pub(crate) enum AutoConn {
    /// The writer lock is released after the connection (fields drop in order).
    Sqlite(
        sqlx::pool::PoolConnection<Sqlite>,
        #[allow(dead_code)] WriterGuard,
    ),
    Postgres(crate::pg_conns::PgLease),
}

impl AutoConn {
    /// Gives the connection back once its statement has finished (on
    /// PostgreSQL it is then kept for reuse; see `pg_conns`). Dropped
    /// without this, it goes back to the pool, which checks it first.
    pub(crate) fn release(self) {
        match self {
            AutoConn::Sqlite(..) => {}
            AutoConn::Postgres(lease) => lease.release(),
        }
    }
}

/// [`on_tx!`] for an [`AutoConn`].
#[macro_export]
#[doc(hidden)]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::AutoConn::Sqlite(t, _) => {
                let $c = &mut **t;
                $body
            }
            $crate::db::AutoConn::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
    ($conn:expr, sqlite |$s:ident| $sbody:expr, postgres |$p:ident| $pbody:expr) => {
        match $conn {
            $crate::db::AutoConn::Sqlite(t, _) => {
                let $s = &mut **t;
                $sbody
            }
            $crate::db::AutoConn::Postgres(t) => {
                let $p = &mut **t;
                $pbody
            }
        }
    };
}

pub(crate) enum DedicatedConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl DedicatedConn {
    pub(crate) async fn close(self) -> Result<(), StoreError> {
        match self {
            DedicatedConn::Sqlite(c) => c.close().await?,
            DedicatedConn::Postgres(c) => c.close().await?,
        }
        Ok(())
    }
}

fn tenant_file(dir: &Path, tenant: TenantId) -> PathBuf {
    dir.join("tenants").join(format!("{tenant}.db"))
}

/// The tenant's schema name, quoted. Built only from the id's hex digits.
pub(crate) fn quoted_schema(tenant: TenantId) -> String {
    format!("\"{}\"", tenant.schema_name())
}

/// Splits `len` rows into consecutive chunks whose sizes are powers of two
/// (largest first, at most 256). Multi-row statements then come in at most
/// nine shapes, so their prepared statements stay cached instead of being
/// prepared afresh for every batch size.
pub(crate) fn pow2_chunks(len: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let left = len - start;
        let size = (1usize << (usize::BITS - 1 - left.leading_zeros())).min(256);
        out.push(start..start + size);
        start += size;
    }
    out
}

#[cfg(test)]
mod chunk_tests {
    #[test]
    fn chunks_are_powers_of_two_and_cover_everything() {
        assert!(super::pow2_chunks(0).is_empty());
        assert_eq!(super::pow2_chunks(13), vec![0..8, 8..12, 12..13]);
        let c = super::pow2_chunks(600);
        assert_eq!(
            c.iter().map(|r| r.len()).collect::<Vec<_>>(),
            vec![256, 256, 64, 16, 8]
        );
    }
}
