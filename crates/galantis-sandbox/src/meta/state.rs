//! The sandbox's world: numbers, templates, windows, limiters, counters and
//! the log of accepted messages, behind one mutex. Every operation holds the
//! lock briefly and never across an `.await`; webhook delivery happens on
//! background tasks that only take a snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::Clock;
use serde::Serialize;
use serde_json::Value;

use super::config::{FailureRule, NumberConfig, SandboxConfig, SandboxSettings, WebhookBehaviour};
use super::limits::{Limiter, Rate};
use super::templates::Template;
use super::webhooks::{Delivery, WebhookCounters};

/// The Meta Cloud API simulator: cheap to clone, shared by the HTTP
/// handlers, background tasks and in-process callers (tests, the embedded
/// demo). Every control operation of `/sandbox/…` is also a method here.
#[derive(Clone)]
pub struct MetaSandbox {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub clock: Arc<dyn Clock>,
    pub world: Mutex<World>,
    pub delivery: Delivery,
    pub control_token: Option<String>,
    pub locked: bool,
}

/// A failure rule with its remaining uses.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFailure {
    pub id: u64,
    #[serde(flatten)]
    pub rule: FailureRule,
    pub remaining: Option<u32>,
}

pub(super) struct World {
    pub settings: SandboxSettings,
    pub webhooks: WebhookBehaviour,
    pub numbers: BTreeMap<String, NumberConfig>,
    pub templates: Vec<Template>,
    pub failures: Vec<ActiveFailure>,
    /// Last inbound message per (phone number id, wa_id).
    pub windows: HashMap<(String, String), DateTime<Utc>>,
    pub throughput: HashMap<String, Limiter<()>>,
    pub pair: Limiter<(String, String)>,
    pub counters: Counters,
    pub log: VecDeque<SentMessage>,
    pub log_dropped: u64,
    next_id: u64,
}

/// Evidence for tests and benchmarks: what was asked and what was accepted.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counters {
    /// `POST …/messages` requests received, whatever their outcome.
    pub requests: u64,
    /// Messages accepted (a `wamid` was returned), including those that
    /// later get a `failed` webhook.
    pub accepted: u64,
    pub rejected: u64,
    pub errors_by_code: BTreeMap<i64, u64>,
    pub accepted_by_phone_number: BTreeMap<String, u64>,
    /// Accepted messages per recipient wa_id.
    pub accepted_by_recipient: BTreeMap<String, u64>,
    /// Accepted messages per `biz_opaque_callback_data` (Galantis' idempotency key).
    pub accepted_by_callback_data: BTreeMap<String, u64>,
    /// How many `biz_opaque_callback_data` values were accepted more than once.
    pub duplicate_callback_data: u64,
    /// Accepted messages scheduled to fail asynchronously.
    pub async_failures: u64,
    pub inbound_messages: u64,
    pub templates_submitted: u64,
    pub webhooks: WebhookCounters,
}

/// One accepted message, as the log shows it. Every entry is a sandbox send:
/// nothing left this process for WhatsApp.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentMessage {
    pub id: String,
    pub phone_number_id: String,
    pub waba_id: String,
    /// `to` as the request gave it.
    pub to: String,
    pub wa_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub template_name: Option<String>,
    pub template_language: Option<String>,
    /// Pricing category: the template's (lower case) or `service`.
    pub category: String,
    pub biz_opaque_callback_data: Option<String>,
    pub accepted_at: DateTime<Utc>,
    /// Always true: marks the message as simulated.
    pub sandbox: bool,
    /// Set when a failure rule makes this message fail asynchronously.
    pub failure_code: Option<i64>,
    /// The request body as received.
    pub request: Value,
}

impl World {
    fn new(config: &SandboxConfig) -> Self {
        let s = &config.settings;
        let mut w = World {
            settings: s.clone(),
            webhooks: config.webhooks.clone(),
            numbers: BTreeMap::new(),
            templates: Vec::new(),
            failures: Vec::new(),
            windows: HashMap::new(),
            throughput: HashMap::new(),
            pair: Limiter::new(pair_rate(s)),
            counters: Counters::default(),
            log: VecDeque::new(),
            log_dropped: 0,
            next_id: 1,
        };
        for n in &config.numbers {
            w.upsert_number(n.clone());
        }
        for f in &config.failures {
            w.add_failure(f.clone());
        }
        w
    }

