//! Exact rate-limit arithmetic for the sandbox: GCRA (the generic cell rate
//! algorithm, equivalent to a token bucket) in integer time.
//!
//! A rate is `count` events per `period` with a burst of `burst` events. To
//! stay exact for any `count` (80/s does not divide a second into whole
//! nanoseconds evenly for every rate, 3/s certainly does not), time is scaled
//! by `count`: one event costs `period_ns` scaled units and the clock runs at
//! `count` units per nanosecond. Everything is `i128`, so there is no rounding
//! and no overflow for any date `chrono` can represent.
//!
//! Deciding and committing are separate steps so that a send checked against
//! two limiters (number throughput, then pair rate) consumes neither budget
//! when the second one refuses.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// `count` events per `period`, allowing `burst` back-to-back events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period_ns: i128,
    burst: u32,
}

impl Rate {
    /// `count` per `period` with a burst of `burst` (both at least 1).
    pub fn new(count: u32, period: Duration, burst: u32) -> Self {
        Self {
            count: count.max(1),
            period_ns: period.as_nanos().max(1) as i128,
            burst: burst.max(1),
        }
    }

    /// `n` per second with a burst of `n`: up to `n` sends in any instant,
    /// then one every `1/n` s. This is how a per-number throughput limit
    /// reads ("80 messages per second").
    pub fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1), n)
    }

    /// Scaled cost of one event (the emission interval).
    fn interval(&self) -> i128 {
        self.period_ns
    }

    /// Scaled burst tolerance: how far ahead of "now" the theoretical
    /// arrival time may run.
    fn tolerance(&self) -> i128 {
        i128::from(self.burst - 1) * self.period_ns
    }

    fn scaled(&self, now: DateTime<Utc>) -> i128 {
        nanos(now) * i128::from(self.count)
    }

    /// Would one more event at `now` be allowed, given the stored
    /// theoretical arrival time `tat` (none: never used)?
    pub fn decide(&self, tat: Option<i128>, now: DateTime<Utc>) -> Decision {
        let now_s = self.scaled(now);
        let tat = tat.map_or(now_s, |t| t.max(now_s));
        let ahead = tat - now_s;
        if ahead > self.tolerance() {
            let wait_scaled = ahead - self.tolerance();
            // Round up: waiting exactly this long makes the event allowed.
            let count = i128::from(self.count);
            let wait_ns = (wait_scaled + count - 1) / count;
            Decision::Deny {
                retry_after: Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX)),
            }
        } else {
            Decision::Allow {
                tat: tat + self.interval(),
            }
        }
    }
}

/// Nanoseconds since the Unix epoch, as a wide integer.
fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// The outcome of [`Rate::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; committing stores this new theoretical arrival time.
    Allow { tat: i128 },
    /// Refused; the earliest moment it would be allowed is `retry_after`
    /// from now.
    Deny { retry_after: Duration },
}

/// One GCRA state per key (a phone number, or a number and recipient pair).
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    tats: HashMap<K, i128>,
    commits_since_prune: usize,
}

/// Keys are pruned after this many commits: a key whose theoretical arrival
/// time is in the past is indistinguishable from a fresh one, so dropping it
/// keeps memory bounded during a campaign to many recipients.
const PRUNE_EVERY: usize = 4096;

