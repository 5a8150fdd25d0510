//! The checks before a send, as one pure function of what the store knows
//! (design.md §4 "Messages", "Billing"): every caller — the API, the inbox,
//! campaigns, automations, back-in-stock — refuses for the same reasons
//! with the same stable codes, and the order of the checks (hence which
//! code a send with several problems gets) is fixed here once.

use std::fmt;

use crate::billing::is_billable;
use crate::consent::MarketingState;
use crate::messaging::{MessageKind, MessageSource};
use crate::templates::{TemplateCategory, TemplateStatus};

/// What is known about a send when it is queued.
#[derive(Debug, Clone)]
pub struct SendFacts {
    pub kind: MessageKind,
    pub source: MessageSource,
    /// `None`: no such contact (or deleted).
    pub contact: Option<ContactFacts>,
    pub connection: ConnectionFacts,
    pub number: NumberFacts,
    /// For template sends; `None` for free-form ones.
    pub template: Option<TemplateFacts>,
    /// The 24 h customer-service window with the sending number is open.
    pub window_open: bool,
    /// Credits a new billable send may use (balance less reservations),
    /// read in one statement (docs/decisions/0005-sending.md).
    pub credits: Credits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactFacts {
    pub redacted: bool,
    pub marketing_state: MarketingState,
    /// The contact's phone parses as E.164 with a calling code.
    pub has_e164_phone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionFacts {
    Connected,
    NeedsAttention { reason: Option<String> },
    NotConnected { reason: Option<String> },
}

/// The number the send goes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFacts {
    Found,
    /// The caller asked for a number the store has not connected.
    UnknownRequested,
    /// No number is connected at all.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFacts {
    pub name: String,
    pub language: String,
    /// `None`: there is no such template in this language.
    pub stored: Option<StoredTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    /// As stored (shown to the merchant when it is not approved).
    pub status: String,
    pub category: TemplateCategory,
    /// The parameters given against the template's: `Err` says what is wrong.
    pub parameters: Result<(), String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credits {
    pub balance: i64,
    pub reserved: i64,
}

impl Credits {
    pub fn available(&self) -> i64 {
        self.balance - self.reserved
    }
}

/// The send may go: whether it holds (and will be charged) a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPlan {
    pub billable: bool,
}

/// Why a send is refused before it is queued. [`SendRefusal::code`] is the
/// stable code the API returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRefusal {
    UnknownContact,
    ContactRedacted,
    MissingCallingCode,
    NeedsAttention {
        reason: Option<String>,
    },
    NotConnected {
        reason: Option<String>,
    },
    UnknownPhoneNumber,
    NoNumber,
    TemplateMissing {
        name: String,
        language: String,
    },
    TemplateNotApproved {
        name: String,
        language: String,
        status: String,
    },
    InvalidTemplateParameters(String),
    NotOptedIn {
        marketing_state: MarketingState,
        template: bool,
    },
    OutsideServiceWindow,
    InsufficientCredits {
        balance: i64,
        reserved: i64,
    },
}

impl SendRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            SendRefusal::UnknownContact => "unknown_contact",
            SendRefusal::ContactRedacted => "contact_redacted",
            SendRefusal::MissingCallingCode => "CUSTOMER_IS_MISSING_CALLING_CODE",
            SendRefusal::NeedsAttention { .. } => "whatsapp_needs_attention",
            SendRefusal::NotConnected { .. } | SendRefusal::NoNumber => "whatsapp_not_connected",
            SendRefusal::UnknownPhoneNumber => "unknown_phone_number",
            SendRefusal::TemplateMissing { .. } | SendRefusal::TemplateNotApproved { .. } => {
                "template_not_approved"
            }
            SendRefusal::InvalidTemplateParameters(_) => "invalid_template_parameters",
            SendRefusal::NotOptedIn { .. } => "not_opted_in",
            SendRefusal::OutsideServiceWindow => "outside_service_window",
            SendRefusal::InsufficientCredits { .. } => "insufficient_credits",
        }
    }

    /// Refused for want of credits (402 rather than 422 over HTTP).
    pub fn is_payment(&self) -> bool {
        matches!(self, SendRefusal::InsufficientCredits { .. })
    }
}

