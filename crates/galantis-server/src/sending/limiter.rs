//! The `RateLimiter` port's two implementations: in-process GCRA (the
//! `governor` crate) and a cross-node GCRA in Redis (one Lua script, Redis'
//! own clock), chosen by `GALANTIS_REDIS_URL`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use galantis_core::sending::{Acquired, Rate, RateKey, RateLimiter};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(String);

/// One keyed GCRA limiter per distinct rate (a number whose rate changes,
/// e.g. after a 130429, moves to a fresh limiter at its new rate).
#[derive(Default)]
pub struct LocalLimiter {
    limiters: DashMap<(&'static str, Rate), Arc<DefaultKeyedRateLimiter<String>>>,
    calls: AtomicU64,
    clock: DefaultClock,
}

impl LocalLimiter {
    fn limiter(&self, scope: &'static str, rate: Rate) -> Arc<DefaultKeyedRateLimiter<String>> {
        self.limiters
            .entry((scope, rate))
            .or_insert_with(|| {
                let period = rate.interval().max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .expect("a non-zero period")
                    .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
                Arc::new(DefaultKeyedRateLimiter::keyed(quota))
            })
            .clone()
    }

    fn prune(&self) {
        for l in self.limiters.iter() {
            l.value().retain_recent();
            l.value().shrink_to_fit();
        }
        self.limiters.retain(|_, l| !l.is_empty());
    }

    pub fn check(&self, key: &RateKey, rate: Rate) -> Acquired {
        if self.calls.fetch_add(1, Ordering::Relaxed) % 50_000 == 49_999 {
            self.prune();
        }
        let limiter = self.limiter(key.scope(), rate);
        match limiter.check_key(&key.as_key()) {
            Ok(()) => Acquired::Now,
            Err(not_until) => Acquired::Wait(not_until.wait_time_from(self.clock.now())),
        }
    }
}

/// GCRA over Redis: the theoretical arrival time of each key (in
/// microseconds of Redis' clock) is read, checked and advanced atomically.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return ahead - tolerance
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"#;

pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to Redis"))??;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA_LUA),
            prefix: "galantis:rl:".into(),
        })
    }

    /// Keys live under this prefix (tests use their own).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub async fn check(&self, key: &RateKey, rate: Rate) -> Result<Acquired, LimiterError> {
        let interval = rate.interval().as_micros().max(1) as i64;
        let tolerance = interval * i64::from(rate.burst.saturating_sub(1));
        let mut conn = self.conn.clone();
        let wait_us: i64 = self
            .script
            .key(format!("{}{}", self.prefix, key.as_key()))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimiterError(e.to_string()))?;
        Ok(if wait_us <= 0 {
            Acquired::Now
        } else {
            Acquired::Wait(Duration::from_micros(wait_us as u64))
        })
    }
}

/// The configured limiter.
pub enum Limiter {
    Local(LocalLimiter),
    Redis(RedisLimiter),
}

impl Limiter {
    pub fn kind(&self) -> &'static str {
        match self {
            Limiter::Local(_) => "in-process",
            Limiter::Redis(_) => "redis",
        }
    }
}

impl RateLimiter for Limiter {
    type Error = LimiterError;

    async fn acquire(&self, key: &RateKey, rate: Rate) -> Result<Acquired, LimiterError> {
        let r = match self {
            Limiter::Local(l) => Ok(l.check(key, rate)),
            Limiter::Redis(r) => r.check(key, rate).await,
        };
        if let Ok(Acquired::Wait(d)) = &r {
            metrics::counter!("galantis_rate_limiter_waits_total", "scope" => key.scope())
                .increment(1);
            metrics::histogram!("galantis_rate_limiter_wait_seconds", "scope" => key.scope())
                .record(d.as_secs_f64());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_gcra_allows_the_burst_then_paces() {
        let l = LocalLimiter::default();
        let rate = Rate::per_second(10, 3);
        let key = RateKey::Number("n".into());
        for _ in 0..3 {
            assert_eq!(l.check(&key, rate), Acquired::Now);
        }
        match l.check(&key, rate) {
            Acquired::Wait(d) => assert!(d <= Duration::from_millis(100), "{d:?}"),
            Acquired::Now => panic!("the burst is spent"),
        }
        // Another key has its own budget.
        assert_eq!(l.check(&RateKey::Number("m".into()), rate), Acquired::Now);
    }
}
