//! PostgreSQL connections handed out by the search path they last ran under.
//!
//! Why: a tenant transaction pins `search_path` to the tenant's schema (see
//! [`crate::db`]), and PostgreSQL invalidates a connection's cached plan
//! whenever the search path differs from the one it was planned under
//! (`RevalidateCachedQuery`). Through a plain pool, where any connection
//! serves any tenant, the statements of a store with several tenants were
//! analysed and planned again on almost every use (a third of PostgreSQL's
//! time in the ingest profile, `docs/performance.md`). Here a transaction
//! for scope S takes, when there is one, an idle connection whose last
//! transaction was S's, so its prepared statements are still planned for
//! S's schema.
//!
//! How:
//! - The sqlx pool stays the factory: it opens, health-checks and closes
//!   connections. Connections checked out from it are kept here between
//!   transactions, keyed by [`Scope`], instead of going back to it.
//! - A fair semaphore of `max` permits bounds the connections in use or kept
//!   here, so a waiter is never starved by connections kept for another
//!   scope: whoever holds a permit takes its own scope's newest idle
//!   connection, else the one idle longest (another scope's), else one from
//!   the pool. The pool's size is `max` + [`DIRECT_RESERVE`], so direct users
//!   of the pool (migrations, LISTEN, dropping a schema) always find room.
//! - Only a connection whose transaction ended with a successful commit or
//!   rollback (or whose autocommit statement finished) is kept. Anything
//!   else, an error or a future dropped mid-statement, goes back to the pool,
//!   which flushes a queued rollback and checks the connection before anyone
//!   reuses it.
//! - A connection idle here for [`IDLE_FOR`] goes back to the pool (whose own
//!   idle timeout then closes it), so a burst does not hold connections
//!   open for good. Reusing one skips the pool's two round trips per
//!   transaction (a ping before acquire and after release); a connection
//!   that broke while kept fails its `BEGIN`, and the transaction is begun
//!   once more on a connection from the pool.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use galantis_core::TenantId;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgTransactionManager;
use sqlx::{PgConnection, PgPool, Postgres};
use sqlx_core::sql_str::SqlSafeStr;
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::StoreError;

/// Which search path a connection's transactions run under: a tenant's
/// schema, or the default (`public`: control tables and the queue).
pub(crate) type Scope = Option<TenantId>;

/// Connections of the pool beyond `max`, for its direct users (two
/// LISTEN connections hold theirs for good; migrations, health checks and
/// dropping a schema take one for a moment).
pub(crate) const DIRECT_RESERVE: u32 = 6;

/// How long a connection stays here unused before it goes back to the pool.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// How often kept connections are checked against [`IDLE_FOR`].
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct PgConns {
    pool: PgPool,
    permits: Arc<Semaphore>,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_scope: HashMap<Scope, Vec<(PoolConnection<Postgres>, Instant)>>,
    closed: bool,
}

impl Idle {
    /// The newest of `scope`'s, else the one idle longest.
    fn take(&mut self, scope: Scope) -> Option<PoolConnection<Postgres>> {
        if let Some(list) = self.by_scope.get_mut(&scope)
            && let Some((conn, _)) = list.pop()
        {
            if list.is_empty() {
                self.by_scope.remove(&scope);
            }
            return Some(conn);
        }
        let oldest = self
            .by_scope
            .iter()
            .filter_map(|(s, list)| list.first().map(|(_, at)| (*s, *at)))
            .min_by_key(|(_, at)| *at)?
            .0;
        let list = self.by_scope.get_mut(&oldest)?;
        let (conn, _) = list.remove(0);
        if list.is_empty() {
            self.by_scope.remove(&oldest);
        }
        Some(conn)
    }

    fn drain_all(&mut self) -> Vec<PoolConnection<Postgres>> {
        std::mem::take(&mut self.by_scope)
            .into_values()
            .flatten()
            .map(|(c, _)| c)
            .collect()
    }

    fn drain_older_than(&mut self, limit: Instant) -> Vec<PoolConnection<Postgres>> {
        let mut out = Vec::new();
        self.by_scope.retain(|_, list| {
            let keep = list.split_off(list.partition_point(|(_, at)| *at < limit));
            out.extend(std::mem::replace(list, keep).into_iter().map(|(c, _)| c));
            !list.is_empty()
        });
        out
    }
}

