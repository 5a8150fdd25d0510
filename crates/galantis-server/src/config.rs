//! Configuration: defaults, then `galantis.toml`, then `GALANTIS_*` environment
//! variables (and `DATABASE_URL`). Every setting is documented, with its
//! default, in `galantis.example.toml`. Secrets are `SecretString`s and never
//! printed; `Debug` on this struct redacts them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Development secrets used only in embedded mode when none are configured.
pub const DEV_SHOPIFY_APP_SECRET: &str = "galantis-dev-shopify-app-secret";
/// The sandbox's default signing secret, so `galantis sandbox meta` and a
/// development server agree without configuration.
pub const DEV_META_APP_SECRET: &str = galantis_sandbox::meta::DEV_APP_SECRET;
pub const DEV_META_VERIFY_TOKEN: &str = "galantis-dev-verify-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `postgres://…` selects PostgreSQL; unset means embedded SQLite.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub public_url: Option<String>,
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    pub shopify_api_key: Option<String>,
    #[serde(skip_serializing)]
    pub shopify_app_secret: Option<SecretString>,
    #[serde(skip_serializing)]
    pub shopify_previous_app_secret: Option<SecretString>,
    pub shopify_base_url: Option<String>,
    #[serde(skip_serializing)]
    pub meta_app_secret: Option<SecretString>,
    #[serde(skip_serializing)]
    pub meta_verify_token: Option<SecretString>,
    pub meta_base_url: Option<String>,
    pub meta_graph_version: String,
    pub redis_url: Option<String>,
    pub log_format: LogFormat,
    /// Pool size for PostgreSQL (and the SQLite control database, capped at 16).
    pub database_max_connections: u32,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Largest accepted API request body, in bytes.
    pub api_body_limit_bytes: usize,
    /// Largest accepted webhook body, in bytes.
    pub webhook_body_limit_bytes: usize,
    /// A request whose response has not started after this long is answered
    /// 503 `timeout` (a stalled request body is 408, see `[listener]`).
    pub request_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, in-flight requests and running jobs get this
    /// long to finish.
    pub shutdown_grace_secs: u64,
    /// Inbound replies that unsubscribe a contact (case-insensitive, whole message).
    pub stop_keywords: Vec<String>,
    /// Inbound replies that subscribe a contact again: after an opt-out only
    /// the customer can opt back in (case-insensitive, whole message).
    pub start_keywords: Vec<String>,
    /// The durable job queue.
    pub queue: QueueConfig,
    /// Sending WhatsApp messages: pacing, holds, reconciliation, timeouts.
    pub sending: SendingConfig,
    /// CSV imports: what one upload may hold.
    pub imports: ImportsConfig,
    /// Consent signals beyond typed keywords.
    pub consent: ConsentConfig,
    /// The Meta sandbox mounted at `/sandbox-meta` (development and staging).
    pub sandbox: SandboxMount,
    /// Credit packs merchants buy through Shopify.
    pub billing: BillingConfig,
    /// Connections: slow and idle clients, the connection cap.
    pub listener: ListenerConfig,
    /// Who may read `/metrics`, and where.
    pub metrics: MetricsConfig,
    /// The Shopify API version Galantis speaks.
    pub shopify: ShopifyConfig,
    /// The realtime WebSocket (`/api/v1/realtime`).
    pub realtime: RealtimeConfig,
    /// Automations and their triggers.
    pub automations: AutomationsConfig,
    /// The storefront (back-in-stock widget through the Shopify App Proxy).
    pub storefront: StorefrontConfig,
    /// Campaign dispatch and monitoring.
    pub campaigns: CampaignsConfig,
}

/// `[automations]`; environment: `GALANTIS_AUTOMATIONS__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutomationsConfig {
    /// A checkout with a phone counts as abandoned (`CheckoutAbandoned`, the
    /// `ABANDONED_CHECKOUT` trigger) after this long without an update, an
    /// order or completion. The flow's own delays come after it.
    pub checkout_abandoned_after_secs: u64,
}

impl Default for AutomationsConfig {
    fn default() -> Self {
        Self {
            // 10 minutes: a buyer still in the checkout (typing an address,
            // away at a payment provider's page, which sends no update) is
            // rarely silent that long, so we do not call a live checkout
            // abandoned; and it is short enough that the flow's own delays
            // (the recipe's 30 minutes) decide the timing the merchant sees.
            // The original detected abandonment by polling every 10 minutes.
            checkout_abandoned_after_secs: 600,
        }
    }
}