    /// Ids look like Meta's (long numeric strings) and never repeat.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}", 900_000_000_000_000u64 + self.next_id)
    }

    pub fn upsert_number(&mut self, n: NumberConfig) {
        let rate = Rate::per_second(n.messages_per_second);
        self.throughput
            .insert(n.phone_number_id.clone(), Limiter::new(rate));
        if !self.templates.iter().any(|t| t.waba_id == n.waba_id) {
            let id = self.next_id();
            self.templates
                .push(super::templates::hello_world(&n.waba_id, id));
        }
        self.numbers.insert(n.phone_number_id.clone(), n);
    }

    pub fn add_failure(&mut self, rule: FailureRule) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let remaining = rule.times;
        self.failures.push(ActiveFailure {
            id,
            rule,
            remaining,
        });
        id
    }

    /// The first failure rule matching a send, if any (not consumed).
    pub fn matching_failure(&self, phone_number_id: &str, wa_id: &str) -> Option<usize> {
        self.failures.iter().position(|f| {
            f.remaining != Some(0)
                && f.rule
                    .phone_number_id
                    .as_deref()
                    .is_none_or(|p| p == phone_number_id)
                && f.rule.recipient.as_deref().is_none_or(|r| r == wa_id)
        })
    }

    /// Uses up one application of rule `index`.
    pub fn consume_failure(&mut self, index: usize) {
        if let Some(f) = self.failures.get_mut(index)
            && let Some(n) = f.remaining.as_mut()
        {
            *n = n.saturating_sub(1);
        }
    }

    pub fn window_open(&self, phone_number_id: &str, wa_id: &str, now: DateTime<Utc>) -> bool {
        let hours = i64::from(self.settings.window_hours);
        self.windows
            .get(&(phone_number_id.to_owned(), wa_id.to_owned()))
            .is_some_and(|opened| now >= *opened && now - *opened < chrono::Duration::hours(hours))
    }

    pub fn record_rejection(&mut self, code: i64) {
        self.counters.rejected += 1;
        *self.counters.errors_by_code.entry(code).or_default() += 1;
    }

    pub fn record_accepted(&mut self, m: SentMessage) {
        let c = &mut self.counters;
        c.accepted += 1;
        *c.accepted_by_phone_number
            .entry(m.phone_number_id.clone())
            .or_default() += 1;
        *c.accepted_by_recipient.entry(m.wa_id.clone()).or_default() += 1;
        if let Some(key) = &m.biz_opaque_callback_data {
            let n = c.accepted_by_callback_data.entry(key.clone()).or_default();
            *n += 1;
            if *n == 2 {
                c.duplicate_callback_data += 1;
            }
        }
        if m.failure_code.is_some() {
            c.async_failures += 1;
        }
        if self.settings.log_capacity == 0 {
            self.log_dropped += 1;
            return;
        }
        while self.log.len() >= self.settings.log_capacity {
            self.log.pop_front();
            self.log_dropped += 1;
        }
        self.log.push_back(m);
    }
}

pub(super) fn pair_rate(s: &SandboxSettings) -> Rate {
    Rate::new(
        1,
        Duration::from_millis(s.pair_interval_ms.max(1)),
        s.pair_burst,
    )
}

