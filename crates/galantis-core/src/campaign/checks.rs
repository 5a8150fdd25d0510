//! The four blocking pre-launch checks, as a pure function of what the
//! caller read: template `APPROVED`, at least one eligible recipient, a
//! template category that fits the content, credits that cover the
//! estimate. All refusals are returned (the dashboard shows each), in that
//! order; the HTTP layer answers with the first.

use crate::templates::{TemplateCategory, TemplateStatus};

/// What the checks look at.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchFacts {
    /// `None`: the template was deleted.
    pub template_status: Option<TemplateStatus>,
    pub template_category: Option<TemplateCategory>,
    /// The template's content is product or catalog content.
    pub catalog_content: bool,
    /// Final reach of the audience now (subscribed, reachable, not excluded).
    pub eligible: i64,
    /// Credits available (balance minus reservations).
    pub credits_available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchRefusal {
    TemplateNotApproved {
        status: Option<TemplateStatus>,
    },
    NoEligibleRecipients,
    TemplateCategoryMismatch {
        category: TemplateCategory,
        catalog: bool,
    },
    InsufficientCredits {
        needed: i64,
        available: i64,
    },
}

impl LaunchRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            LaunchRefusal::TemplateNotApproved { .. } => "template_not_approved",
            LaunchRefusal::NoEligibleRecipients => "no_eligible_recipients",
            LaunchRefusal::TemplateCategoryMismatch { .. } => "template_category_mismatch",
            LaunchRefusal::InsufficientCredits { .. } => "insufficient_credits",
        }
    }

    /// Answered with 402 (the others are 422).
    pub fn is_payment(&self) -> bool {
        matches!(self, LaunchRefusal::InsufficientCredits { .. })
    }
}

impl std::fmt::Display for LaunchRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchRefusal::TemplateNotApproved { status } => write!(
                f,
                "the template is {}, not APPROVED",
                status.map_or("deleted", TemplateStatus::as_str)
            ),
            LaunchRefusal::NoEligibleRecipients => {
                f.write_str("no recipient of the audience is SUBSCRIBED and reachable")
            }
            LaunchRefusal::TemplateCategoryMismatch { category, catalog } => {
                if *catalog {
                    write!(
                        f,
                        "product and catalog content needs a MARKETING template, not {}",
                        category.as_str()
                    )
                } else {
                    write!(
                        f,
                        "a {} template cannot be sent as a campaign",
                        category.as_str()
                    )
                }
            }
            LaunchRefusal::InsufficientCredits { needed, available } => write!(
                f,
                "the campaign needs {needed} credits and {available} are available"
            ),
        }
    }
}

/// Every blocking check that fails (empty: the campaign may launch).
pub fn prelaunch(f: &LaunchFacts) -> Vec<LaunchRefusal> {
    let mut out = Vec::new();
    if f.template_status != Some(TemplateStatus::Approved) {
        out.push(LaunchRefusal::TemplateNotApproved {
            status: f.template_status,
        });
    }
    if f.eligible <= 0 {
        out.push(LaunchRefusal::NoEligibleRecipients);
    }
    if let Some(category) = f.template_category {
        let fits = match category {
            TemplateCategory::Authentication => false,
            TemplateCategory::Utility => !f.catalog_content,
            TemplateCategory::Marketing => true,
        };
        if !fits {
            out.push(LaunchRefusal::TemplateCategoryMismatch {
                category,
                catalog: f.catalog_content,
            });
        }
    }
    if f.eligible > f.credits_available.max(0) && f.eligible > 0 {
        out.push(LaunchRefusal::InsufficientCredits {
            needed: f.eligible,
            available: f.credits_available.max(0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> LaunchFacts {
        LaunchFacts {
            template_status: Some(TemplateStatus::Approved),
            template_category: Some(TemplateCategory::Marketing),
            catalog_content: false,
            eligible: 10,
            credits_available: 10,
        }
    }

    fn codes(f: &LaunchFacts) -> Vec<&'static str> {
        prelaunch(f).iter().map(LaunchRefusal::code).collect()
    }

    #[test]
    fn each_check_refuses_with_its_code() {
        assert!(prelaunch(&ok()).is_empty());
        let mut f = ok();
        f.template_status = Some(TemplateStatus::Paused);
        assert_eq!(codes(&f), ["template_not_approved"]);
        f.template_status = None;
        f.template_category = None;
        assert_eq!(codes(&f), ["template_not_approved"]);
        let mut f = ok();
        f.eligible = 0;
        assert_eq!(codes(&f), ["no_eligible_recipients"]);
        let mut f = ok();
        f.template_category = Some(TemplateCategory::Authentication);
        assert_eq!(codes(&f), ["template_category_mismatch"]);
        f.template_category = Some(TemplateCategory::Utility);
        assert!(codes(&f).is_empty());
        f.catalog_content = true;
        assert_eq!(codes(&f), ["template_category_mismatch"]);
        let mut f = ok();
        f.credits_available = 9;
        let r = prelaunch(&f);
        assert_eq!(r.len(), 1);
        assert!(r[0].is_payment());
        assert_eq!(r[0].code(), "insufficient_credits");
        assert_eq!(
            r[0].to_string(),
            "the campaign needs 10 credits and 9 are available"
        );
    }
}