/// `[storefront]`; environment: `GALANTIS_STOREFRONT__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorefrontConfig {
    /// Widget submissions one client IP may make per minute (then 429 with
    /// `Retry-After`).
    pub subscriptions_per_minute_per_ip: u32,
    /// Submissions a client IP may make at once before the per-minute pace
    /// applies.
    pub subscriptions_burst_per_ip: u32,
    /// An App Proxy request whose `timestamp` is further than this from the
    /// server's clock (either way) is refused like a bad signature.
    pub signature_max_age_secs: u64,
}

impl Default for StorefrontConfig {
    fn default() -> Self {
        Self {
            subscriptions_per_minute_per_ip: 10,
            subscriptions_burst_per_ip: 5,
            signature_max_age_secs: 300,
        }
    }
}

/// `[campaigns]`; environment: `GALANTIS_CAMPAIGNS__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// A scheduled campaign whose time passed while no node ran starts late
    /// if less than this has passed; past it, it is `CANCELLED` with
    /// reason `missed_schedule`.
    pub missed_schedule_grace_secs: u64,
    /// Messages still `sent` (never delivered, read or failed) this long
    /// after dispatch ended count as sent, and the campaign gets its final
    /// status.
    pub monitor_timeout_secs: u64,
    /// The monitor tallies a sending campaign this often.
    pub monitor_interval_secs: u64,
    /// Most recipients queued per batch (the dispatcher keeps about two
    /// seconds of the number's rate queued ahead of the send jobs).
    pub batch_max: u32,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        Self {
            missed_schedule_grace_secs: 6 * 3600,
            monitor_timeout_secs: 24 * 3600,
            monitor_interval_secs: 5,
            batch_max: 500,
        }
    }
}

/// `[realtime]`; environment: `GALANTIS_REALTIME__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// A ping is sent this often; a client silent for two intervals (no
    /// pong, no message) is disconnected.
    pub heartbeat_secs: u64,
    /// The socket's token is checked again this often: a revoked token, a
    /// removed member or a changed role closes the socket (code 4001).
    pub auth_recheck_secs: u64,
    /// Events queued for one client; a client that falls this far behind
    /// is disconnected (code 4008) so it never slows the others down. It
    /// reconnects with `since` and loses nothing.
    pub client_buffer: usize,
    /// Each node re-reads the event table this often for the tenants it has
    /// clients of, covering a lost cross-node notification.
    pub resync_secs: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 20,
            auth_recheck_secs: 30,
            client_buffer: 256,
            resync_secs: 5,
        }
    }
}

/// `[shopify]`; environment: `GALANTIS_SHOPIFY_API_VERSION` (or
/// `GALANTIS_SHOPIFY__API_VERSION`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopifyConfig {
    /// The pinned API version (`YYYY-MM`): Admin API calls use it, and a
    /// webhook sent with another version is logged (still processed: the
    /// handlers accept the older and the current payload shapes).
    pub api_version: String,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        Self {
            api_version: crate::shopify_client::ADMIN_API_VERSION.into(),
        }
    }
}

impl ShopifyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let v = self.api_version.as_bytes();
        let shaped = v.len() == 7
            && v[4] == b'-'
            && v[..4].iter().chain(&v[5..]).all(u8::is_ascii_digit)
            && matches!(self.api_version[5..].parse::<u8>(), Ok(1..=12));
        if shaped {
            Ok(())
        } else {
            Err(ConfigError(
                "GALANTIS_SHOPIFY_API_VERSION must be a Shopify API version like 2026-01 (YYYY-MM)"
                    .into(),
            ))
        }
    }
}

/// `[listener]`; environment: `GALANTIS_LISTENER__<SETTING>`. Applies to
/// every listener of `serve` (the main one and the metrics one).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A client must send a request's complete headers within this long
    /// (also the wait for the next request on a kept-alive connection).
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_secs: u64,
    /// Open connections per listener; further clients wait to be accepted.
    pub max_connections: usize,
    /// A request body that delivers nothing for this long is answered 408.
    pub body_read_timeout_secs: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 10_000,
            body_read_timeout_secs: 15,
        }
    }
}

/// `[consent]`; environment: `GALANTIS_CONSENT__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentConfig {
    /// Quick-reply button payloads (or texts) that unsubscribe the contact
    /// who taps them, compared ignoring case. Meta's marketing opt-out
    /// button sends "Stop promotions"; templates with their own opt-out
    /// button add its payload here.
    pub stop_button_payloads: Vec<String>,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            stop_button_payloads: vec!["Stop promotions".to_owned()],
        }
    }
}

