//! What the sandbox is told: numbers, tokens, limits, webhook behaviour,
//! failures and templates. Everything but the clock and the bind address is
//! plain serde data, so the same types serve the Rust API and the JSON
//! control API. Durations are whole milliseconds (`*_ms`) in both.

use std::net::SocketAddr;
use std::sync::Arc;

use galantis_core::{Clock, SystemClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the sandbox signs its webhooks with unless told otherwise. It is
/// also the Meta app secret `galantis serve` accepts in embedded development
/// mode when none is configured (its `config::DEV_META_APP_SECRET` is this
/// constant), so a standalone sandbox and a development server agree without
/// either being configured.
pub const DEV_APP_SECRET: &str = "galantis-dev-meta-app-secret";

/// The phone number id of the sandbox's built-in development number.
pub const DEV_PHONE_NUMBER_ID: &str = "100000000000001";
/// The WABA id of the built-in development number.
pub const DEV_WABA_ID: &str = "200000000000001";
/// Its display number (digits, as webhooks' `metadata.display_phone_number`).
pub const DEV_DISPLAY_PHONE_NUMBER: &str = "15550000001";

/// Everything a sandbox starts with.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Where `MetaSandbox::spawn` listens (port 0: any free port).
    pub bind: SocketAddr,
    /// Source of "now" for rate limits, service windows and webhook
    /// timestamps. Delays (status progression, template review, retries)
    /// are real time, since they only pace background delivery.
    pub clock: Arc<dyn Clock>,
    pub settings: SandboxSettings,
    pub webhooks: WebhookBehaviour,
    pub numbers: Vec<NumberConfig>,
    /// Templates present from the start (besides each WABA's `hello_world`).
    pub templates: Vec<TemplateSeed>,
    pub failures: Vec<FailureRule>,
    /// When set, every `/sandbox/…` control route needs `Authorization:
    /// Bearer <control_token>` (compared in constant time).
    pub control_token: Option<String>,
    /// Mounted inside `galantis serve`: the webhook target and the signing
    /// secret are the server's choice and cannot be changed through the
    /// control API (otherwise it would be an SSRF and a signing oracle).
    pub locked: bool,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("bind", &self.bind)
            .field("settings", &self.settings)
            .field("webhooks", &self.webhooks)
            .field("numbers", &self.numbers)
            .field("templates", &self.templates.len())
            .field("failures", &self.failures)
            .field(
                "control_token",
                &self.control_token.as_ref().map(|_| "[redacted]"),
            )
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: Arc::new(SystemClock),
            settings: SandboxSettings::default(),
            webhooks: WebhookBehaviour::default(),
            numbers: vec![NumberConfig::new(DEV_PHONE_NUMBER_ID, DEV_WABA_ID)],
            templates: Vec::new(),
            failures: Vec::new(),
            control_token: None,
            locked: false,
        }
    }
}

impl SandboxConfig {
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Status and inbound webhooks go to `url` (e.g.
    /// `http://127.0.0.1:8080/webhooks/meta`).
    pub fn with_webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhooks.url = Some(url.into());
        self
    }

    pub fn with_app_secret(mut self, secret: impl Into<String>) -> Self {
        self.settings.app_secret = secret.into();
        self
    }

    /// Control routes require this bearer token.
    pub fn with_control_token(mut self, token: impl Into<String>) -> Self {
        self.control_token = Some(token.into());
        self
    }

    /// Graph routes accept only these access tokens.
    pub fn with_access_tokens(mut self, tokens: Vec<String>) -> Self {
        self.settings.tokens = tokens;
        self
    }

    /// The webhook URL and signing secret can no longer be changed through
    /// the control API (the in-process mount).
    pub fn locked(mut self) -> Self {
        self.locked = true;
        self
    }

    /// Adds a number (the built-in development number stays unless `numbers`
    /// is replaced).
    pub fn with_number(mut self, number: NumberConfig) -> Self {
        self.numbers
            .retain(|n| n.phone_number_id != number.phone_number_id);
        self.numbers.push(number);
        self
    }

