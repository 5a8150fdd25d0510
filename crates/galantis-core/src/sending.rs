//! Sending WhatsApp messages: the `MessageSender` and `RateLimiter` ports,
//! Meta's error classes (design.md §4 "Messages"), and the pacing
//! arithmetic (per-number throughput, per-recipient pair rate, adaptive
//! slow-down after a 130429). Pure: no IO, no clocks of its own.

pub mod check;

pub use check::{SendFacts, SendPlan, SendRefusal, check_send};

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message to hand to the Cloud API.
#[derive(Clone)]
pub struct SendRequest<'a> {
    pub phone_number_id: &'a str,
    /// The system-user token. Never logged: `Debug` hides it.
    pub access_token: &'a str,
    /// The Graph API message body (`messaging_product`, `to`, `type`, …),
    /// carrying `biz_opaque_callback_data` = the message's idempotency key.
    pub body: &'a Value,
}

impl fmt::Debug for SendRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Meta accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub wamid: String,
    pub wa_id: Option<String>,
    /// The answer came from the Meta sandbox (nothing reached WhatsApp).
    pub sandbox: bool,
}

/// An error in Meta's Graph envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaError {
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    pub details: Option<String>,
    /// For the record only: classification never looks at it.
    pub http_status: u16,
}

impl MetaError {
    pub fn class(&self) -> ErrorClass {
        classify(self.code)
    }

    /// A sentence for merchants: the code's meaning, then Meta's details.
    pub fn reason(&self) -> String {
        let base = human_reason(self.code);
        match &self.details {
            Some(d) if !d.is_empty() => format!("{base} ({d})"),
            _ => base.to_owned(),
        }
    }
}

/// Why a send did not end with a `wamid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Meta answered with an error.
    #[error("Meta error {}: {}", .0.code, .0.message)]
    Meta(MetaError),
    /// No usable answer. `maybe_accepted`: the request may have reached Meta
    /// (a timeout, a dropped connection after sending), so the outcome is
    /// unknown and the retry must reconcile before sending again.
    #[error("transport error: {message}")]
    Transport {
        message: String,
        maybe_accepted: bool,
    },
}

impl SendError {
    /// Transport failures are retryable (design.md §4: 5xx and timeouts).
    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Meta(e) => e.class(),
            SendError::Transport { .. } => ErrorClass::Retryable,
        }
    }
}

/// What reconciling an uncertain attempt found at Meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A message with this idempotency key was accepted (`wamid` when the
    /// source still knows it).
    Accepted { wamid: Option<String> },
    /// None was accepted.
    NotFound,
    /// The endpoint cannot answer (the real Cloud API has no lookup by
    /// `biz_opaque_callback_data`; its status webhooks echo it instead).
    Unsupported,
}

/// The port through which Galantis sends WhatsApp messages: the Cloud API
/// client and the sandbox implement it.
pub trait MessageSender: Send + Sync {
    fn send(
        &self,
        request: &SendRequest<'_>,
    ) -> impl Future<Output = Result<Accepted, SendError>> + Send;

    /// Did Meta accept a message carrying `idempotency_key` as its
    /// `biz_opaque_callback_data`?
    fn lookup(
        &self,
        phone_number_id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Lookup, SendError>> + Send;
}

/// How a Meta error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Try again with backoff (throttling, transient server errors).
    Retryable,
    /// This message can never be sent as it is: FAILED with the code.
    Permanent,
    /// The tenant's connection is broken (token, payment, lock, policy):
    /// its WhatsApp connection needs attention and its sends wait.
    TenantHalting,
}

/// Tenant-halting codes: 190 token invalid, 131042 payment, 131031 account
/// locked, 368 temporarily blocked for policy violations.
pub const TENANT_HALTING: [i64; 4] = [190, 131042, 131031, 368];

/// Classifies a Meta error by its `code` (never by HTTP status: Meta is
/// not consistent about those). Unknown codes are permanent: retrying what
/// we do not understand would only repeat it.
pub fn classify(code: i64) -> ErrorClass {
    match code {
        190 | 131042 | 131031 | 368 => ErrorClass::TenantHalting,
        // Throttling: app, WABA, number and pair rates; spam rate limit.
        4 | 80007 | 130429 | 131048 | 131056 | 133016 => ErrorClass::Retryable,
        // Unknown or temporary service errors.
        1 | 2 | 131000 | 131016 | 131057 | 133004 | 133005 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// A short human meaning of Meta's codes (the ones Galantis meets).
pub fn human_reason(code: i64) -> &'static str {
    match code {
        1 | 2 | 131000 | 131016 => "Meta had a temporary problem; the send is retried",
        4 | 80007 => "Meta's API rate limit was reached",
        100 => "Meta refused a parameter of the request",
        190 => "the WhatsApp access token is invalid or expired",
        368 => "the WhatsApp account is temporarily blocked for policy violations",
        130429 => "the phone number's throughput limit was reached",
        131021 => "the recipient is the sending number itself",
        131026 => {
            "the message could not be delivered to this recipient (not on WhatsApp, or cannot receive it)"
        }
        131031 => "the WhatsApp business account is locked",
        131042 => "there is a payment problem with the WhatsApp business account",
        131047 => {
            "more than 24 hours have passed since the customer last replied: only templates can be sent"
        }
        131048 => "the number is rate limited for spam",
        131049 => "Meta chose not to deliver this marketing message to keep engagement healthy",
        131056 => "too many messages to this recipient in a short time",
        131057 => "the WhatsApp account is in maintenance mode",
        132000 => "the template's parameter count does not match",
        132001 => "the template does not exist in this language or is not approved",
        132005 => "the translated template text is too long",
        132007 => "the template's content violates a WhatsApp policy",
        132012 => "a template parameter has the wrong format",
        132015 => "the template is paused",
        132016 => "the template is disabled",
        133004 | 133005 => "the WhatsApp service was temporarily unavailable",
        _ => "Meta refused the message",
    }
}

/// `count` events per `period`, at most `burst` back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rate {
    pub fn new(count: u32, period: Duration, burst: u32) -> Self {
        Self {
            count: count.max(1),
            period: if period.is_zero() {
                Duration::from_millis(1)
            } else {
                period
            },
            burst: burst.max(1),
        }
    }

    /// `n` per second with a burst of `burst`.
    pub fn per_second(n: u32, burst: u32) -> Self {
        Self::new(n, Duration::from_secs(1), burst)
    }

    /// The time one event costs.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Events per second (for reports).
    pub fn per_sec(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

/// What a limiter said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// One slot was taken: go.
    Now,
    /// Nothing was taken; a slot frees up after this long.
    Wait(Duration),
}

/// What a limiter limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A business phone number's throughput.
    Number(String),
    /// One number to one recipient (wa_id digits).
    Pair(String, String),
}