/// `[imports]`; environment: `GALANTIS_IMPORTS__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportsConfig {
    /// Data rows one CSV upload may hold (header excluded); more is refused
    /// with 422 `import_too_many_rows` and nothing of it is applied.
    pub max_rows: u64,
    /// Bytes one CSV upload may hold; more is refused with 413
    /// `payload_too_large` and nothing of it is applied.
    pub max_bytes: usize,
}

impl Default for ImportsConfig {
    fn default() -> Self {
        Self {
            max_rows: 200_000,
            max_bytes: 25 * 1024 * 1024,
        }
    }
}

/// `[metrics]`; environment: `GALANTIS_METRICS__<SETTING>`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
    /// When set, `/metrics` is served only on this address (not on `bind`).
    pub bind: Option<SocketAddr>,
}

/// `[sandbox]`; environment: `GALANTIS_SANDBOX_ENABLED`,
/// `GALANTIS_SANDBOX_TOKEN` (or `GALANTIS_SANDBOX__<SETTING>`).
///
/// The sandbox can inject inbound messages and opt-outs into tenants that use
/// it, so it is never mounted by accident: only in embedded development mode
/// (SQLite, no Meta app secret) or when enabled here, and its control routes
/// always need the operator token.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxMount {
    /// Mount the sandbox although real secrets are configured (staging).
    pub enabled: bool,
    /// The operator token for `/sandbox-meta/sandbox/*`. Unset: generated
    /// into `<data_dir>/sandbox.token` (mode 0600); required with PostgreSQL.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
}

/// `[billing]`; environment: `GALANTIS_BILLING__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// What `POST /api/v1/billing/purchases` sells: each pack is a one-time
    /// Shopify app charge of `price` for `credits`.
    pub credit_packs: Vec<CreditPack>,
    /// Charges are Shopify test charges (development stores: nobody pays).
    pub test_charges: bool,
    /// A purchase still PENDING is read back from Shopify this long after
    /// it was created, and again at this interval until it is final (the
    /// webhook usually settles it first).
    pub purchase_check_secs: u64,
}

/// One credit pack.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPack {
    /// What the merchant names in the purchase request.
    pub id: String,
    pub credits: i64,
    /// A decimal amount, e.g. `"10.00"`.
    pub price: String,
    /// ISO 4217, e.g. `USD`.
    pub currency_code: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        let pack = |id: &str, credits, price: &str| CreditPack {
            id: id.into(),
            credits,
            price: price.into(),
            currency_code: "USD".into(),
        };
        Self {
            credit_packs: vec![
                pack("credits_100", 100, "10.00"),
                pack("credits_500", 500, "45.00"),
                pack("credits_2000", 2_000, "160.00"),
            ],
            test_charges: false,
            purchase_check_secs: 900,
        }
    }
}

