//! Campaigns (design.md §4 "Campaigns"; docs/decisions/0026-campaign-dispatch.md):
//! the typed model parsed from the API's JSON (every error names its field),
//! the status machine as a pure function, the type derived from the
//! template, the four pre-launch checks and the send window.
//!
//! - [`parse`]: `POST|PATCH /api/v1/campaigns` bodies.
//! - [`checks`]: the blocking pre-launch checks.
//! - [`window`]: send-window arithmetic in an IANA time zone.

pub mod checks;
pub mod parse;
pub mod window;

use serde::{Deserialize, Serialize};

pub use checks::{LaunchFacts, LaunchRefusal, prelaunch};
pub use parse::{AudienceRef, AudienceSpec, CampaignInput, CampaignPatch, SetKind, VariableSource};
pub use window::{SendWindow, SendWindowSpec};

use crate::templates::TemplateCategory;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $s)] $v),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($s => Ok($name::$v),)+ _ => Err(format!("unknown {}: {s}", stringify!($name))) }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// A campaign's lifecycle.
    CampaignStatus {
        Draft => "DRAFT",
        Scheduled => "SCHEDULED",
        Pending => "PENDING",
        Paused => "PAUSED",
        Sent => "SENT",
        PartiallySent => "PARTIALLY_SENT",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
);

string_enum!(
    /// One recipient's progress. `QUEUED` until its message is final.
    RecipientStatus {
        Queued => "QUEUED",
        Sent => "SENT",
        Delivered => "DELIVERED",
        Read => "READ",
        Failed => "FAILED",
        Skipped => "SKIPPED",
    }
);

string_enum!(
    /// Derived from the template: MARKETING → promotional, UTILITY →
    /// informational, product or catalog content → catalog.
    CampaignType {
        Promotional => "promotional",
        Informational => "informational",
        Catalog => "catalog",
    }
);

impl CampaignStatus {
    /// Only drafts and scheduled campaigns may be edited or deleted.
    pub fn editable(self) -> bool {
        matches!(self, CampaignStatus::Draft | CampaignStatus::Scheduled)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            CampaignStatus::Sent
                | CampaignStatus::PartiallySent
                | CampaignStatus::Failed
                | CampaignStatus::Cancelled
        )
    }
}

/// What a member or the dispatcher asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set (or clear) `scheduled_at`.
    Schedule {
        at_set: bool,
    },
    Launch,
    Pause,
    Resume,
    Cancel,
    /// The monitor's verdict once every message is final.
    Complete(CampaignStatus),
}

/// The status `action` leads to from `from`, or why it cannot.
pub fn transition(from: CampaignStatus, action: Action) -> Result<CampaignStatus, String> {
    use CampaignStatus::*;
    let to = match (from, action) {
        (Draft | Scheduled, Action::Schedule { at_set: true }) => Scheduled,
        (Draft | Scheduled, Action::Schedule { at_set: false }) => Draft,
        (Draft | Scheduled, Action::Launch) => Pending,
        (Pending, Action::Pause) => Paused,
        (Paused, Action::Resume) => Pending,
        (Draft | Scheduled | Pending | Paused, Action::Cancel) => Cancelled,
        (Pending, Action::Complete(s @ (Sent | PartiallySent | Failed))) => s,
        (from, action) => {
            return Err(format!(
                "a {from} campaign cannot {}",
                match action {
                    Action::Schedule { .. } => "be scheduled",
                    Action::Launch => "be launched",
                    Action::Pause => "be paused",
                    Action::Resume => "be resumed",
                    Action::Cancel => "be cancelled",
                    Action::Complete(_) => "complete",
                }
            ));
        }
    };
    Ok(to)
}