impl PgConns {
    /// Wraps `pool`, whose size must be `max` + [`DIRECT_RESERVE`]. Starts
    /// the sweep of idle connections (it ends when this is dropped).
    pub(crate) fn new(pool: PgPool, max: u32) -> Arc<Self> {
        let this = Arc::new(Self {
            pool,
            permits: Arc::new(Semaphore::new(max as usize)),
            idle: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&this)));
        this
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for `scope`: a kept one when there is one (its own
    /// scope's first), else one from the pool.
    pub(crate) async fn acquire(self: &Arc<Self>, scope: Scope) -> Result<PgLease, StoreError> {
        let permit = self.permit().await?;
        let kept = self.lock().take(scope);
        let reused = kept.is_some();
        let conn = match kept {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(self.lease(conn, permit, scope, reused))
    }

    /// A transaction for `scope` begun with `begin` (which must start with
    /// `BEGIN`). A kept connection that fails to begin is dropped and the
    /// transaction begun again on one from the pool.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        scope: Scope,
        begin: &str,
    ) -> Result<PgTx, StoreError> {
        let mut lease = self.acquire(scope).await?;
        if lease.reused {
            match PgTx::begin(lease, begin).await {
                Ok(tx) => return Ok(tx),
                Err(e) => {
                    tracing::info!(error = %e, "a kept PostgreSQL connection failed to begin; retrying on a pooled one");
                    lease = self.acquire_from_pool(scope).await?;
                }
            }
        }
        Ok(PgTx::begin(lease, begin).await?)
    }

    async fn acquire_from_pool(self: &Arc<Self>, scope: Scope) -> Result<PgLease, StoreError> {
        let permit = self.permit().await?;
        let conn = self.pool.acquire().await?;
        Ok(self.lease(conn, permit, scope, false))
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL pool is closed".into()))
    }

    fn lease(
        self: &Arc<Self>,
        conn: PoolConnection<Postgres>,
        permit: OwnedSemaphorePermit,
        scope: Scope,
        reused: bool,
    ) -> PgLease {
        PgLease {
            conn: Some(conn),
            permit: Some(permit),
            scope,
            home: self.clone(),
            reusable: false,
            reused,
        }
    }

    /// Gives every kept connection back to the pool and keeps none from now
    /// on; then closes the pool.
    pub(crate) async fn close(&self) {
        let kept: Vec<_> = {
            let mut idle = self.lock();
            idle.closed = true;
            idle.drain_all()
        };
        drop(kept);
        self.permits.close();
        self.pool.close().await;
    }

    fn keep(&self, scope: Scope, conn: PoolConnection<Postgres>) {
        let mut idle = self.lock();
        if idle.closed {
            // `conn` goes back to the pool (after the lock is released).
            return;
        }
        idle.by_scope
            .entry(scope)
            .or_default()
            .push((conn, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().by_scope.values().map(Vec::len).sum()
    }
}

async fn sweep(conns: Weak<PgConns>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(conns) = conns.upgrade() else { return };
        let Some(limit) = Instant::now().checked_sub(IDLE_FOR) else {
            continue;
        };
        let stale = conns.lock().drain_older_than(limit);
        drop(stale);
    }
}

/// A connection taken from [`PgConns`] with its permit. Dropped, it is kept
/// for its scope if it was marked reusable, else it goes back to the pool;
/// the permit is released after, so the next holder finds it.
pub(crate) struct PgLease {
    conn: Option<PoolConnection<Postgres>>,
    permit: Option<OwnedSemaphorePermit>,
    scope: Scope,
    home: Arc<PgConns>,
    reusable: bool,
    reused: bool,
}

impl PgLease {
    /// Marks the connection clean (its last statement finished) and gives it
    /// back to be kept for its scope.
    pub(crate) fn release(mut self) {
        self.reusable = true;
    }
}

impl Deref for PgLease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for PgLease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
        {
            self.home.keep(self.scope, conn);
        }
        // Not kept, the connection went back to the pool above; the permit
        // goes last, so the next holder finds a kept connection.
        drop(self.permit.take());
    }
}

/// A transaction on a [`PgLease`]. Committed or rolled back, its connection
/// is kept for its scope; dropped while open, its rollback is queued and the
/// connection goes back to the pool (as sqlx's own transaction does).
pub struct PgTx {
    lease: PgLease,
    open: bool,
}

impl PgTx {
    async fn begin(mut lease: PgLease, begin: &str) -> Result<Self, sqlx::Error> {
        let statement = sqlx::AssertSqlSafe(begin.to_owned()).into_sql_str();
        PgTransactionManager::begin(&mut lease, Some(statement)).await?;
        Ok(Self { lease, open: true })
    }

    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        PgTransactionManager::commit(&mut self.lease).await?;
        self.open = false;
        self.lease.reusable = true;
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        PgTransactionManager::rollback(&mut self.lease).await?;
        self.open = false;
        self.lease.reusable = true;
        Ok(())
    }
}

impl Deref for PgTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.lease
    }
}

impl DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.lease
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            PgTransactionManager::start_rollback(&mut self.lease);
        }
    }
}

