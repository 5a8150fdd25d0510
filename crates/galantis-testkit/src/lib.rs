//! Test support: [`TestApp`] runs the real router over real HTTP on a fresh
//! store — a temporary SQLite directory, or, when `TEST_DATABASE_URL` is set,
//! a fresh PostgreSQL database created for the test and dropped after it.
//! The same tests therefore run on both engines.
//!
//! Jobs: [`TestApp::run_jobs_until_idle`] drains the queue in-process by the
//! app's clock, deterministically, and fails on dead jobs; with
//! [`TestAppBuilder::fixed_clock`], [`TestApp::advance_clock_and_run`]
//! reaches scheduled ones. [`eventually`] is for what no job drain covers
//! (webhook group commits, real workers); [`webhooks`] signs like Shopify
//! and Meta do.

mod pg;
mod watchdog;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use galantis_core::{Clock, Email, FixedClock, JobState, MemberId, Role, ShopDomain, TenantId};
use galantis_server::app;
use galantis_server::config::Config;
use galantis_server::http::ServeRole;
use galantis_server::jobs::Registry;
use galantis_server::jobs::worker::Worker;
use galantis_server::state::AppState;
use galantis_store::control::{members, tenants, tokens};
use galantis_store::crypto::MasterKey;
use galantis_store::jobs::{JobView, admin};
use galantis_store::{Db, Engine};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

pub use pg::PgScratch;

/// Shopify webhook secret configured on every test app.
pub const TEST_SHOPIFY_SECRET: &str = "test-shopify-app-secret";
/// Meta webhook secret configured on every test app.
pub const TEST_META_SECRET: &str = "test-meta-app-secret";
/// `/metrics`'s token in PostgreSQL (production) configurations, which
/// require one; embedded ones serve metrics openly.
pub const TEST_METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// The Meta sandbox's operator token on test apps built with
/// [`TestAppBuilder::sandbox`].
pub const TEST_SANDBOX_TOKEN: &str = "test-sandbox-operator-token";

/// A scratch store location: a temp directory, plus a scratch PostgreSQL
/// database when `TEST_DATABASE_URL` is set. Dropping it removes both.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub pg: Option<PgScratch>,
    pub master_key: MasterKey,
}

impl Scratch {
    pub async fn new() -> Self {
        let pg = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(PgScratch::create(&url).await),
            _ => None,
        };
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            pg,
            master_key: MasterKey::generate().unwrap(),
        }
    }

    pub fn engine(&self) -> Engine {
        if self.pg.is_some() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// A configuration pointing at this scratch store, with fixed test
    /// webhook secrets and an explicit master key.
    pub fn config(&self) -> Config {
        Config {
            database_url: self.pg.as_ref().map(|p| SecretString::from(p.url.clone())),
            data_dir: self.dir.path().join("data"),
            bind: "127.0.0.1:0".parse().unwrap(),
            master_key: Some(SecretString::from(self.master_key.to_base64())),
            shopify_app_secret: Some(SecretString::from(TEST_SHOPIFY_SECRET)),
            meta_app_secret: Some(SecretString::from(TEST_META_SECRET)),
            meta_verify_token: Some(SecretString::from("test-verify-token")),
            metrics: galantis_server::config::MetricsConfig {
                token: self
                    .pg
                    .as_ref()
                    .map(|_| SecretString::from(TEST_METRICS_TOKEN)),
                bind: None,
            },
            // Below the production default (20) but with room for a lane of
            // workers, the scheduler's LISTEN, webhook processing and the
            // test's own reads at once.
            database_max_connections: 16,
            ..Config::default()
        }
    }

    /// Environment for running the `galantis` binary against this store.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "GALANTIS_DATA_DIR".to_owned(),
                self.dir.path().join("data").display().to_string(),
            ),
            (
                "GALANTIS_MASTER_KEY".to_owned(),
                self.master_key.to_base64(),
            ),
            (
                "GALANTIS_SHOPIFY_APP_SECRET".to_owned(),
                TEST_SHOPIFY_SECRET.to_owned(),
            ),
            (
                "GALANTIS_META_APP_SECRET".to_owned(),
                TEST_META_SECRET.to_owned(),
            ),
            (
                "GALANTIS_META_VERIFY_TOKEN".to_owned(),
                "test-verify-token".to_owned(),
            ),
            ("GALANTIS_LOG_FORMAT".to_owned(), "json".to_owned()),
        ];
        if let Some(pg) = &self.pg {
            env.push(("DATABASE_URL".to_owned(), pg.url.clone()));
            env.push((
                "GALANTIS_METRICS__TOKEN".to_owned(),
                TEST_METRICS_TOKEN.to_owned(),
            ));
        }
        env
    }
}

