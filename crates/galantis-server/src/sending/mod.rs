//! Sending WhatsApp messages (design.md §4 "Messages", "Rate limits",
//! "Templates", "Billing"; docs/decisions/0005-sending.md).
//!
//! - [`client`]: the Cloud API client (`MessageSender`), also used against
//!   the sandbox.
//! - [`limiter`]: the `RateLimiter` port's in-process and Redis GCRA.
//! - [`queue`]: validating and queueing a send (`POST /api/v1/messages`),
//!   alone or in batches, inside the caller's transaction.
//! - [`facts`]: what queueing and the send job read about a send.
//! - [`job`]: `message.send`, the job that paces, calls Meta and records
//!   the outcome exactly once.
//! - [`kinds`]: registers the job kinds above with a node's runtime.
//! - [`connection`]: a tenant's WhatsApp connection, resolved and cached.
//! - [`templates`]: submit, sync, the periodic sync job.
//! - [`credits`]: charges, refunds and warnings.

pub mod client;
pub mod connection;
pub mod credits;
pub mod facts;
pub mod job;
pub mod kinds;
pub mod limiter;
pub mod queue;
pub mod recorder;
pub mod templates;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use galantis_core::TenantId;
use galantis_core::sending::{Rate, Slowdown, number_burst};
use galantis_sandbox::meta::{MetaSandbox, SandboxConfig};

use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, SendingConfig};

pub use client::CloudApi;
pub use connection::Resolved;
pub use limiter::Limiter;

/// The send path's shared parts: one per process.
#[derive(Clone)]
pub struct Sending {
    inner: Arc<Inner>,
}

struct Inner {
    config: SendingConfig,
    graph_version: String,
    meta_base_url: Option<String>,
    http: reqwest::Client,
    limiter: Limiter,
    slowdowns: DashMap<String, Slowdown>,
    cache: DashMap<TenantId, (Instant, Arc<Resolved>)>,
    embedded: Option<Embedded>,
    embedded_url: OnceLock<String>,
}

/// The sandbox mounted at `/sandbox-meta`, with its credentials: the Graph
/// access token this process's sends use (random per process: each node
/// sends to its own mount), and the secret its webhooks are signed with
/// (derived from the operator token, so any node of the deployment accepts
/// them; never the Meta app secret, so a sandbox delivery cannot pass for
/// Meta's).
struct Embedded {
    sandbox: MetaSandbox,
    access_token: String,
    webhook_secret: SecretString,
    control_token: SecretString,
}

/// How long a resolved connection is trusted before it is read again (a
/// change made on this node invalidates it at once).
const CACHE_TTL: Duration = Duration::from_secs(2);