impl BillingConfig {
    pub fn pack(&self, id: &str) -> Option<&CreditPack> {
        self.credit_packs.iter().find(|p| p.id == id)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(format!("GALANTIS_BILLING__CREDIT_PACKS: {m}")));
        let mut ids = std::collections::HashSet::new();
        for p in &self.credit_packs {
            if p.id.is_empty()
                || p.id.len() > 64
                || !p
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return bad(format!(
                    "pack id `{}` must be 1 to 64 letters, digits, `_` or `-`",
                    p.id
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return bad(format!("pack id `{}` appears twice", p.id));
            }
            if !(1..=1_000_000).contains(&p.credits) {
                return bad(format!(
                    "pack `{}` must have between 1 and 1,000,000 credits",
                    p.id
                ));
            }
            if !is_positive_decimal(&p.price) {
                return bad(format!(
                    "pack `{}` price `{}` must be a positive decimal amount like 10.00",
                    p.id, p.price
                ));
            }
            if p.currency_code.len() != 3
                || !p.currency_code.bytes().all(|b| b.is_ascii_uppercase())
            {
                return bad(format!(
                    "pack `{}` currency_code must be an ISO 4217 code like USD",
                    p.id
                ));
            }
        }
        if self.purchase_check_secs == 0 {
            return Err(ConfigError(
                "GALANTIS_BILLING__PURCHASE_CHECK_SECS must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `12`, `12.5`, `12.50`; not `0`, `-1`, `1e3` or `12.345`.
fn is_positive_decimal(s: &str) -> bool {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    !whole.is_empty()
        && whole.len() <= 9
        && digits(whole)
        && digits(frac)
        && frac.len() <= 2
        && s.contains('.') != frac.is_empty()
        && s.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// `[sending]`; environment: `GALANTIS_SENDING__<SETTING>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendingConfig {
    /// Throughput of a number unless its settings say otherwise (Meta's
    /// standard tier; numbers go up to 1,000).
    pub default_messages_per_second: u32,
    /// Pair rate: one message from a number to the same recipient per this
    /// many milliseconds…
    pub pair_interval_ms: u64,
    /// …with this many back to back.
    pub pair_burst: u32,
    /// A limiter wait up to this long is slept in the worker; longer waits
    /// snooze the job (no attempt spent).
    pub max_inline_wait_ms: u64,
    /// After a 130429 a number sends at half its rate (halved again by each
    /// further 130429) for this long.
    pub slowdown_secs: u64,
    /// Sends of a tenant whose connection needs attention are held and
    /// looked at again this often (a reconnect releases them at once).
    pub hold_recheck_secs: u64,
    /// A send whose outcome is unknown (the worker died or timed out after
    /// calling Meta) waits this long for Meta's status webhook to tell
    /// whether it was accepted before it is sent again.
    pub reconcile_after_secs: u64,
    /// Cloud API timeouts.
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Templates are synced from Meta this often (0: never periodically).
    pub template_sync_interval_secs: u64,
}

impl Default for SendingConfig {
    fn default() -> Self {
        Self {
            default_messages_per_second: galantis_core::sending::DEFAULT_MESSAGES_PER_SECOND,
            pair_interval_ms: 6_000,
            pair_burst: 1,
            max_inline_wait_ms: 1_000,
            slowdown_secs: 30,
            hold_recheck_secs: 60,
            reconcile_after_secs: 300,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
            template_sync_interval_secs: 3_600,
        }
    }
}

/// `[queue]`; environment: `GALANTIS_QUEUE__<SETTING>` (double underscore),
/// e.g. `GALANTIS_QUEUE__POLL_INTERVAL_MS=500`,
/// `GALANTIS_QUEUE__CONCURRENCY__CAMPAIGNS=4`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Workers per lane on this node.
    pub concurrency: LaneConcurrency,
    /// Idle workers look for due jobs at least this often (wake-ups on
    /// enqueue are immediate; this catches scheduled jobs and other nodes).
    pub poll_interval_ms: u64,
    /// Running jobs' heartbeat period.
    pub heartbeat_interval_secs: u64,
    /// A running job without a heartbeat for this long is rescued.
    pub heartbeat_timeout_secs: u64,
    /// Completed jobs are deleted after this many hours.
    pub completed_retention_hours: u64,
    /// Dead jobs are deleted after this many days.
    pub dead_retention_days: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConcurrency {
    pub ingest: usize,
    pub messages: usize,
    pub flows: usize,
    pub campaigns: usize,
    pub sync: usize,
    pub monitor: usize,
    pub compliance: usize,
}

impl LaneConcurrency {
    pub fn get(&self, lane: galantis_core::Lane) -> usize {
        use galantis_core::Lane::*;
        match lane {
            Ingest => self.ingest,
            Messages => self.messages,
            Flows => self.flows,
            Campaigns => self.campaigns,
            Sync => self.sync,
            Monitor => self.monitor,
            Compliance => self.compliance,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        use galantis_core::Lane::*;
        Self {
            concurrency: LaneConcurrency {
                ingest: Ingest.default_concurrency(),
                messages: Messages.default_concurrency(),
                flows: Flows.default_concurrency(),
                campaigns: Campaigns.default_concurrency(),
                sync: Sync.default_concurrency(),
                monitor: Monitor.default_concurrency(),
                compliance: Compliance.default_concurrency(),
            },
            poll_interval_ms: 1000,
            heartbeat_interval_secs: 5,
            heartbeat_timeout_secs: 60,
            completed_retention_hours: 24,
            dead_retention_days: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("./galantis-data"),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            master_key: None,
            shopify_api_key: None,
            shopify_app_secret: None,
            shopify_previous_app_secret: None,
            shopify_base_url: None,
            meta_app_secret: None,
            meta_verify_token: None,
            meta_base_url: None,
            meta_graph_version: "v23.0".into(),
            redis_url: None,
            log_format: LogFormat::Pretty,
            database_max_connections: 20,
            migrate_on_start: true,
            api_body_limit_bytes: 1024 * 1024,
            webhook_body_limit_bytes: 3 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            stop_keywords: galantis_core::consent::default_stop_keywords(),
            start_keywords: galantis_core::consent::default_start_keywords(),
            queue: QueueConfig::default(),
            sending: SendingConfig::default(),
            imports: ImportsConfig::default(),
            consent: ConsentConfig::default(),
            sandbox: SandboxMount::default(),
            billing: BillingConfig::default(),
            listener: ListenerConfig::default(),
            metrics: MetricsConfig::default(),
            shopify: ShopifyConfig::default(),
            realtime: RealtimeConfig::default(),
            automations: AutomationsConfig::default(),
            storefront: StorefrontConfig::default(),
            campaigns: CampaignsConfig::default(),
        }
    }
}

/// A configuration problem, phrased as one sentence naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults → `galantis.toml` (or `config_file`) → environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = config_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("galantis.toml"));
        if config_file.is_some() && !file.exists() {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(
                Env::prefixed("GALANTIS_")
                    .ignore(&["NEW_MASTER_KEY"])
                    .lowercase(true)
                    .split("__")
                    .map(sandbox_env_key),
            )
            .merge(Env::raw().only(&["DATABASE_URL"]).lowercase(true));
        let config: Config = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Whether this process mounts the Meta sandbox at `/sandbox-meta`:
    /// embedded development mode (SQLite and no Meta app secret, so the
    /// development secrets are in use) or `[sandbox] enabled`. A configured
    /// Cloud API endpoint (`meta_base_url`) replaces it either way.
    pub fn sandbox_mounted(&self) -> bool {
        self.meta_base_url.is_none()
            && (self.sandbox.enabled || (self.is_embedded() && self.meta_app_secret.is_none()))
    }

    /// Checks that hold for every command.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            use secrecy::ExposeSecret;
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError(
                    "DATABASE_URL must be a postgres:// URL (leave it unset for embedded SQLite)"
                        .into(),
                ));
            }
        }
        if !matches!(self.database_max_connections, 1..=1000) {
            return Err(ConfigError(
                "GALANTIS_DATABASE_MAX_CONNECTIONS must be between 1 and 1000".into(),
            ));
        }
        if self.api_body_limit_bytes < 1024 {
            return Err(ConfigError(
                "GALANTIS_API_BODY_LIMIT_BYTES must be at least 1024".into(),
            ));
        }
        if self.webhook_body_limit_bytes < 1024 {
            return Err(ConfigError(
                "GALANTIS_WEBHOOK_BODY_LIMIT_BYTES must be at least 1024".into(),
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError(
                "GALANTIS_REQUEST_TIMEOUT_SECS must be at least 1".into(),
            ));
        }
        for (name, url) in [
            ("GALANTIS_PUBLIC_URL", &self.public_url),
            ("GALANTIS_SHOPIFY_BASE_URL", &self.shopify_base_url),
            ("GALANTIS_META_BASE_URL", &self.meta_base_url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(ConfigError(format!(
                    "{name} must be an http:// or https:// URL"
                )));
            }
        }
        let q = &self.queue;
        if q.poll_interval_ms == 0 || q.heartbeat_interval_secs == 0 {
            return Err(ConfigError(
                "GALANTIS_QUEUE__POLL_INTERVAL_MS and GALANTIS_QUEUE__HEARTBEAT_INTERVAL_SECS must be at least 1".into(),
            ));
        }
        if q.heartbeat_timeout_secs < 2 * q.heartbeat_interval_secs {
            return Err(ConfigError(
                "GALANTIS_QUEUE__HEARTBEAT_TIMEOUT_SECS must be at least twice GALANTIS_QUEUE__HEARTBEAT_INTERVAL_SECS".into(),
            ));
        }
        for lane in galantis_core::Lane::ALL {
            if q.concurrency.get(lane) > 1000 {
                return Err(ConfigError(format!(
                    "GALANTIS_QUEUE__CONCURRENCY__{} must be at most 1000",
                    lane.as_str().to_ascii_uppercase()
                )));
            }
        }
        let rt = &self.realtime;
        if rt.heartbeat_secs == 0
            || rt.auth_recheck_secs == 0
            || rt.resync_secs == 0
            || rt.client_buffer == 0
        {
            return Err(ConfigError(
                "GALANTIS_REALTIME__HEARTBEAT_SECS, __AUTH_RECHECK_SECS, __RESYNC_SECS and __CLIENT_BUFFER must be at least 1".into(),
            ));
        }
        if !(1..=30 * 24 * 3600).contains(&self.automations.checkout_abandoned_after_secs) {
            return Err(ConfigError(
                "GALANTIS_AUTOMATIONS__CHECKOUT_ABANDONED_AFTER_SECS must be between 1 and 2592000 (30 days)".into(),
            ));
        }
        let sf = &self.storefront;
        if sf.subscriptions_per_minute_per_ip == 0
            || sf.subscriptions_burst_per_ip == 0
            || sf.signature_max_age_secs == 0
        {
            return Err(ConfigError(
                "GALANTIS_STOREFRONT__SUBSCRIPTIONS_PER_MINUTE_PER_IP, __SUBSCRIPTIONS_BURST_PER_IP and __SIGNATURE_MAX_AGE_SECS must be at least 1".into(),
            ));
        }
        let cp = &self.campaigns;
        if cp.monitor_interval_secs == 0 || !(1..=10_000).contains(&cp.batch_max) {
            return Err(ConfigError(
                "GALANTIS_CAMPAIGNS__MONITOR_INTERVAL_SECS must be at least 1 and GALANTIS_CAMPAIGNS__BATCH_MAX between 1 and 10000".into(),
            ));
        }
        let sd = &self.sending;
        if !(1..=galantis_core::sending::MAX_MESSAGES_PER_SECOND)
            .contains(&sd.default_messages_per_second)
        {
            return Err(ConfigError(
                "GALANTIS_SENDING__DEFAULT_MESSAGES_PER_SECOND must be between 1 and 1000".into(),
            ));
        }
        if sd.pair_interval_ms == 0 || sd.pair_burst == 0 {
            return Err(ConfigError(
                "GALANTIS_SENDING__PAIR_INTERVAL_MS and GALANTIS_SENDING__PAIR_BURST must be at least 1".into(),
            ));
        }
        if sd.request_timeout_ms == 0 || sd.connect_timeout_ms == 0 || sd.hold_recheck_secs == 0 {
            return Err(ConfigError(
                "GALANTIS_SENDING__REQUEST_TIMEOUT_MS, GALANTIS_SENDING__CONNECT_TIMEOUT_MS and GALANTIS_SENDING__HOLD_RECHECK_SECS must be at least 1".into(),
            ));
        }
        if self.imports.max_rows == 0 || self.imports.max_bytes < 1024 {
            return Err(ConfigError(
                "GALANTIS_IMPORTS__MAX_ROWS must be at least 1 and GALANTIS_IMPORTS__MAX_BYTES at least 1024".into(),
            ));
        }
        self.billing.validate()?;
        self.shopify.validate()?;
        let l = &self.listener;
        if l.header_read_timeout_secs == 0
            || l.idle_timeout_secs == 0
            || l.body_read_timeout_secs == 0
        {
            return Err(ConfigError(
                "GALANTIS_LISTENER__HEADER_READ_TIMEOUT_SECS, GALANTIS_LISTENER__IDLE_TIMEOUT_SECS and GALANTIS_LISTENER__BODY_READ_TIMEOUT_SECS must be at least 1".into(),
            ));
        }
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err(ConfigError(
                "GALANTIS_LISTENER__MAX_CONNECTIONS must be between 1 and 1000000".into(),
            ));
        }
        if let Some(token) = &self.metrics.token {
            use secrecy::ExposeSecret;
            if token.expose_secret().len() < 16 {
                return Err(ConfigError(
                    "GALANTIS_METRICS__TOKEN must be at least 16 characters".into(),
                ));
            }
        }
        if let Some(u) = &self.redis_url
            && !(u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            return Err(ConfigError(
                "GALANTIS_REDIS_URL must be a redis:// or rediss:// URL".into(),
            ));
        }
        if let Some(t) = &self.sandbox.token {
            use secrecy::ExposeSecret;
            if t.expose_secret().trim().len() < 16 {
                return Err(ConfigError(
                    "GALANTIS_SANDBOX_TOKEN must be at least 16 characters".into(),
                ));
            }
        }
        if !self.meta_graph_version.starts_with('v') {
            return Err(ConfigError(
                "GALANTIS_META_GRAPH_VERSION must look like v23.0".into(),
            ));
        }
        Ok(())
    }

    /// Extra checks for `serve` with PostgreSQL: production mode gets no
    /// development secrets.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        if self.is_embedded() {
            return Ok(());
        }
        for (name, value) in [
            (
                "GALANTIS_SHOPIFY_APP_SECRET",
                self.shopify_app_secret.is_some(),
            ),
            ("GALANTIS_META_APP_SECRET", self.meta_app_secret.is_some()),
            (
                "GALANTIS_META_VERIFY_TOKEN",
                self.meta_verify_token.is_some(),
            ),
        ] {
            if !value {
                return Err(ConfigError(format!(
                    "{name} is required when DATABASE_URL points at PostgreSQL (development values are only used in embedded mode)"
                )));
            }
        }
        if self.sandbox_mounted() && self.sandbox.token.is_none() {
            return Err(ConfigError(
                "GALANTIS_SANDBOX_TOKEN is required when the sandbox is enabled with PostgreSQL (a generated token would differ between nodes)".into(),
            ));
        }
        // Metrics name tenants' volumes and the service's inner workings: in
        // production they are read with a credential only, wherever they are
        // served (a separate address is a network boundary, not a credential).
        if self.metrics.token.is_none() {
            return Err(ConfigError(
                "GALANTIS_METRICS__TOKEN is required when DATABASE_URL points at PostgreSQL: /metrics answers only with it (Authorization: Bearer …), on the main listener or on GALANTIS_METRICS__BIND".into(),
            ));
        }
        Ok(())
    }

