//! The enrolment gate: consent, then the frequency cap, then exclusions.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::MarketingState;

/// How often one contact may enter one automation (rolling windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrequencyCap {
    /// Once, ever.
    #[serde(rename = "EVER")]
    Ever,
    #[serde(rename = "24_HOURS")]
    Hours24,
    #[serde(rename = "7_DAYS")]
    Days7,
    #[serde(rename = "14_DAYS")]
    Days14,
    #[serde(rename = "30_DAYS")]
    Days30,
}

impl FrequencyCap {
    pub const ALL: [FrequencyCap; 5] = [
        FrequencyCap::Ever,
        FrequencyCap::Hours24,
        FrequencyCap::Days7,
        FrequencyCap::Days14,
        FrequencyCap::Days30,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FrequencyCap::Ever => "EVER",
            FrequencyCap::Hours24 => "24_HOURS",
            FrequencyCap::Days7 => "7_DAYS",
            FrequencyCap::Days14 => "14_DAYS",
            FrequencyCap::Days30 => "30_DAYS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|c| c.as_str() == norm)
    }

    /// The rolling window; `None` for `EVER`.
    pub fn window(self) -> Option<Duration> {
        match self {
            FrequencyCap::Ever => None,
            FrequencyCap::Hours24 => Some(Duration::hours(24)),
            FrequencyCap::Days7 => Some(Duration::days(7)),
            FrequencyCap::Days14 => Some(Duration::days(14)),
            FrequencyCap::Days30 => Some(Duration::days(30)),
        }
    }
}

impl fmt::Display for FrequencyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an enrolment was refused; [`GateRefusal::code`] is what the
/// blocked-enrolment log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRefusal {
    NotSubscribed(MarketingState),
    /// Enrolled within the cap; `until` is when the contact may enter
    /// again (`None`: never, for `EVER`).
    Capped {
        until: Option<DateTime<Utc>>,
    },
    /// In an excluded list or segment.
    Excluded,
}

impl GateRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            GateRefusal::NotSubscribed(_) => "not_subscribed",
            GateRefusal::Capped { .. } => "frequency_capped",
            GateRefusal::Excluded => "excluded",
        }
    }
}

impl fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateRefusal::NotSubscribed(s) => write!(f, "consent is {s}, not SUBSCRIBED"),
            GateRefusal::Capped { until: Some(t) } => {
                write!(f, "frequency cap: may enter again at {}", t.to_rfc3339())
            }
            GateRefusal::Capped { until: None } => {
                f.write_str("frequency cap: already entered this automation (EVER)")
            }
            GateRefusal::Excluded => f.write_str("in an excluded list or segment"),
        }
    }
}

/// The enrolment gate, in order: consent `SUBSCRIBED`, outside the cap
/// (rolling from the last enrolment of this contact in this automation),
/// not excluded.
pub fn gate(
    consent: MarketingState,
    cap: FrequencyCap,
    last_enrolled_at: Option<DateTime<Utc>>,
    excluded: bool,
    now: DateTime<Utc>,
) -> Result<(), GateRefusal> {
    if !consent.allows_marketing() {
        return Err(GateRefusal::NotSubscribed(consent));
    }
    if let Some(last) = last_enrolled_at {
        match cap.window() {
            None => return Err(GateRefusal::Capped { until: None }),
            Some(w) if now < last + w => {
                return Err(GateRefusal::Capped {
                    until: Some(last + w),
                });
            }
            Some(_) => {}
        }
    }
    if excluded {
        return Err(GateRefusal::Excluded);
    }
    Ok(())
}