    pub fn with_template(mut self, template: TemplateSeed) -> Self {
        self.templates.push(template);
        self
    }
}

/// Global behaviour. Changeable at run time with `PATCH /sandbox/settings`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Signs webhooks (`X-Hub-Signature-256`). Never returned by the control API.
    #[serde(skip_serializing)]
    pub app_secret: String,
    /// Accepted bearer tokens. Empty: any non-empty token is accepted
    /// (convenient for demos; tests should list theirs).
    pub tokens: Vec<String>,
    /// Pair rate: one message per this many ms from a number to one
    /// recipient…
    pub pair_interval_ms: u64,
    /// …with this many back to back. Meta tolerates bursts of up to 45; the
    /// sandbox is stricter by default so that missing pacing shows up.
    pub pair_burst: u32,
    /// The customer-service window opened by an inbound message.
    pub window_hours: u32,
    /// A submitted template is reviewed after this long.
    pub template_review_ms: u64,
    /// Templates whose name starts with this are rejected on review.
    pub reject_prefix: String,
    /// The rejection `reason` in the status webhook.
    pub reject_reason: String,
    /// HTTP status of throttling errors (130429, 131056, …). Meta documents
    /// 429 but has been seen answering 400; clients must key on `code`.
    pub throttle_http_status: u16,
    /// Larger request bodies get a Meta-style 413.
    pub max_body_bytes: usize,
    /// How many accepted messages the log keeps (counters are unbounded).
    pub log_capacity: usize,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            app_secret: DEV_APP_SECRET.to_owned(),
            tokens: Vec::new(),
            pair_interval_ms: 6_000,
            pair_burst: 5,
            window_hours: 24,
            template_review_ms: 2_000,
            reject_prefix: "reject_".to_owned(),
            reject_reason: "INVALID_FORMAT".to_owned(),
            throttle_http_status: 429,
            max_body_bytes: 1024 * 1024,
            log_capacity: 10_000,
        }
    }
}

/// One business phone number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    pub phone_number_id: String,
    pub waba_id: String,
    /// Digits only, as in webhooks' `metadata.display_phone_number`.
    #[serde(default = "default_display")]
    pub display_phone_number: String,
    #[serde(default = "default_verified_name")]
    pub verified_name: String,
    /// Throughput: messages per second (Meta: 80 by default, 20 for
    /// coexistence numbers, up to 1,000 after an upgrade).
    #[serde(default = "default_mps")]
    pub messages_per_second: u32,
    #[serde(default = "default_quality")]
    pub quality_rating: String,
    /// When non-empty, only these tokens may use this number (others get
    /// the "object does not exist" error, as Meta answers a token without
    /// access). Tokens must also be accepted globally.
    #[serde(default)]
    pub access_tokens: Vec<String>,
}

fn default_display() -> String {
    DEV_DISPLAY_PHONE_NUMBER.to_owned()
}
fn default_verified_name() -> String {
    "Galantis Sandbox".to_owned()
}
fn default_mps() -> u32 {
    80
}
fn default_quality() -> String {
    "GREEN".to_owned()
}

impl NumberConfig {
    pub fn new(phone_number_id: impl Into<String>, waba_id: impl Into<String>) -> Self {
        Self {
            phone_number_id: phone_number_id.into(),
            waba_id: waba_id.into(),
            display_phone_number: default_display(),
            verified_name: default_verified_name(),
            messages_per_second: default_mps(),
            quality_rating: default_quality(),
            access_tokens: Vec::new(),
        }
    }

    pub fn display(mut self, digits: impl Into<String>) -> Self {
        self.display_phone_number = digits.into();
        self
    }

    pub fn messages_per_second(mut self, mps: u32) -> Self {
        self.messages_per_second = mps;
        self
    }
}