/// A tenant made for a test, with its owner's token.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: TenantId,
    pub shop: ShopDomain,
    pub owner_id: MemberId,
    pub token: String,
}

/// The real application on a real socket.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// What [`run_jobs_until_idle`](Self::run_jobs_until_idle) runs: the
    /// workers' registry (the built-in one unless the test gave its own),
    /// also when the app runs no workers.
    pub registry: Registry,
    fixed_clock: Option<Arc<FixedClock>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _watched: watchdog::Watched,
    // Dropped last: the store must outlive the server.
    pub scratch: Scratch,
}

type ConfigTweak = Box<dyn FnOnce(&mut Config) + Send>;

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    tweaks: Vec<ConfigTweak>,
    clock: Option<Arc<dyn Clock>>,
    fixed_clock: Option<Arc<FixedClock>>,
    registry: Registry,
    workers: bool,
}

impl TestAppBuilder {
    /// Adjusts the configuration.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Uses `clock` instead of the system clock (e.g. a `FixedClock`), for
    /// the application and its store alike.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Uses `clock`, and lets [`TestApp::advance_clock_and_run`] move it.
    pub fn fixed_clock(mut self, clock: Arc<FixedClock>) -> Self {
        self.clock = Some(clock.clone());
        self.fixed_clock = Some(clock);
        self
    }

    /// Mounts the Meta sandbox at `/sandbox-meta` (the test configuration
    /// has real secrets, so it is off otherwise), with [`TEST_SANDBOX_TOKEN`].
    pub fn sandbox(self) -> Self {
        self.config(|c| {
            c.sandbox.enabled = true;
            c.sandbox.token = Some(SecretString::from(TEST_SANDBOX_TOKEN));
        })
    }

    /// Runs no job workers or scheduler: the test drives the queue itself,
    /// e.g. with [`TestApp::run_jobs_until_idle`].
    pub fn without_workers(mut self) -> Self {
        self.workers = false;
        self
    }