impl Sending {
    /// Builds the send path: the HTTP client, the limiter (Redis when
    /// configured) and, when `Config::sandbox_mounted`, the embedded Meta
    /// sandbox (served at `/sandbox-meta`).
    pub async fn new(config: &Config) -> anyhow::Result<Self> {
        let s = &config.sending;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(s.connect_timeout_ms))
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("galantis/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let limiter = match &config.redis_url {
            Some(url) => Limiter::Redis(
                limiter::RedisLimiter::connect(url)
                    .await
                    .map_err(|e| anyhow::anyhow!("GALANTIS_REDIS_URL: cannot reach Redis: {e}"))?,
            ),
            None => Limiter::Local(limiter::LocalLimiter::default()),
        };
        let embedded = if config.sandbox_mounted() {
            let control_token = crate::sandbox::operator_token(config)?;
            let access_token = format!("sandbox-{}", crate::sandbox::random_hex(16)?);
            let webhook_secret = SecretString::from(galantis_sandbox::meta::webhook_secret_for(
                control_token.expose_secret(),
            ));
            let sandbox = MetaSandbox::new(
                SandboxConfig::default()
                    .with_app_secret(webhook_secret.expose_secret())
                    .with_access_tokens(vec![access_token.clone()])
                    .with_control_token(control_token.expose_secret())
                    .with_webhook_url(format!("{}/webhooks/meta", config.public_url()))
                    .locked(),
            );
            Some(Embedded {
                sandbox,
                access_token,
                webhook_secret,
                control_token,
            })
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config: s.clone(),
                graph_version: config.meta_graph_version.clone(),
                meta_base_url: config.meta_base_url.clone(),
                http,
                limiter,
                slowdowns: DashMap::new(),
                cache: DashMap::new(),
                embedded,
                embedded_url: OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &SendingConfig {
        &self.inner.config
    }

    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// A Cloud API client for `base_url` (with the operator token for the
    /// embedded sandbox's control routes, and only for it).
    pub fn api(&self, base_url: &str) -> CloudApi {
        let api =
            CloudApi::with_client(self.inner.http.clone(), base_url, &self.inner.graph_version);
        match (&self.inner.embedded, self.inner.embedded_url.get()) {
            (Some(e), Some(url)) if url == base_url => {
                api.with_control_token(Some(e.control_token.expose_secret().to_owned()))
            }
            _ => api,
        }
    }

    /// The embedded sandbox, when this process serves one.
    pub fn embedded_sandbox(&self) -> Option<&MetaSandbox> {
        self.inner.embedded.as_ref().map(|e| &e.sandbox)
    }

    /// The Graph access token of tenants without stored credentials, when
    /// they send to the embedded sandbox.
    pub fn sandbox_access_token(&self) -> Option<&str> {
        self.inner
            .embedded
            .as_ref()
            .map(|e| e.access_token.as_str())
    }

    /// What the embedded sandbox signs its webhooks with.
    pub fn sandbox_webhook_secret(&self) -> Option<&SecretString> {
        self.inner.embedded.as_ref().map(|e| &e.webhook_secret)
    }

    /// Once the server listens at `addr`: the embedded sandbox is reached
    /// there, and posts its webhooks back to it.
    pub fn embedded_listening(&self, addr: std::net::SocketAddr, public_url: Option<&str>) {
        let host = if addr.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let _ = self
            .inner
            .embedded_url
            .set(format!("http://{host}/sandbox-meta"));
        if let Some(Embedded { sandbox: sb, .. }) = &self.inner.embedded {
            let url = match public_url {
                Some(p) => format!("{}/webhooks/meta", p.trim_end_matches('/')),
                None => format!("http://{host}/webhooks/meta"),
            };
            sb.update_webhooks(|w| w.url = Some(url));
        }
    }

    /// Where a tenant's sends go: the configured endpoint; else Meta for
    /// tenants with credentials and the embedded sandbox for the others
    /// (none when this process mounts no sandbox: see [`Self::has_sandbox`]).
    pub fn base_url(&self, has_credentials: bool) -> Option<String> {
        if let Some(u) = &self.inner.meta_base_url {
            return Some(u.clone());
        }
        if has_credentials {
            return Some(client::GRAPH_BASE_URL.to_owned());
        }
        self.inner.embedded_url.get().cloned()
    }

    /// Whether tenants without credentials have somewhere to send (a
    /// configured endpoint or the embedded sandbox).
    pub fn has_sandbox(&self) -> bool {
        self.inner.meta_base_url.is_some() || self.inner.embedded.is_some()
    }

    pub(crate) fn cached(&self, tenant: TenantId) -> Option<Arc<Resolved>> {
        self.inner
            .cache
            .get(&tenant)
            .filter(|e| e.0.elapsed() < CACHE_TTL)
            .map(|e| e.1.clone())
    }

    pub(crate) fn cache(&self, tenant: TenantId, r: Arc<Resolved>) {
        self.inner.cache.insert(tenant, (Instant::now(), r));
    }

    /// Forgets a tenant's resolved connection (after a change).
    pub fn invalidate(&self, tenant: TenantId) {
        self.inner.cache.remove(&tenant);
    }

    /// A number's pacing now: its configured rate, lowered while a
    /// slow-down after a 130429 lasts.
    pub fn number_rate(&self, phone_number_id: &str, configured: u32, now: DateTime<Utc>) -> Rate {
        let slow = self.inner.slowdowns.get(phone_number_id).map(|s| *s);
        let mps = Slowdown::effective(slow, configured, now);
        Rate::per_second(mps, number_burst(mps))
    }

    pub fn pair_rate(&self) -> Rate {
        let c = &self.inner.config;
        Rate::new(1, Duration::from_millis(c.pair_interval_ms), c.pair_burst)
    }

    /// Meta answered 130429 for this number: slow it down for a while.
    pub fn throttled(&self, phone_number_id: &str, now: DateTime<Utc>) {
        let cooldown = Duration::from_secs(self.inner.config.slowdown_secs);
        let mut e = self
            .inner
            .slowdowns
            .entry(phone_number_id.to_owned())
            .or_insert(Slowdown {
                factor: 1.0,
                until: now,
            });
        let current = (e.until > now).then_some(*e);
        *e = Slowdown::after_throttle(current, now, cooldown);
        metrics::counter!("galantis_rate_limiter_slowdowns_total").increment(1);
        tracing::warn!(
            phone_number_id,
            factor = e.factor,
            "Meta throttled the number (130429): pacing it down"
        );
    }

    /// The current slow-down factor of a number (1.0 when none).
    pub fn slowdown_factor(&self, phone_number_id: &str, now: DateTime<Utc>) -> f64 {
        self.inner
            .slowdowns
            .get(phone_number_id)
            .filter(|s| s.until > now)
            .map_or(1.0, |s| s.factor)
    }
}