    /// Embedded mode: SQLite in the data directory.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }

    pub fn db_config(&self) -> galantis_store::DbConfig {
        use secrecy::ExposeSecret;
        galantis_store::DbConfig {
            database_url: self
                .database_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned()),
            data_dir: self.data_dir.clone(),
            max_connections: self.database_max_connections,
        }
    }
}

/// `GALANTIS_SANDBOX_ENABLED`, `GALANTIS_SANDBOX_TOKEN` and
/// `GALANTIS_SHOPIFY_API_VERSION` are the documented names; `__` is the section separator elsewhere, so map them by hand
/// (`GALANTIS_SANDBOX__ENABLED` keeps working through the split).
fn sandbox_env_key(key: &figment::value::UncasedStr) -> figment::value::Uncased<'_> {
    match key.as_str().to_ascii_lowercase().as_str() {
        "sandbox_enabled" => "sandbox.enabled".into(),
        "sandbox_token" => "sandbox.token".into(),
        // design.md §2 names it so, beside the top-level `shopify_api_key`.
        "shopify_api_version" => "shopify.api_version".into(),
        _ => key.into(),
    }
}

/// Turns figment's error into one sentence that names the setting as the
/// operator would write it (environment variable form).
fn describe(e: figment::Error) -> String {
    let key = e.path.join(".");
    let setting = if key.is_empty() {
        String::new()
    } else if key == "database_url" {
        "DATABASE_URL".to_owned()
    } else {
        format!("GALANTIS_{}", e.path.join("__").to_ascii_uppercase())
    };
    match e.kind {
        figment::error::Kind::UnknownField(field, _) => {
            format!(
                "unknown setting `{field}` (see galantis.example.toml for the settings there are)"
            )
        }
        ref kind if !setting.is_empty() => format!("invalid setting {setting}: {kind}"),
        kind => format!("invalid configuration: {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(c.is_embedded());
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_values_are_named() {
        let c = Config {
            database_url: Some(SecretString::from("mysql://x")),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("DATABASE_URL"));
        let c = Config {
            public_url: Some("ftp://x".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("GALANTIS_PUBLIC_URL"));
    }

    #[test]
    fn the_example_file_parses_and_documents_the_real_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../galantis.example.toml");
        let from_file: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .extract()
            .expect("galantis.example.toml parses");
        let text = std::fs::read_to_string(path).unwrap();
        let documented = serde_json::to_value(&from_file).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(
            documented, defaults,
            "example values differ from the defaults"
        );
        for key in defaults.as_object().unwrap().keys() {
            assert!(
                text.contains(key.as_str()),
                "galantis.example.toml does not document `{key}`"
            );
        }
        for secret in [
            "token",
            "database_url",
            "master_key",
            "shopify_app_secret",
            "meta_app_secret",
            "meta_verify_token",
            "token",
        ] {
            assert!(
                text.contains(secret),
                "galantis.example.toml does not document `{secret}`"
            );
        }
    }

    #[test]
    fn the_sandbox_is_mounted_only_in_development_or_when_enabled() {
        assert!(Config::default().sandbox_mounted(), "embedded, no secrets");
        let production = Config {
            meta_app_secret: Some(SecretString::from("real")),
            ..Config::default()
        };
        assert!(!production.sandbox_mounted());
        let mut staging = production.clone();
        staging.sandbox.enabled = true;
        assert!(staging.sandbox_mounted());
        staging.meta_base_url = Some("http://127.0.0.1:9100".into());
        assert!(
            !staging.sandbox_mounted(),
            "a configured endpoint replaces it"
        );
        let pg = Config {
            database_url: Some(SecretString::from("postgres://x")),
            shopify_app_secret: Some(SecretString::from("s")),
            meta_app_secret: Some(SecretString::from("m")),
            meta_verify_token: Some(SecretString::from("v")),
            sandbox: SandboxMount {
                enabled: true,
                token: None,
            },
            ..Config::default()
        };
        let e = pg.validate_for_serve().unwrap_err().0;
        assert!(e.contains("GALANTIS_SANDBOX_TOKEN"), "{e}");
    }

    #[test]
    fn production_refuses_metrics_without_a_token() {
        let mut pg = Config {
            database_url: Some(SecretString::from("postgres://x")),
            shopify_app_secret: Some(SecretString::from("s")),
            meta_app_secret: Some(SecretString::from("m")),
            meta_verify_token: Some(SecretString::from("v")),
            ..Config::default()
        };
        for bind in [None, Some("127.0.0.1:9091".parse().unwrap())] {
            pg.metrics.bind = bind;
            let e = pg.validate_for_serve().unwrap_err().0;
            assert!(e.contains("GALANTIS_METRICS__TOKEN"), "{bind:?}: {e}");
        }
        pg.metrics.token = Some(SecretString::from("metrics-token-0123456789"));
        assert!(pg.validate_for_serve().is_ok());
        assert!(
            Config::default().validate_for_serve().is_ok(),
            "embedded development needs none"
        );
    }

    #[test]
    fn the_shopify_api_version_is_pinned_and_validated() {
        assert_eq!(Config::default().shopify.api_version, "2026-01");
        for good in ["2025-01", "2026-10", "2027-12"] {
            let mut c = Config::default();
            c.shopify.api_version = good.into();
            assert!(c.validate().is_ok(), "{good}");
        }
        for bad in [
            "", "2026-13", "2026-00", "2026-1", "26-01", "unstable", "2026_01", "2026-01 ",
        ] {
            let mut c = Config::default();
            c.shopify.api_version = bad.into();
            let e = c.validate().unwrap_err().0;
            assert!(e.contains("GALANTIS_SHOPIFY_API_VERSION"), "{bad}: {e}");
        }
    }

    #[test]
    fn sandbox_environment_names_map_to_the_section() {
        use figment::value::UncasedStr;
        for (raw, mapped) in [
            ("sandbox_enabled", "sandbox.enabled"),
            ("SANDBOX_TOKEN", "sandbox.token"),
            ("sandbox.enabled", "sandbox.enabled"),
            ("SHOPIFY_API_VERSION", "shopify.api_version"),
            ("shopify_api_key", "shopify_api_key"),
            ("bind", "bind"),
        ] {
            assert_eq!(sandbox_env_key(UncasedStr::new(raw)).as_str(), mapped);
        }
    }

    #[test]
    fn listener_and_metrics_settings_are_checked_and_named() {
        let bad = |tweak: fn(&mut Config)| {
            let mut c = Config::default();
            tweak(&mut c);
            c.validate().unwrap_err().0
        };
        assert!(
            bad(|c| c.listener.max_connections = 0).contains("GALANTIS_LISTENER__MAX_CONNECTIONS")
        );
        assert!(
            bad(|c| c.listener.header_read_timeout_secs = 0)
                .contains("GALANTIS_LISTENER__HEADER_READ_TIMEOUT_SECS")
        );
        assert!(
            bad(|c| c.listener.idle_timeout_secs = 0)
                .contains("GALANTIS_LISTENER__IDLE_TIMEOUT_SECS")
        );
        assert!(
            bad(|c| c.listener.body_read_timeout_secs = 0)
                .contains("GALANTIS_LISTENER__BODY_READ_TIMEOUT_SECS")
        );
        assert!(
            bad(|c| c.metrics.token = Some(SecretString::from("short")))
                .contains("GALANTIS_METRICS__TOKEN")
        );
        let c = Config {
            metrics: MetricsConfig {
                token: Some(SecretString::from("metrics-token-0123456789")),
                bind: None,
            },
            ..Config::default()
        };
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("metrics-token-0123456789"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Config {
            master_key: Some(SecretString::from("c2VjcmV0")),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn credit_packs_are_checked() {
        assert!(BillingConfig::default().validate().is_ok());
        for (price, ok) in [
            ("10.00", true),
            ("7", true),
            ("0.5", true),
            ("0", false),
            ("0.00", false),
            ("-1", false),
            ("1e3", false),
            ("12.345", false),
            ("12.", false),
            ("", false),
        ] {
            assert_eq!(is_positive_decimal(price), ok, "{price}");
        }
        let mut b = BillingConfig::default();
        b.credit_packs[1].id = b.credit_packs[0].id.clone();
        assert!(b.validate().unwrap_err().0.contains("twice"));
        let mut b = BillingConfig::default();
        b.credit_packs[0].credits = 0;
        assert!(b.validate().is_err());
        let mut b = BillingConfig::default();
        b.credit_packs[0].currency_code = "usd".into();
        assert!(b.validate().is_err());
    }
}