impl RateKey {
    /// A stable text form (Redis keys, metrics labels use only the scope).
    pub fn as_key(&self) -> String {
        match self {
            RateKey::Number(n) => format!("num:{n}"),
            RateKey::Pair(n, r) => format!("pair:{n}:{r}"),
        }
    }

    pub fn scope(&self) -> &'static str {
        match self {
            RateKey::Number(_) => "number",
            RateKey::Pair(..) => "pair",
        }
    }
}

/// Paces sends before the call. Implementations: in-process GCRA, and a
/// cross-node one over Redis.
pub trait RateLimiter: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Takes one slot of `key` at `rate` if one is free now.
    fn acquire(
        &self,
        key: &RateKey,
        rate: Rate,
    ) -> impl Future<Output = Result<Acquired, Self::Error>> + Send;
}

/// Default pacing of a number: Meta's standard throughput.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 80;
/// The most a number can be upgraded to.
pub const MAX_MESSAGES_PER_SECOND: u32 = 1_000;

/// The pacing burst for a number sending `mps` per second: a tenth of a
/// second's worth. Galantis paces smoothly so that network jitter never
/// bunches requests beyond what Meta tolerates (Meta allows a full second's
/// burst), while workers still have some slack to keep the rate up.
pub fn number_burst(mps: u32) -> u32 {
    (mps / 10).max(1)
}

/// After a 130429, a number's rate is halved for a while (each further
/// 130429 halves it again, down to 1/s); once the cool-down passes without
/// another, the configured rate is back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slowdown {
    pub factor: f64,
    pub until: DateTime<Utc>,
}

impl Slowdown {
    /// The slow-down after a 130429 at `now`, given the current one.
    pub fn after_throttle(
        current: Option<Slowdown>,
        now: DateTime<Utc>,
        cooldown: Duration,
    ) -> Slowdown {
        let factor = current
            .filter(|s| s.until > now)
            .map_or(0.5, |s| s.factor * 0.5)
            .max(0.001);
        Slowdown {
            factor,
            until: now + chrono::Duration::from_std(cooldown).unwrap_or_default(),
        }
    }

    /// The rate to pace at now: the configured one, or the lowered one while
    /// the slow-down lasts.
    pub fn effective(current: Option<Slowdown>, configured: u32, now: DateTime<Utc>) -> u32 {
        match current {
            Some(s) if s.until > now => ((f64::from(configured) * s.factor).floor() as u32).max(1),
            _ => configured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn errors_are_classified_by_code() {
        for c in [130429, 131056, 131057, 1, 2, 131000] {
            assert_eq!(classify(c), ErrorClass::Retryable, "{c}");
        }
        for c in [131047, 131026, 131049, 132000, 132001, 132016, 100, 999_999] {
            assert_eq!(classify(c), ErrorClass::Permanent, "{c}");
        }
        for c in TENANT_HALTING {
            assert_eq!(classify(c), ErrorClass::TenantHalting, "{c}");
        }
        let e = MetaError {
            code: 131047,
            subcode: None,
            message: "(#131047) Re-engagement message".into(),
            details: Some("Message failed to send".into()),
            http_status: 400,
        };
        assert!(e.reason().contains("24 hours"));
        assert_eq!(
            SendError::Transport {
                message: "timeout".into(),
                maybe_accepted: true
            }
            .class(),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn slowdowns_halve_and_expire() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cd = Duration::from_secs(30);
        let s = Slowdown::after_throttle(None, t0, cd);
        assert_eq!(Slowdown::effective(Some(s), 80, t0), 40);
        let s2 = Slowdown::after_throttle(Some(s), t0 + chrono::Duration::seconds(1), cd);
        assert_eq!(
            Slowdown::effective(Some(s2), 80, t0 + chrono::Duration::seconds(1)),
            20
        );
        assert_eq!(
            Slowdown::effective(Some(s2), 80, t0 + chrono::Duration::seconds(40)),
            80
        );
        // An expired slow-down starts again from a half.
        let s3 = Slowdown::after_throttle(Some(s2), t0 + chrono::Duration::seconds(60), cd);
        assert_eq!(s3.factor, 0.5);
        assert_eq!(Slowdown::effective(Some(s3), 1, t0), 1);
    }

    #[test]
    fn rates() {
        let r = Rate::per_second(80, number_burst(80));
        assert_eq!(r.interval(), Duration::from_micros(12_500));
        assert_eq!(r.burst, 8);
        assert_eq!(number_burst(5), 1);
        assert_eq!(RateKey::Pair("1".into(), "2".into()).as_key(), "pair:1:2");
    }
}
