//! Per-client-IP pacing of widget submissions (GCRA, in-process).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::StorefrontConfig;

/// One keyed limiter per node (a shopper hits one node per request; the
/// cap is a spam brake, not a quota, so it need not be cluster-wide).
#[derive(Clone)]
pub struct SubmissionLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl SubmissionLimiter {
    pub fn new(c: &StorefrontConfig) -> Self {
        let per_minute = NonZeroU32::new(c.subscriptions_per_minute_per_ip.max(1)).expect("max(1)");
        let burst = NonZeroU32::new(c.subscriptions_burst_per_ip.max(1)).expect("max(1)");
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
        }
    }

    /// Ok, or the seconds to wait before the next attempt may pass.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs().max(1)
        })
    }
}