/// A new message id: `wamid.` and base64 of a marker and a UUIDv7, so it is
/// unique, roughly time-ordered and recognisably the sandbox's.
pub(super) fn new_wamid() -> String {
    use base64::Engine;
    let mut raw = b"SANDBOX:".to_vec();
    raw.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
    format!(
        "wamid.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

impl MetaSandbox {
    /// The sandbox's state without a listener (see [`super::router`] to mount
    /// it, or [`MetaSandbox::spawn`] to serve it).
    pub fn new(config: SandboxConfig) -> Self {
        let mut world = World::new(&config);
        for seed in &config.templates {
            if let Err(e) = super::catalog::insert_seed(&mut world, seed.clone()) {
                tracing::warn!(template = %seed.name, error = %e, "sandbox: template seed ignored");
            }
        }
        Self {
            shared: Arc::new(Shared {
                clock: config.clock.clone(),
                world: Mutex::new(world),
                delivery: Delivery::new(),
                control_token: config.control_token.clone(),
                locked: config.locked,
            }),
        }
    }

    pub(super) fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.shared.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Adds or replaces a number (its throughput budget starts afresh).
    pub fn upsert_number(&self, number: NumberConfig) {
        self.world().upsert_number(number);
    }

    pub fn numbers(&self) -> Vec<NumberConfig> {
        self.world().numbers.values().cloned().collect()
    }

    pub fn settings(&self) -> SandboxSettings {
        self.world().settings.clone()
    }

    /// Changes global settings; a changed pair rate starts afresh.
    pub fn update_settings(&self, f: impl FnOnce(&mut SandboxSettings)) {
        let mut w = self.world();
        f(&mut w.settings);
        let rate = pair_rate(&w.settings);
        if w.pair.rate() != rate {
            w.pair.set_rate(rate);
        }
    }

    /// Replaces the accepted bearer tokens (empty: any token is accepted).
    pub fn set_tokens(&self, tokens: Vec<String>) {
        self.update_settings(|s| s.tokens = tokens);
    }

    /// Whether the webhook target and signing secret are fixed (the
    /// in-process mount of `galantis serve`).
    pub fn locked(&self) -> bool {
        self.shared.locked
    }

    /// Whether `token` is the control token (true when none is required).
    pub fn control_token_ok(&self, token: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.shared.control_token, token) {
            (None, _) => true,
            (Some(want), Some(got)) => want.as_bytes().ct_eq(got.as_bytes()).into(),
            (Some(_), None) => false,
        }
    }

    pub fn webhook_behaviour(&self) -> WebhookBehaviour {
        self.world().webhooks.clone()
    }

    pub fn update_webhooks(&self, f: impl FnOnce(&mut WebhookBehaviour)) {
        f(&mut self.world().webhooks);
    }

    /// Adds a failure rule; returns its id.
    pub fn add_failure(&self, rule: FailureRule) -> u64 {
        self.world().add_failure(rule)
    }

    pub fn failures(&self) -> Vec<ActiveFailure> {
        self.world().failures.clone()
    }

    /// Removes one rule (`Some(id)`) or all of them.
    pub fn clear_failures(&self, id: Option<u64>) {
        let mut w = self.world();
        match id {
            Some(id) => w.failures.retain(|f| f.id != id),
            None => w.failures.clear(),
        }
    }

    /// Opens (as of now) or closes the customer-service window of `wa_id`
    /// with a number, without posting any webhook.
    pub fn set_window(&self, phone_number_id: &str, wa_id: &str, open: bool) {
        let now = self.now();
        let key = (phone_number_id.to_owned(), wa_id.to_owned());
        let mut w = self.world();
        if open {
            w.windows.insert(key, now);
        } else {
            w.windows.remove(&key);
        }
    }

    pub fn window_open(&self, phone_number_id: &str, wa_id: &str) -> bool {
        let now = self.now();
        self.world().window_open(phone_number_id, wa_id, now)
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.world().counters.clone();
        c.webhooks = self.shared.delivery.counters();
        c
    }

    /// Accepted messages to `wa_id` so far.
    pub fn sends_to(&self, wa_id: &str) -> u64 {
        let w = self.world();
        w.counters
            .accepted_by_recipient
            .get(wa_id)
            .copied()
            .unwrap_or(0)
    }

    /// Accepted messages carrying this `biz_opaque_callback_data` so far.
    pub fn sends_with_callback_data(&self, data: &str) -> u64 {
        let w = self.world();
        w.counters
            .accepted_by_callback_data
            .get(data)
            .copied()
            .unwrap_or(0)
    }

    /// The log of accepted messages, oldest first (bounded by
    /// `log_capacity`).
    pub fn messages(&self) -> Vec<SentMessage> {
        self.world().log.iter().cloned().collect()
    }

    /// Forgets counters, the log, rate-limit state and service windows.
    /// Numbers, templates, failure rules and settings stay.
    pub fn reset(&self) {
        let mut w = self.world();
        w.counters = Counters::default();
        w.log.clear();
        w.log_dropped = 0;
        w.windows.clear();
        w.pair.clear();
        for l in w.throughput.values_mut() {
            l.clear();
        }
        drop(w);
        self.shared.delivery.reset_counters();
    }

    /// Waits until no webhook is pending (scheduled or being retried), up to
    /// `timeout`. Returns whether that happened.
    pub async fn webhooks_settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.delivery.counters().pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
