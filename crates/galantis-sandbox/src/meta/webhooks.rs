//! Webhooks from the sandbox to Galantis: Meta's payload shapes, the
//! `X-Hub-Signature-256` signature, and background delivery with delays,
//! duplication, reordering and bounded retries.
//!
//! Delivery never runs on the request path: a send schedules its statuses
//! on a spawned task and answers at once. A semaphore bounds concurrent
//! POSTs so a 100,000-message campaign does not open 100,000 connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{Semaphore, watch};

use super::config::WebhookBehaviour;
use super::state::MetaSandbox;

/// Concurrent webhook POSTs at most.
const MAX_IN_FLIGHT: usize = 64;
/// Retry backoff never exceeds this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `sha256=<hex HMAC-SHA256 of body under secret>`, the value of
/// `X-Hub-Signature-256`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivery statistics (a snapshot).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WebhookCounters {
    /// Webhooks planned (a duplicate is not a separate plan).
    pub scheduled: u64,
    /// POSTs answered 2xx (duplicates included).
    pub delivered: u64,
    /// POST attempts that failed (non-2xx, timeout, refused).
    pub failed_attempts: u64,
    /// POSTs given up after `max_attempts`.
    pub abandoned: u64,
    pub duplicated: u64,
    /// Messages whose statuses were sent in reverse order.
    pub reordered: u64,
    /// Planned webhooks not yet finished (waiting for their delay, or retrying).
    pub pending: u64,
}

#[derive(Default)]
struct Atomics {
    scheduled: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    abandoned: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    pending: AtomicU64,
}

pub(super) struct Delivery {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    stats: Arc<Atomics>,
    stop: watch::Sender<bool>,
}

/// Where and how one batch of webhooks goes, fixed when it is planned.
struct Target {
    url: String,
    secret: String,
    behaviour: WebhookBehaviour,
}

impl Delivery {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .user_agent("facebookexternalua")
                .build()
                .unwrap_or_default(),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            stats: Arc::default(),
            stop: watch::channel(false).0,
        }
    }

    pub fn counters(&self) -> WebhookCounters {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookCounters {
            scheduled: get(&s.scheduled),
            delivered: get(&s.delivered),
            failed_attempts: get(&s.failed_attempts),
            abandoned: get(&s.abandoned),
            duplicated: get(&s.duplicated),
            reordered: get(&s.reordered),
            pending: get(&s.pending),
        }
    }

    /// Zeroes the statistics; `pending` keeps counting what is in flight.
    pub fn reset_counters(&self) {
        let s = &self.stats;
        for a in [
            &s.scheduled,
            &s.delivered,
            &s.failed_attempts,
            &s.abandoned,
            &s.duplicated,
            &s.reordered,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// Stops every delivery task at its next wait (sandbox shutdown).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Posts `plan` (delay in ms after now, payload) on a background task.
    fn schedule(&self, target: Target, plan: Vec<(u64, Value)>) {
        let n = plan.len() as u64;
        self.stats.scheduled.fetch_add(n, Ordering::Relaxed);
        self.stats.pending.fetch_add(n, Ordering::Relaxed);
        let client = self.client.clone();
        let slots = self.slots.clone();
        let stats = self.stats.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut left = n;
            for (delay, payload) in plan {
                let at = start + Duration::from_millis(delay);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let body = serde_json::to_vec(&payload).unwrap_or_default();
                let copies = if roll(target.behaviour.duplicate_probability) {
                    stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let ok = post(&client, &slots, &stats, &target, &body, &mut stop).await;
                    let counter = if ok {
                        &stats.delivered
                    } else {
                        &stats.abandoned
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                stats.pending.fetch_sub(1, Ordering::Relaxed);
                left -= 1;
            }
            // Stopped early: what was not sent is no longer pending.
            stats.pending.fetch_sub(left, Ordering::Relaxed);
        });
    }
}

/// One webhook, retried with exponential backoff until a 2xx or
/// `max_attempts`. True when delivered.
async fn post(
    client: &reqwest::Client,
    slots: &Semaphore,
    stats: &Atomics,
    target: &Target,
    body: &[u8],
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let b = &target.behaviour;
    let sig = signature(&target.secret, body);
    let attempts = b.max_attempts.max(1);
    for attempt in 1..=attempts {
        let sent = {
            let Ok(_permit) = slots.acquire().await else {
                return false;
            };
            client
                .post(&target.url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &sig)
                .timeout(Duration::from_millis(b.timeout_ms.max(1)))
                .body(body.to_vec())
                .send()
                .await
        };
        match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::debug!(status = %r.status(), attempt, "sandbox webhook refused"),
            Err(e) => tracing::debug!(error = %e, attempt, "sandbox webhook failed"),
        }
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if attempt < attempts {
            let backoff = Duration::from_millis(b.retry_base_ms)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }
    tracing::warn!(url = %target.url, attempts, "sandbox webhook abandoned");
    false
}

/// True with probability `p` (0 and 1 are exact).
pub(super) fn roll(p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    if p >= 1.0 {
        return true;
    }
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return false;
    }
    let unit = (u64::from_le_bytes(b) >> 11) as f64 / ((1u64 << 53) as f64);
    unit < p
}

impl MetaSandbox {
    /// Schedules `plan` to the configured webhook URL; without one the
    /// webhooks are dropped (the message log still shows the sends).
    pub(super) fn post_webhooks(&self, plan: Vec<(u64, Value)>) {
        if plan.is_empty() {
            return;
        }
        let target = {
            let w = self.world();
            let Some(url) = w.webhooks.url.clone() else {
                return;
            };
            Target {
                url,
                secret: w.settings.app_secret.clone(),
                behaviour: w.webhooks.clone(),
            }
        };
        self.shared.delivery.schedule(target, plan);
    }

    pub(super) fn note_reordered(&self) {
        self.shared
            .delivery
            .stats
            .reordered
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn roll_extremes_are_exact() {
        assert!((0..100).all(|_| roll(1.0)));
        assert!((0..100).all(|_| !roll(0.0)));
    }
}
