//! Credits (design.md §4 "Billing"): plans and their monthly allowance,
//! billing periods, and the usage thresholds that warn and block.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A Shopify app subscription plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Plan {
    Trial,
    Starter,
    Growth,
    Scale,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 5] = [
        Plan::Trial,
        Plan::Starter,
        Plan::Growth,
        Plan::Scale,
        Plan::Enterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Trial => "TRIAL",
            Plan::Starter => "STARTER",
            Plan::Growth => "GROWTH",
            Plan::Scale => "SCALE",
            Plan::Enterprise => "ENTERPRISE",
        }
    }

    /// Conversation credits included each month.
    pub fn monthly_credits(self) -> i64 {
        match self {
            Plan::Trial => 10,
            Plan::Starter => 50,
            Plan::Growth => 250,
            Plan::Scale => 1_000,
            Plan::Enterprise => 2_000,
        }
    }

    /// Active automations allowed (`None`: unlimited).
    pub fn max_active_automations(self) -> Option<u32> {
        match self {
            Plan::Trial | Plan::Starter => Some(1),
            Plan::Growth => Some(5),
            Plan::Scale => Some(20),
            Plan::Enterprise => None,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("`{s}` is not a plan; expected TRIAL, STARTER, GROWTH, SCALE or ENTERPRISE")
            })
    }
}

/// Billing periods are calendar months in UTC, named `YYYY-MM`.
pub fn period_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// The first instant of the month after `t`'s: when credits reset.
pub fn next_reset(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t)
}

/// Usage warnings: at 80 % and 90 % of what the period granted; at 100 %
/// sends are refused.
pub const WARNING_THRESHOLDS: [u32; 2] = [80, 90];

/// The highest threshold (80, 90 or 100) that `used` of `granted` credits
/// has reached, if any.
pub fn threshold_reached(used: i64, granted: i64) -> Option<u32> {
    if granted <= 0 {
        return (used > 0).then_some(100);
    }
    let pct = used.saturating_mul(100) / granted;
    [100, 90, 80]
        .into_iter()
        .find(|t| pct >= i64::from(*t))
        .map(|t| t as u32)
}

/// Which template messages consume a credit: business-initiated ones
/// (campaigns, automations, back-in-stock notices, and templates sent
/// through the API). Free-form messages and templates an agent sends from
/// the inbox are free.
pub fn is_billable(is_template: bool, source: &str) -> bool {
    is_template && source != "inbox"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_periods() {
        assert_eq!(Plan::Growth.monthly_credits(), 250);
        assert_eq!("scale".parse::<Plan>().unwrap(), Plan::Scale);
        let t = Utc.with_ymd_and_hms(2026, 12, 15, 8, 0, 0).unwrap();
        assert_eq!(period_of(t), "2026-12");
        assert_eq!(
            next_reset(t),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold_reached(79, 100), None);
        assert_eq!(threshold_reached(80, 100), Some(80));
        assert_eq!(threshold_reached(95, 100), Some(90));
        assert_eq!(threshold_reached(10, 10), Some(100));
        assert_eq!(threshold_reached(0, 0), None);
        assert!(is_billable(true, "campaign"));
        assert!(!is_billable(false, "api"));
        assert!(!is_billable(true, "inbox"));
    }
}