impl fmt::Display for SendRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendRefusal::UnknownContact => f.write_str("no contact with this id"),
            SendRefusal::ContactRedacted => {
                f.write_str("this contact's data was erased; it cannot be messaged")
            }
            SendRefusal::MissingCallingCode => f.write_str(
                "the contact has no phone number in E.164 form with a country calling code",
            ),
            SendRefusal::NeedsAttention { reason } => write!(
                f,
                "the WhatsApp connection needs attention: {}",
                reason.as_deref().unwrap_or("see the settings")
            ),
            SendRefusal::NotConnected { reason } => f.write_str(
                reason
                    .as_deref()
                    .unwrap_or("no WhatsApp number is connected (PUT /api/v1/settings/whatsapp)"),
            ),
            SendRefusal::UnknownPhoneNumber => {
                f.write_str("this WhatsApp number is not connected to the store")
            }
            SendRefusal::NoNumber => f.write_str("no WhatsApp number is connected"),
            SendRefusal::TemplateMissing { name, language } => {
                write!(f, "there is no template {name} in {language}")
            }
            SendRefusal::TemplateNotApproved {
                name,
                language,
                status,
            } => write!(
                f,
                "template {name} ({language}) is {status}, only APPROVED templates can be sent"
            ),
            SendRefusal::InvalidTemplateParameters(e) => f.write_str(e),
            SendRefusal::NotOptedIn {
                marketing_state,
                template: true,
            } => write!(
                f,
                "the contact's WhatsApp consent is {}; marketing messages go to SUBSCRIBED contacts only",
                marketing_state.as_str()
            ),
            SendRefusal::NotOptedIn { template: false, .. } => f.write_str(
                "campaign, automation and back-in-stock sends go to SUBSCRIBED contacts only",
            ),
            SendRefusal::OutsideServiceWindow => f.write_str(
                "the customer has not written in the last 24 hours: only approved templates can be sent",
            ),
            SendRefusal::InsufficientCredits { balance, reserved } => write!(
                f,
                "no conversation credits left (balance {balance}, {reserved} held by queued messages): buy a credit pack or wait for the monthly reset"
            ),
        }
    }
}

