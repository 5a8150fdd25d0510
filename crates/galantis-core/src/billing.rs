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

/// The app subscription Galantis last acted on (kept with the tenant's
/// settings), so that `app_subscriptions/update` webhooks arriving late,
/// twice or out of order change nothing they should not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSubscription {
    /// Shopify's `admin_graphql_api_id`.
    pub id: String,
    pub name: String,
    /// Shopify's status: `ACTIVE`, `PENDING`, `CANCELLED`, `DECLINED`,
    /// `EXPIRED`, `FROZEN`, `ACCEPTED`.
    pub status: String,
    /// Shopify's `updated_at`, epoch milliseconds.
    pub updated_at_ms: i64,
}

/// What an `app_subscriptions/update` webhook does to the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionEffect {
    /// The subscription is active: the tenant is on this plan.
    Activate(Plan),
    /// The tenant's current subscription ended (cancelled, expired,
    /// declined or frozen): back to the trial allowance.
    End,
    /// Recorded, nothing changes: pending or accepted (not billed yet), an
    /// update older than the one acted on, a subscription that is not the
    /// current one ending (a plan switch cancels the old one), or an active
    /// subscription whose name names no plan.
    Nothing,
}

/// The plan a subscription's name names: Galantis creates its
/// subscriptions as "Galantis Starter", "Galantis Growth", …; the match is
/// on a whole word, case-insensitively.
pub fn plan_named(name: &str) -> Option<Plan> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|word| {
            Plan::ALL
                .into_iter()
                .find(|p| p.as_str().eq_ignore_ascii_case(word))
        })
}

/// Decides what `incoming` does given the subscription acted on before.
pub fn subscription_effect(
    current: Option<&AppSubscription>,
    incoming: &AppSubscription,
) -> SubscriptionEffect {
    if current.is_some_and(|c| c.updated_at_ms > incoming.updated_at_ms) {
        return SubscriptionEffect::Nothing;
    }
    match incoming.status.to_ascii_uppercase().as_str() {
        "ACTIVE" => plan_named(&incoming.name)
            .map(SubscriptionEffect::Activate)
            .unwrap_or(SubscriptionEffect::Nothing),
        "CANCELLED" | "EXPIRED" | "DECLINED" | "FROZEN"
            if current.is_some_and(|c| c.id == incoming.id) =>
        {
            SubscriptionEffect::End
        }
        _ => SubscriptionEffect::Nothing,
    }
}

/// A one-time app purchase's status at Shopify. Purchases start PENDING
/// and move once, to ACTIVE (approved and charged), DECLINED or EXPIRED
/// (not approved within two days); a final status never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PurchaseStatus {
    Pending,
    Active,
    Declined,
    Expired,
}

impl PurchaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "PENDING",
            PurchaseStatus::Active => "ACTIVE",
            PurchaseStatus::Declined => "DECLINED",
            PurchaseStatus::Expired => "EXPIRED",
        }
    }

    /// Shopify's status names, any case. `ACCEPTED` (deprecated: approved
    /// but not yet activated) and anything unknown are not a status
    /// Galantis acts on.
    pub fn parse(s: &str) -> Option<Self> {
        [
            PurchaseStatus::Pending,
            PurchaseStatus::Active,
            PurchaseStatus::Declined,
            PurchaseStatus::Expired,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }

    pub fn is_final(self) -> bool {
        self != PurchaseStatus::Pending
    }

    /// Whether a purchase at `current` moves on Shopify reporting `self`:
    /// only a PENDING one, and only to a final status.
    pub fn moves(self, current: PurchaseStatus) -> bool {
        current == PurchaseStatus::Pending && self.is_final()
    }
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

    fn sub(id: &str, name: &str, status: &str, at: i64) -> AppSubscription {
        AppSubscription {
            id: id.into(),
            name: name.into(),
            status: status.into(),
            updated_at_ms: at,
        }
    }

    #[test]
    fn subscription_updates() {
        use SubscriptionEffect::*;
        assert_eq!(plan_named("Galantis Growth"), Some(Plan::Growth));
        assert_eq!(plan_named("galantis-scale (monthly)"), Some(Plan::Scale));
        assert_eq!(plan_named("Galantis Pro Plan"), None);
        assert_eq!(plan_named("Upscale"), None, "whole words only");
        let growth = sub("a", "Galantis Growth", "ACTIVE", 10);
        assert_eq!(subscription_effect(None, &growth), Activate(Plan::Growth));
        assert_eq!(
            subscription_effect(Some(&growth), &sub("a", "Galantis Growth", "CANCELLED", 20)),
            End
        );
        // A plan switch: the old subscription's cancellation does not end the new one.
        let scale = sub("b", "Galantis Scale", "ACTIVE", 30);
        assert_eq!(
            subscription_effect(Some(&scale), &sub("a", "Galantis Growth", "CANCELLED", 31)),
            Nothing
        );
        // Late: older than what was acted on.
        assert_eq!(subscription_effect(Some(&scale), &growth), Nothing);
        assert_eq!(
            subscription_effect(None, &sub("c", "Galantis Scale", "PENDING", 40)),
            Nothing
        );
        assert_eq!(
            subscription_effect(None, &sub("c", "Galantis Pro", "ACTIVE", 40)),
            Nothing
        );
    }

    #[test]
    fn purchases_move_once_from_pending_to_a_final_status() {
        use PurchaseStatus::*;
        assert_eq!(PurchaseStatus::parse("active"), Some(Active));
        assert_eq!(PurchaseStatus::parse(" EXPIRED "), Some(Expired));
        assert_eq!(PurchaseStatus::parse("ACCEPTED"), None);
        assert_eq!(PurchaseStatus::parse(""), None);
        for to in [Active, Declined, Expired] {
            assert!(to.moves(Pending), "{to:?}");
            for from in [Active, Declined, Expired] {
                assert!(!to.moves(from), "{from:?} -> {to:?}");
            }
        }
        assert!(!Pending.moves(Pending));
    }
}
