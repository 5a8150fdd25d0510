//! Job policy: lanes, priorities, attempts and retry schedules. Pure data and
//! arithmetic; the queue itself lives in galantis-store and galantis-server.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A queue lane. Each lane has its own workers, so a flood in one lane never
/// starves another (above all, never `ingest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Webhook processing: highest priority.
    Ingest,
    Messages,
    Flows,
    Campaigns,
    Sync,
    Monitor,
    Compliance,
}

impl Lane {
    pub const ALL: [Lane; 7] = [
        Lane::Ingest,
        Lane::Messages,
        Lane::Flows,
        Lane::Campaigns,
        Lane::Sync,
        Lane::Monitor,
        Lane::Compliance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Ingest => "ingest",
            Lane::Messages => "messages",
            Lane::Flows => "flows",
            Lane::Campaigns => "campaigns",
            Lane::Sync => "sync",
            Lane::Monitor => "monitor",
            Lane::Compliance => "compliance",
        }
    }

    /// Workers per lane per node unless configured otherwise.
    pub fn default_concurrency(self) -> usize {
        match self {
            Lane::Ingest => 8,
            // Sends are I/O: each waits for its number's pace, the call to
            // Meta and two group commits (ADR 0035), so the rate a number
            // reaches is in-flight sends over that wait. 128 holds 1,000/s
            // on SQLite (docs/performance.md); at 80/s the extra workers
            // sleep in the limiter.
            Lane::Messages => 128,
            Lane::Flows => 4,
            Lane::Campaigns => 2,
            Lane::Sync => 2,
            Lane::Monitor => 2,
            Lane::Compliance => 1,
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a lane; expected ingest, messages, flows, campaigns, sync, monitor or compliance"
)]
pub struct UnknownLane(pub String);

impl FromStr for Lane {
    type Err = UnknownLane;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lane::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLane(s.chars().take(40).collect()))
    }
}

/// The life of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` (which may be in the future: then "scheduled").
    Available,
    /// Claimed by a worker that heartbeats while it runs.
    Running,
    /// Finished successfully; pruned after the retention period.
    Completed,
    /// Exhausted its attempts or failed permanently; listed for operators
    /// and retryable by hand.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "available" => Ok(JobState::Available),
            "running" => Ok(JobState::Running),
            "completed" => Ok(JobState::Completed),
            "dead" => Ok(JobState::Dead),
            other => Err(format!(
                "`{other}` is not a job state; expected available, running, completed or dead"
            )),
        }
    }
}

/// Exponential backoff with jitter, capped: attempt `n` (1-based, the attempt
/// that just failed) waits about `base × factorⁿ⁻¹`, at most `cap`, spread by
/// ±`jitter` (a fraction). The jitter is derived from a seed (the job id), so
/// a job's schedule is reproducible while different jobs spread out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrySchedule {
    pub base: Duration,
    pub factor: f64,
    pub cap: Duration,
    pub jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            factor: 2.0,
            cap: Duration::from_secs(60 * 60),
            jitter: 0.2,
        }
    }
}

impl RetrySchedule {
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            base: delay,
            factor: 1.0,
            cap: delay,
            jitter: 0.0,
        }
    }

    /// Delay before the next attempt after attempt `attempt` failed.
    pub fn delay(&self, attempt: u32, seed: u128) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        let spread = if self.jitter > 0.0 {
            // splitmix64 of (seed, attempt): a uniform value in [-1, 1).
            let mut x = (seed as u64)
                ^ ((seed >> 64) as u64)
                ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            (unit * 2.0 - 1.0) * self.jitter
        } else {
            0.0
        };
        Duration::from_secs_f64(
            (raw * (1.0 + spread)).clamp(0.0, self.cap.as_secs_f64() * (1.0 + self.jitter)),
        )
    }
}

/// Whether a unique key holds for the job's whole retained life (dedup, e.g.
/// one processing per webhook id) or only while it is pending or running
/// (e.g. one monitor per campaign at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueScope {
    Forever,
    WhileActive,
}

/// A kind of job and its policy, declared once in code. The payload is the
/// implementing type itself (serialised as JSON).
pub trait JobKind: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Stable name stored with each job; never rename a kind with jobs in flight.
    const KIND: &'static str;
    const LANE: Lane;
    /// Lower runs first within the lane.
    const PRIORITY: i16 = 0;
    const MAX_ATTEMPTS: u32 = 20;
    /// A run taking longer than this counts as a failed attempt.
    const TIMEOUT: Duration = Duration::from_secs(300);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(5),
        factor: 2.0,
        cap: Duration::from_secs(3600),
        jitter: 0.2,
    };
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::Forever;

    /// A key that makes enqueueing idempotent (e.g. the webhook id).
    fn unique_key(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jitter_is_bounded_and_reproducible() {
        let s = RetrySchedule {
            base: Duration::from_secs(10),
            factor: 2.0,
            cap: Duration::from_secs(100),
            jitter: 0.1,
        };
        for attempt in 1..20 {
            let d = s.delay(attempt, 42).as_secs_f64();
            let nominal = (10.0 * 2f64.powi(attempt as i32 - 1)).min(100.0);
            assert!(
                d >= nominal * 0.9 - 1e-9 && d <= nominal * 1.1 + 1e-9,
                "{attempt}: {d}"
            );
            assert_eq!(s.delay(attempt, 42), s.delay(attempt, 42));
        }
        assert_ne!(s.delay(1, 1), s.delay(1, 2), "different jobs spread out");
    }

    #[test]
    fn fixed_schedule_has_no_jitter() {
        let s = RetrySchedule::fixed(Duration::from_secs(3));
        assert_eq!(s.delay(1, 9), Duration::from_secs(3));
        assert_eq!(s.delay(7, 9), Duration::from_secs(3));
    }

    #[test]
    fn lanes_parse() {
        for l in Lane::ALL {
            assert_eq!(l.as_str().parse::<Lane>().unwrap(), l);
        }
        assert!("fast".parse::<Lane>().is_err());
    }
}
