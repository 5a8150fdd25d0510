//! Test support: [`TestApp`] runs the real router over real HTTP on a fresh
//! store — a temporary SQLite directory, or, when `TEST_DATABASE_URL` is set,
//! a fresh PostgreSQL database created for the test and dropped after it.
//! The same tests therefore run on both engines.

mod pg;

use std::net::SocketAddr;
use std::sync::Arc;

use galantis_core::{Clock, Email, MemberId, Role, ShopDomain, TenantId};
use galantis_server::app;
use galantis_server::config::Config;
use galantis_server::http::ServeRole;
use galantis_server::jobs::Registry;
use galantis_server::state::AppState;
use galantis_store::control::{members, tenants, tokens};
use galantis_store::crypto::MasterKey;
use galantis_store::{Db, Engine};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

pub use pg::PgScratch;

/// Shopify webhook secret configured on every test app.
pub const TEST_SHOPIFY_SECRET: &str = "test-shopify-app-secret";
/// Meta webhook secret configured on every test app.
pub const TEST_META_SECRET: &str = "test-meta-app-secret";

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
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the store must outlive the server.
    pub scratch: Scratch,
}

type ConfigTweak = Box<dyn FnOnce(&mut Config) + Send>;

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    tweaks: Vec<ConfigTweak>,
    clock: Option<Arc<dyn Clock>>,
    registry: Option<Registry>,
}

impl TestAppBuilder {
    /// Adjusts the configuration.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Uses `clock` instead of the system clock (e.g. a `FixedClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
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

    /// Runs no job workers or scheduler (the test drives the queue itself).
    pub fn without_workers(mut self) -> Self {
        self.registry = None;
        self
    }

    /// Runs workers with this registry instead of the built-in one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    pub async fn spawn(self) -> TestApp {
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
            state.clock = clock;
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
            self.registry,
            async {
                let _ = rx.await;
            },
        ));
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            state,
            shutdown: Some(tx),
            server: Some(server),
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
            registry: Some(Registry::builtin()),
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

    /// Stops the server (graceful) and waits for it.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

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