/// Decides whether a send may be queued.
pub fn check_send(f: &SendFacts) -> Result<SendPlan, SendRefusal> {
    let contact = f.contact.ok_or(SendRefusal::UnknownContact)?;
    if contact.redacted || contact.marketing_state == MarketingState::Redacted {
        return Err(SendRefusal::ContactRedacted);
    }
    if !contact.has_e164_phone {
        return Err(SendRefusal::MissingCallingCode);
    }
    match &f.connection {
        ConnectionFacts::Connected => {}
        ConnectionFacts::NeedsAttention { reason } => {
            return Err(SendRefusal::NeedsAttention {
                reason: reason.clone(),
            });
        }
        ConnectionFacts::NotConnected { reason } => {
            return Err(SendRefusal::NotConnected {
                reason: reason.clone(),
            });
        }
    }
    match f.number {
        NumberFacts::Found => {}
        NumberFacts::UnknownRequested => return Err(SendRefusal::UnknownPhoneNumber),
        NumberFacts::None => return Err(SendRefusal::NoNumber),
    }
    let subscribed = contact.marketing_state == MarketingState::Subscribed;
    if f.kind.is_template() {
        let Some(t) = &f.template else {
            return Err(SendRefusal::TemplateMissing {
                name: String::new(),
                language: String::new(),
            });
        };
        let Some(stored) = &t.stored else {
            return Err(SendRefusal::TemplateMissing {
                name: t.name.clone(),
                language: t.language.clone(),
            });
        };
        if TemplateStatus::from_meta(&stored.status) != Some(TemplateStatus::Approved) {
            return Err(SendRefusal::TemplateNotApproved {
                name: t.name.clone(),
                language: t.language.clone(),
                status: stored.status.clone(),
            });
        }
        if let Err(e) = &stored.parameters {
            return Err(SendRefusal::InvalidTemplateParameters(e.clone()));
        }
        if (stored.category == TemplateCategory::Marketing || f.source.is_marketing())
            && !subscribed
        {
            return Err(SendRefusal::NotOptedIn {
                marketing_state: contact.marketing_state,
                template: true,
            });
        }
    } else {
        if f.source.is_marketing() && !subscribed {
            return Err(SendRefusal::NotOptedIn {
                marketing_state: contact.marketing_state,
                template: false,
            });
        }
        if !f.window_open {
            return Err(SendRefusal::OutsideServiceWindow);
        }
    }
    let billable = is_billable(f.kind.is_template(), f.source.as_str());
    if billable && f.credits.available() < 1 {
        return Err(SendRefusal::InsufficientCredits {
            balance: f.credits.balance,
            reserved: f.credits.reserved,
        });
    }
    Ok(SendPlan { billable })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(category: TemplateCategory) -> Option<TemplateFacts> {
        Some(TemplateFacts {
            name: "order_update".into(),
            language: "en".into(),
            stored: Some(StoredTemplate {
                status: "APPROVED".into(),
                category,
                parameters: Ok(()),
            }),
        })
    }

    fn ok_template() -> SendFacts {
        SendFacts {
            kind: MessageKind::Template,
            source: MessageSource::Api,
            contact: Some(ContactFacts {
                redacted: false,
                marketing_state: MarketingState::Subscribed,
                has_e164_phone: true,
            }),
            connection: ConnectionFacts::Connected,
            number: NumberFacts::Found,
            template: approved(TemplateCategory::Utility),
            window_open: false,
            credits: Credits {
                balance: 10,
                reserved: 0,
            },
        }
    }

    fn text() -> SendFacts {
        SendFacts {
            kind: MessageKind::Text,
            template: None,
            window_open: true,
            ..ok_template()
        }
    }

    fn with_state(mut f: SendFacts, s: MarketingState) -> SendFacts {
        f.contact.as_mut().unwrap().marketing_state = s;
        f
    }

    fn code(f: &SendFacts) -> Result<bool, &'static str> {
        check_send(f).map(|p| p.billable).map_err(|e| e.code())
    }

    #[test]
    fn facts_to_outcome() {
        let no_credits = Credits {
            balance: 3,
            reserved: 3,
        };
        let cases: Vec<(&str, SendFacts, Result<bool, &str>)> = vec![
            ("approved utility template", ok_template(), Ok(true)),
            ("free-form in the window", text(), Ok(false)),
            (
                "inbox template is free",
                SendFacts {
                    source: MessageSource::Inbox,
                    ..ok_template()
                },
                Ok(false),
            ),
            (
                "unknown contact",
                SendFacts {
                    contact: None,
                    ..ok_template()
                },
                Err("unknown_contact"),
            ),
            (
                "redacted",
                with_state(ok_template(), MarketingState::Redacted),
                Err("contact_redacted"),
            ),
            (
                "no calling code",
                SendFacts {
                    contact: Some(ContactFacts {
                        redacted: false,
                        marketing_state: MarketingState::Subscribed,
                        has_e164_phone: false,
                    }),
                    ..ok_template()
                },
                Err("CUSTOMER_IS_MISSING_CALLING_CODE"),
            ),
            (
                "needs attention",
                SendFacts {
                    connection: ConnectionFacts::NeedsAttention { reason: None },
                    ..ok_template()
                },
                Err("whatsapp_needs_attention"),
            ),
            (
                "not connected",
                SendFacts {
                    connection: ConnectionFacts::NotConnected { reason: None },
                    ..ok_template()
                },
                Err("whatsapp_not_connected"),
            ),
            (
                "no number",
                SendFacts {
                    number: NumberFacts::None,
                    ..ok_template()
                },
                Err("whatsapp_not_connected"),
            ),
            (
                "unknown number",
                SendFacts {
                    number: NumberFacts::UnknownRequested,
                    ..ok_template()
                },
                Err("unknown_phone_number"),
            ),
            (
                "missing template",
                SendFacts {
                    template: Some(TemplateFacts {
                        name: "nope".into(),
                        language: "en".into(),
                        stored: None,
                    }),
                    ..ok_template()
                },
                Err("template_not_approved"),
            ),
            (
                "draft template",
                SendFacts {
                    template: Some(TemplateFacts {
                        name: "d".into(),
                        language: "en".into(),
                        stored: Some(StoredTemplate {
                            status: "DRAFT".into(),
                            category: TemplateCategory::Utility,
                            parameters: Ok(()),
                        }),
                    }),
                    ..ok_template()
                },
                Err("template_not_approved"),
            ),
            (
                "bad parameters",
                SendFacts {
                    template: Some(TemplateFacts {
                        name: "t".into(),
                        language: "en".into(),
                        stored: Some(StoredTemplate {
                            status: "APPROVED".into(),
                            category: TemplateCategory::Utility,
                            parameters: Err("one parameter missing".into()),
                        }),
                    }),
                    ..ok_template()
                },
                Err("invalid_template_parameters"),
            ),
            (
                "marketing template to a non-subscriber",
                with_state(
                    SendFacts {
                        template: approved(TemplateCategory::Marketing),
                        ..ok_template()
                    },
                    MarketingState::NotSubscribed,
                ),
                Err("not_opted_in"),
            ),
            (
                "utility template to a non-subscriber",
                with_state(ok_template(), MarketingState::Unsubscribed),
                Ok(true),
            ),
            (
                "campaign utility template to a non-subscriber",
                with_state(
                    SendFacts {
                        source: MessageSource::Campaign,
                        ..ok_template()
                    },
                    MarketingState::Pending,
                ),
                Err("not_opted_in"),
            ),
            (
                "automation free-form to a non-subscriber",
                with_state(
                    SendFacts {
                        source: MessageSource::Automation,
                        ..text()
                    },
                    MarketingState::Unknown,
                ),
                Err("not_opted_in"),
            ),
            (
                "free-form outside the window",
                SendFacts {
                    window_open: false,
                    ..text()
                },
                Err("outside_service_window"),
            ),
            (
                "billable without credits",
                SendFacts {
                    credits: no_credits,
                    ..ok_template()
                },
                Err("insufficient_credits"),
            ),
            (
                "free-form needs no credits",
                SendFacts {
                    credits: no_credits,
                    ..text()
                },
                Ok(false),
            ),
            (
                "the contact check comes before the connection's",
                SendFacts {
                    contact: None,
                    connection: ConnectionFacts::NotConnected { reason: None },
                    ..ok_template()
                },
                Err("unknown_contact"),
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(code(&facts), want, "{name}");
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        let r = SendRefusal::InsufficientCredits {
            balance: 5,
            reserved: 5,
        };
        assert!(r.is_payment());
        assert!(r.to_string().contains("5 held by queued messages"));
        let r = SendRefusal::NotConnected { reason: None };
        assert!(r.to_string().contains("PUT /api/v1/settings/whatsapp"));
        assert!(!r.is_payment());
    }
}