/// Whether a template's content is product or catalog content (its format,
/// a `PRODUCT` header, or a catalog / multi-product button).
pub fn is_catalog_content(format: Option<&str>, components: &serde_json::Value) -> bool {
    if matches!(
        format,
        Some("SINGLE_PRODUCT_MESSAGE" | "MULTI_PRODUCT_MESSAGE" | "WHOLE_CATALOG")
    ) {
        return true;
    }
    components.as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            let ty = c.get("type").and_then(|t| t.as_str()).unwrap_or("");
            (ty.eq_ignore_ascii_case("HEADER")
                && c.get("format").and_then(|f| f.as_str()) == Some("PRODUCT"))
                || (ty.eq_ignore_ascii_case("BUTTONS")
                    && c.get("buttons")
                        .and_then(|b| b.as_array())
                        .is_some_and(|bs| {
                            bs.iter().any(|b| {
                                matches!(
                                    b.get("type").and_then(|t| t.as_str()),
                                    Some("CATALOG" | "MPM" | "SPM")
                                )
                            })
                        }))
        })
    })
}

/// The campaign type a template gives; `None` for a category no campaign
/// may use (AUTHENTICATION).
pub fn campaign_type(category: TemplateCategory, catalog_content: bool) -> Option<CampaignType> {
    match category {
        _ if catalog_content => Some(CampaignType::Catalog),
        TemplateCategory::Marketing => Some(CampaignType::Promotional),
        TemplateCategory::Utility => Some(CampaignType::Informational),
        TemplateCategory::Authentication => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transitions_allow_exactly_the_lifecycle() {
        use CampaignStatus::*;
        assert_eq!(transition(Draft, Action::Launch), Ok(Pending));
        assert_eq!(transition(Scheduled, Action::Launch), Ok(Pending));
        assert_eq!(
            transition(Draft, Action::Schedule { at_set: true }),
            Ok(Scheduled)
        );
        assert_eq!(
            transition(Scheduled, Action::Schedule { at_set: false }),
            Ok(Draft)
        );
        assert_eq!(transition(Pending, Action::Pause), Ok(Paused));
        assert_eq!(transition(Paused, Action::Resume), Ok(Pending));
        assert_eq!(transition(Paused, Action::Cancel), Ok(Cancelled));
        assert_eq!(
            transition(Pending, Action::Complete(PartiallySent)),
            Ok(PartiallySent)
        );
        for s in [Sent, PartiallySent, Failed, Cancelled] {
            for a in [
                Action::Launch,
                Action::Pause,
                Action::Resume,
                Action::Cancel,
                Action::Schedule { at_set: true },
            ] {
                assert!(transition(s, a).is_err(), "{s} {a:?}");
            }
        }
        assert!(transition(Pending, Action::Launch).is_err());
        assert!(transition(Pending, Action::Resume).is_err());
        assert!(transition(Draft, Action::Pause).is_err());
        assert!(transition(Pending, Action::Complete(Cancelled)).is_err());
        assert!(
            transition(Sent, Action::Launch)
                .unwrap_err()
                .contains("SENT campaign cannot be launched")
        );
    }

    #[test]
    fn type_follows_the_template() {
        use TemplateCategory::*;
        assert_eq!(
            campaign_type(Marketing, false),
            Some(CampaignType::Promotional)
        );
        assert_eq!(
            campaign_type(Utility, false),
            Some(CampaignType::Informational)
        );
        assert_eq!(campaign_type(Marketing, true), Some(CampaignType::Catalog));
        assert_eq!(campaign_type(Authentication, false), None);
        assert!(is_catalog_content(Some("WHOLE_CATALOG"), &json!([])));
        assert!(is_catalog_content(
            None,
            &json!([{"type":"HEADER","format":"PRODUCT"}])
        ));
        assert!(is_catalog_content(
            None,
            &json!([{"type":"BUTTONS","buttons":[{"type":"MPM","text":"View"}]}])
        ));
        assert!(!is_catalog_content(
            None,
            &json!([{"type":"BODY","text":"Hi"}])
        ));
    }
}