/// On PostgreSQL only (`TEST_DATABASE_URL`); they need no tables, so they run
/// on that database as it is.
#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgPoolOptions;

    /// The guard against a hang (a waiter starved by kept connections).
    const HANG: Duration = Duration::from_secs(20);

    async fn conns(max: u32) -> Option<Arc<PgConns>> {
        let url = std::env::var("TEST_DATABASE_URL").ok()?;
        let pool = PgPoolOptions::new()
            .max_connections(max + DIRECT_RESERVE)
            .connect(&url)
            .await
            .expect("TEST_DATABASE_URL is set but PostgreSQL is unreachable");
        Some(PgConns::new(pool, max))
    }

    fn begin_for(scope: Scope) -> String {
        match scope {
            Some(t) => format!("BEGIN; SET LOCAL search_path TO \"{}\"", t.schema_name()),
            None => "BEGIN".into(),
        }
    }

    async fn pid(tx: &mut PgTx) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **tx)
            .await
            .unwrap()
    }

    async fn committed_pid(c: &Arc<PgConns>, scope: Scope) -> i32 {
        let mut tx = c.begin(scope, &begin_for(scope)).await.unwrap();
        let p = pid(&mut tx).await;
        tx.commit().await.unwrap();
        p
    }

    #[tokio::test]
    async fn a_transaction_takes_the_connection_its_scope_last_used() {
        let Some(c) = conns(2).await else { return };
        let (a, b) = (Some(TenantId::new()), Some(TenantId::new()));
        let mut ta = c.begin(a, &begin_for(a)).await.unwrap();
        let mut tb = c.begin(b, &begin_for(b)).await.unwrap();
        let (pa, pb) = (pid(&mut ta).await, pid(&mut tb).await);
        assert_ne!(pa, pb);
        ta.commit().await.unwrap();
        tb.rollback().await.unwrap();
        assert_eq!(c.kept(), 2);
        for _ in 0..3 {
            assert_eq!(committed_pid(&c, b).await, pb);
            assert_eq!(committed_pid(&c, a).await, pa);
        }
        c.close().await;
    }

    #[tokio::test]
    async fn a_kept_connection_serves_another_scope_with_the_default_search_path() {
        let Some(c) = conns(1).await else { return };
        let a = Some(TenantId::new());
        let pa = committed_pid(&c, a).await;
        let default: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(c.pool())
            .await
            .unwrap();
        let mut tx = tokio::time::timeout(HANG, c.begin(None, "BEGIN"))
            .await
            .expect("a waiter must take a connection kept for another scope")
            .unwrap();
        assert_eq!(
            pid(&mut tx).await,
            pa,
            "the only permit's connection is reused"
        );
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            path, default,
            "SET LOCAL ended with the earlier transaction"
        );
        tx.commit().await.unwrap();
        c.close().await;
    }

    #[tokio::test]
    async fn a_waiter_gets_the_connection_released_while_it_waits() {
        let Some(c) = conns(1).await else { return };
        let (a, b) = (Some(TenantId::new()), Some(TenantId::new()));
        let mut held = c.begin(a, &begin_for(a)).await.unwrap();
        let pa = pid(&mut held).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { committed_pid(&c, b).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one permit: the waiter waits");
        held.commit().await.unwrap();
        let pb = tokio::time::timeout(HANG, waiter)
            .await
            .expect("no hang")
            .unwrap();
        assert_eq!(pb, pa);
        c.close().await;
    }

    #[tokio::test]
    async fn a_transaction_dropped_open_is_rolled_back_and_its_connection_not_kept() {
        let Some(c) = conns(1).await else { return };
        let a = Some(TenantId::new());
        let mut tx = c.begin(a, &begin_for(a)).await.unwrap();
        sqlx::query("SELECT set_config('galantis.probe', 'left', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        assert_eq!(
            c.kept(),
            0,
            "an unfinished transaction's connection goes back to the pool"
        );
        let mut next = tokio::time::timeout(HANG, c.begin(a, &begin_for(a)))
            .await
            .expect("no hang")
            .unwrap();
        let probe: Option<String> =
            sqlx::query_scalar("SELECT current_setting('galantis.probe', true)")
                .fetch_one(&mut *next)
                .await
                .unwrap();
        assert!(probe.as_deref().unwrap_or("").is_empty(), "{probe:?}");
        next.commit().await.unwrap();
        c.close().await;
    }

    #[tokio::test]
    async fn close_returns_kept_connections_and_keeps_no_more() {
        let Some(c) = conns(2).await else { return };
        committed_pid(&c, Some(TenantId::new())).await;
        assert_eq!(c.kept(), 1);
        tokio::time::timeout(HANG, c.close())
            .await
            .expect("close must not wait for kept connections");
        assert_eq!(c.kept(), 0);
        assert!(c.begin(None, "BEGIN").await.is_err(), "closed");
    }
}