impl<K: Eq + Hash + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            tats: HashMap::new(),
            commits_since_prune: 0,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Changes the rate; existing state is forgotten (a new limit starts
    /// with a full burst, as after a throughput upgrade).
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
        self.tats.clear();
    }

    pub fn decide(&self, key: &K, now: DateTime<Utc>) -> Decision {
        self.rate.decide(self.tats.get(key).copied(), now)
    }

    /// Stores an allowed decision. Deny decisions are ignored.
    pub fn commit(&mut self, key: K, decision: Decision, now: DateTime<Utc>) {
        if let Decision::Allow { tat } = decision {
            self.tats.insert(key, tat);
            self.commits_since_prune += 1;
            if self.commits_since_prune >= PRUNE_EVERY {
                self.prune(now);
            }
        }
    }

    /// Checks and, when allowed, commits in one step.
    pub fn check(&mut self, key: K, now: DateTime<Utc>) -> Decision {
        let d = self.decide(&key, now);
        self.commit(key, d, now);
        d
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let now_s = self.rate.scaled(now);
        self.tats.retain(|_, tat| *tat > now_s);
        self.commits_since_prune = 0;
    }

    pub fn clear(&mut self) {
        self.tats.clear();
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap()
    }

    fn at_ms(ms: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::milliseconds(ms)
    }

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    #[test]
    fn n_per_second_allows_exactly_n_in_one_instant() {
        for n in [1u32, 3, 7, 80, 1000] {
            let mut l = Limiter::new(Rate::per_second(n));
            for i in 0..n {
                assert!(allowed(l.check("num", t0())), "n={n} send {i}");
            }
            assert!(!allowed(l.check("num", t0())), "n={n}: one too many");
        }
    }

    #[test]
    fn refusal_names_the_exact_wait_and_that_wait_suffices() {
        let mut l = Limiter::new(Rate::per_second(3));
        for _ in 0..3 {
            l.check("n", t0());
        }
        let Decision::Deny { retry_after } = l.check("n", t0()) else {
            panic!("fourth send in the same instant must be refused");
        };
        // One slot frees every 1/3 s: 333_333_333.33… ns, rounded up.
        assert_eq!(retry_after, Duration::from_nanos(333_333_334));
        let just_before = t0() + chrono::Duration::nanoseconds(333_333_333);
        assert!(!allowed(l.check("n", just_before)));
        let exactly = t0() + chrono::Duration::nanoseconds(333_333_334);
        assert!(allowed(l.check("n", exactly)));
    }

    #[test]
    fn a_second_later_the_full_burst_is_back() {
        let mut l = Limiter::new(Rate::per_second(80));
        for _ in 0..80 {
            assert!(allowed(l.check("n", t0())));
        }
        // One slot frees every 12.5 ms; nothing before that.
        assert!(!allowed(l.decide(&"n", at_ms(12))));
        assert!(allowed(
            l.decide(&"n", t0() + chrono::Duration::microseconds(12_500))
        ));
        // A full second later all 80 are available again, and no more.
        let mut ok = 0;
        while allowed(l.check("n", at_ms(1000))) {
            ok += 1;
        }
        assert_eq!(ok, 80);
    }

    #[test]
    fn steady_rate_at_the_limit_is_never_refused() {
        // 80/s means one every 12.5 ms: 800 sends over 10 s, evenly spaced.
        let mut l = Limiter::new(Rate::per_second(80));
        for i in 0..800i64 {
            let at = t0() + chrono::Duration::microseconds(i * 12_500);
            assert!(allowed(l.check("n", at)), "send {i}");
        }
    }

    #[test]
    fn pair_rate_one_per_six_seconds_with_burst_borrows_from_the_future() {
        let rate = Rate::new(1, Duration::from_secs(6), 3);
        let mut l = Limiter::new(rate);
        let pair = ("num", "521234567890");
        for _ in 0..3 {
            assert!(allowed(l.check(pair, t0())));
        }
        let Decision::Deny { retry_after } = l.check(pair, t0()) else {
            panic!("burst of 3 exhausted");
        };
        assert_eq!(retry_after, Duration::from_secs(6));
        assert!(!allowed(l.check(pair, at_ms(5_999))));
        assert!(allowed(l.check(pair, at_ms(6_000))));
        // Another recipient is untouched.
        assert!(allowed(l.check(("num", "15550001"), t0())));
        // After a long quiet spell the burst is whole again, not larger.
        let later = at_ms(600_000);
        for _ in 0..3 {
            assert!(allowed(l.check(pair, later)));
        }
        assert!(!allowed(l.check(pair, later)));
    }

    #[test]
    fn decide_without_commit_consumes_nothing() {
        let mut l = Limiter::new(Rate::per_second(1));
        for _ in 0..10 {
            assert!(allowed(l.decide(&"n", t0())));
        }
        assert!(allowed(l.check("n", t0())));
        assert!(!allowed(l.check("n", t0())));
    }

    #[test]
    fn a_clock_going_backwards_does_not_grant_extra_sends() {
        let mut l = Limiter::new(Rate::per_second(2));
        assert!(allowed(l.check("n", at_ms(1000))));
        assert!(allowed(l.check("n", at_ms(1000))));
        assert!(!allowed(l.check("n", at_ms(500))));
    }

    #[test]
    fn stale_keys_are_pruned() {
        let mut l = Limiter::new(Rate::new(1, Duration::from_secs(6), 1));
        for i in 0..PRUNE_EVERY {
            l.check(i, t0());
        }
        // The commit that reached PRUNE_EVERY pruned nothing (all in the future)…
        assert_eq!(l.len(), PRUNE_EVERY);
        // …but an hour later every old key has expired.
        let later = at_ms(3_600_000);
        for i in PRUNE_EVERY..2 * PRUNE_EVERY {
            l.check(i, later);
        }
        assert_eq!(l.len(), PRUNE_EVERY);
    }
}