    /// Runs workers (and drains) with this registry instead of the built-in one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let watched = watchdog::watch_current_test();
        let scratch = Scratch::new().await;
        let mut config = scratch.config();
        // Tests must not wait long for a lost heartbeat or a poll.
        config.queue.poll_interval_ms = 100;
        config.queue.heartbeat_interval_secs = 1;
        config.queue.heartbeat_timeout_secs = 5;
        config.shutdown_grace_secs = 5;
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let mut state = app::build_state(config).await.expect("build app state");
        // Shopify write-backs are recorded, never sent (inspect them through
        // `state.shopify.as_any()`).
        state.shopify =
            Arc::new(galantis_server::shopify_client::RecordingShopifyClient::default());
        if let Some(clock) = self.clock {
            state.set_clock(clock);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app::serve(
            state.clone(),
            listener,
            ServeRole::All,
            self.workers.then(|| self.registry.clone()),
            async {
                let _ = rx.await;
            },
        ));
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            // A bound, not a measurement: a request that never answers fails
            // its test instead of hanging the suite.
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .expect("http client"),
            state,
            registry: self.registry,
            fixed_clock: self.fixed_clock,
            shutdown: Some(tx),
            server: Some(server),
            _watched: watched,
            scratch,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Spawns with a configuration adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        Self::builder().config(tweak).spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            tweaks: Vec::new(),
            clock: None,
            fixed_clock: None,
            registry: Registry::builtin(),
            workers: true,
        }
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    pub fn engine(&self) -> Engine {
        self.state.db.engine()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request to `path` with `token` as bearer.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path, token)
    }

    /// `GET url` (this app's `/metrics`, or its separate metrics listener),
    /// with the metrics token when the configuration has one.
    pub async fn metrics_at(&self, url: &str) -> reqwest::Response {
        let mut r = self.client.get(url);
        if let Some(t) = &self.state.config.metrics.token {
            use secrecy::ExposeSecret;
            r = r.bearer_auth(t.expose_secret());
        }
        r.send().await.expect("GET /metrics")
    }

    /// This app's `/metrics` as Prometheus text (asserting 200).
    pub async fn metrics_text(&self) -> String {
        let r = self.metrics_at(&self.url("/metrics")).await;
        assert_eq!(r.status(), reqwest::StatusCode::OK, "GET /metrics");
        r.text().await.expect("metrics body")
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.state.master_key
    }

    /// Creates a tenant with an owner; `shop` is `<name>.myshopify.com`.
    pub async fn create_tenant(&self, name: &str) -> TestTenant {
        let shop = ShopDomain::parse(&format!("{name}.myshopify.com")).expect("valid test shop");
        let created = tenants::create(
            self.db(),
            self.master_key(),
            tenants::NewTenant {
                shop: shop.clone(),
                owner_email: None,
                phone: None,
            },
        )
        .await
        .expect("create tenant");
        TestTenant {
            id: created.tenant.id,
            shop,
            owner_id: created.owner.id,
            token: created.token.secret.expose_secret().to_owned(),
        }
    }

    /// Adds a member with `role` and returns its id and a token.
    pub async fn add_member(&self, tenant: &TestTenant, role: Role) -> (MemberId, String) {
        let email = Email::parse(&format!(
            "{}-{}@example.com",
            role.as_str().to_lowercase(),
            MemberId::new()
        ))
        .unwrap();
        let m = members::add(self.db(), tenant.id, email, role)
            .await
            .expect("add member");
        let t = tokens::create(self.db(), tenant.id, m.id, None)
            .await
            .expect("token");
        (m.id, t.secret.expose_secret().to_owned())
    }

    /// Runs every due job to completion, in-process and by the app's clock,
    /// until none is due and none is running; then fails if any job is
    /// dead, listing them (use [`try_run_jobs_until_idle`](Self::try_run_jobs_until_idle)
    /// where dead jobs are expected). Jobs scheduled later wait: see
    /// [`advance_clock_and_run`](Self::advance_clock_and_run).
    pub async fn run_jobs_until_idle(&self) -> Drained {
        match self.try_run_jobs_until_idle().await {
            Ok(d) => d,
            Err(dead) => panic!("{dead}"),
        }
    }

    /// As [`run_jobs_until_idle`](Self::run_jobs_until_idle), returning the
    /// dead jobs as an error instead of failing.
    pub async fn try_run_jobs_until_idle(&self) -> Result<Drained, DeadJobs> {
        let worker = Worker::new(self.state.clone(), self.registry.clone());
        let mut ran = 0;
        // Running jobs belong to the app's own workers (when it has them):
        // wait for them, since they may enqueue more. Bounded, like
        // `eventually`; without workers nothing else runs and this never waits.
        for _ in 0..1200 {
            ran += worker
                .run_until_idle(100_000)
                .await
                .expect("draining the queue");
            if self.jobs_running().await == 0 {
                let dead = self.dead_jobs().await;
                return if dead.is_empty() {
                    Ok(Drained { ran })
                } else {
                    Err(DeadJobs(dead))
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("jobs were still running after a minute");
    }

    /// Moves the fixed clock forward by `by`, then runs what became due.
    /// Panics unless the app was built with [`TestAppBuilder::fixed_clock`].
    pub async fn advance_clock_and_run(&self, by: chrono::Duration) -> Drained {
        self.fixed_clock
            .as_ref()
            .expect("advance_clock_and_run needs TestAppBuilder::fixed_clock")
            .advance(by);
        self.run_jobs_until_idle().await
    }

    async fn jobs_running(&self) -> i64 {
        admin::stats(self.db(), None, self.state.clock.now())
            .await
            .expect("queue stats")
            .iter()
            .map(|s| s.running)
            .sum()
    }

    /// Every dead job: global ones and every tenant's.
    pub async fn dead_jobs(&self) -> Vec<JobView> {
        let mut scopes = vec![None];
        scopes.extend(
            tenants::list(self.db())
                .await
                .expect("list tenants")
                .into_iter()
                .map(|t| Some(t.id)),
        );
        let mut out = Vec::new();
        for scope in scopes {
            // An erased shop's storage is gone: nothing of it can be dead.
            if let Ok(jobs) = admin::list(self.db(), scope, Some(JobState::Dead), None, 100).await {
                out.extend(jobs);
            }
        }
        out
    }

    /// Stops the server (graceful) and waits for it.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            // The app bounds its own shutdown by the grace period; this bound
            // names a shutdown that hangs instead of hanging the test.
            let abort = h.abort_handle();
            if tokio::time::timeout(STOP_BOUND, h).await.is_err() {
                abort.abort();
                panic!("the app did not stop within {STOP_BOUND:?} of its shutdown signal");
            }
        }
    }
}

/// How long [`TestApp::stop`] waits for the app (shutdown grace is 5 s in
/// tests; the rest is margin for a loaded machine).
const STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Job runs made by the drain itself (retries count again).
    pub ran: usize,
}

/// Dead jobs found after a drain.
#[derive(Debug)]
pub struct DeadJobs(pub Vec<JobView>);

impl std::fmt::Display for DeadJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} dead job(s) after draining the queue:", self.0.len())?;
        for j in &self.0 {
            writeln!(
                f,
                "  {} {} (tenant {:?}, attempt {}): {}",
                j.kind,
                j.id,
                j.tenant_id,
                j.attempt,
                j.last_error.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// Polls `check` until it holds (bounded; not a timing assertion). Prefer
/// [`TestApp::run_jobs_until_idle`] for job effects.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