/// How status and inbound webhooks are delivered. Changeable at run time
/// with `PATCH /sandbox/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookBehaviour {
    /// Where webhooks are POSTed; none: statuses are only logged.
    pub url: Option<String>,
    /// Delay after acceptance of the `sent` status (or of `failed`).
    pub sent_after_ms: u64,
    /// Delay after acceptance of `delivered`; none: never delivered.
    pub delivered_after_ms: Option<u64>,
    /// Delay after acceptance of `read`; none: never read.
    pub read_after_ms: Option<u64>,
    /// Delay of `played` for audio and video; none: never played.
    pub played_after_ms: Option<u64>,
    /// Chance (0–1) that any webhook is POSTed twice.
    pub duplicate_probability: f64,
    /// Chance (0–1) that a message's statuses arrive in reverse order (their
    /// `timestamp`s stay true, as with Meta).
    pub reorder_probability: f64,
    /// Attempts per webhook when the receiver fails (non-2xx or no answer).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, capped at 30 s.
    pub retry_base_ms: u64,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
}

impl Default for WebhookBehaviour {
    fn default() -> Self {
        Self {
            url: None,
            sent_after_ms: 100,
            delivered_after_ms: Some(500),
            read_after_ms: Some(2_000),
            played_after_ms: None,
            duplicate_probability: 0.0,
            reorder_probability: 0.0,
            max_attempts: 5,
            retry_base_ms: 250,
            timeout_ms: 10_000,
        }
    }
}

/// Whether a failure is an error answer or an accepted message that later
/// gets a `failed` status webhook.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Sync,
    Async,
}

/// "Sends matching this fail with `code`." Rules are tried in order; the
/// first match applies. Number-wide rules (no `recipient`) model
/// tenant-halting states such as 190, 131042, 131031 or 368.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FailureRule {
    /// Only sends from this number (none: any number).
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Only sends to this wa_id, digits only (none: any recipient).
    #[serde(default)]
    pub recipient: Option<String>,
    pub code: i64,
    #[serde(default)]
    pub mode: FailureMode,
    /// Applies this many times, then retires (none: forever). `Some(2)`
    /// models a transient failure that a retry gets past.
    #[serde(default)]
    pub times: Option<u32>,
    /// Overrides the standard `error_data.details`.
    #[serde(default)]
    pub details: Option<String>,
}

impl FailureRule {
    /// Every send to `wa_id` fails with `code`.
    pub fn recipient(wa_id: impl Into<String>, code: i64, mode: FailureMode) -> Self {
        Self {
            phone_number_id: None,
            recipient: Some(wa_id.into()),
            code,
            mode,
            times: None,
            details: None,
        }
    }

    /// Every send from `phone_number_id` fails with `code` (synchronously).
    pub fn number(phone_number_id: impl Into<String>, code: i64) -> Self {
        Self {
            phone_number_id: Some(phone_number_id.into()),
            recipient: None,
            code,
            mode: FailureMode::Sync,
            times: None,
            details: None,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// A template placed directly in a WABA (no review, no webhook).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateSeed {
    #[serde(default = "default_waba")]
    pub waba_id: String,
    pub name: String,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_category")]
    pub category: String,
    /// Meta's `components` array (HEADER, BODY, FOOTER, BUTTONS).
    pub components: Value,
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_waba() -> String {
    DEV_WABA_ID.to_owned()
}
fn default_language() -> String {
    "en".to_owned()
}
fn default_category() -> String {
    "UTILITY".to_owned()
}
fn default_status() -> String {
    "APPROVED".to_owned()
}

impl TemplateSeed {
    /// An APPROVED template in the development WABA whose body is `body`
    /// (with `{{1}}`… variables).
    pub fn approved(name: impl Into<String>, language: impl Into<String>, body: &str) -> Self {
        Self {
            waba_id: default_waba(),
            name: name.into(),
            language: language.into(),
            category: default_category(),
            components: serde_json::json!([{ "type": "BODY", "text": body }]),
            status: default_status(),
        }
    }

    pub fn waba(mut self, waba_id: impl Into<String>) -> Self {
        self.waba_id = waba_id.into();
        self
    }

    pub fn components(mut self, components: Value) -> Self {
        self.components = components;
        self
    }

    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.status = status.into();
        self
    }

    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }
}
