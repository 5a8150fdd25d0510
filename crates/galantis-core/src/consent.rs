//! Marketing consent: the seven states of design.md §4 and how sources map
//! onto them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A contact's WhatsApp marketing consent (Shopify's CustomerMarketingState).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MarketingState {
    Subscribed,
    /// Captured, awaiting confirmation.
    Pending,
    NotSubscribed,
    Unsubscribed,
    Unknown,
    Invalid,
    /// Permanent: erased on the customer's request.
    Redacted,
}

impl MarketingState {
    pub const ALL: [MarketingState; 7] = [
        MarketingState::Subscribed,
        MarketingState::Pending,
        MarketingState::NotSubscribed,
        MarketingState::Unsubscribed,
        MarketingState::Unknown,
        MarketingState::Invalid,
        MarketingState::Redacted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MarketingState::Subscribed => "SUBSCRIBED",
            MarketingState::Pending => "PENDING",
            MarketingState::NotSubscribed => "NOT_SUBSCRIBED",
            MarketingState::Unsubscribed => "UNSUBSCRIBED",
            MarketingState::Unknown => "UNKNOWN",
            MarketingState::Invalid => "INVALID",
            MarketingState::Redacted => "REDACTED",
        }
    }

    /// Shopify's consent `state` (lower case; the same values for SMS, email
    /// and WhatsApp consent) to ours.
    pub fn from_shopify_sms(state: &str) -> Self {
        match state.trim().to_ascii_lowercase().as_str() {
            "subscribed" => MarketingState::Subscribed,
            "pending" => MarketingState::Pending,
            "not_subscribed" => MarketingState::NotSubscribed,
            "unsubscribed" => MarketingState::Unsubscribed,
            "redacted" => MarketingState::Redacted,
            "invalid" => MarketingState::Invalid,
            _ => MarketingState::Unknown,
        }
    }

    /// Whether a change from `self` to `next` may happen. REDACTED is
    /// permanent; everything else follows the latest proof.
    pub fn may_become(self, next: MarketingState) -> bool {
        self != MarketingState::Redacted || next == MarketingState::Redacted
    }

    /// Only subscribed contacts receive campaign, automation and
    /// back-in-stock messages. No override.
    pub fn allows_marketing(self) -> bool {
        self == MarketingState::Subscribed
    }
}

impl fmt::Display for MarketingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MarketingState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MarketingState::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not a marketing state"))
    }
}

/// Where a consent change came from (its proof names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    ShopifyCheckout,
    /// Consent carried inline by a `customers/create|update` payload (the
    /// pre-2025-01 shape).
    ShopifyCustomer,
    /// Shopify's recorded SMS consent (`customers_marketing_consent/update`
    /// and the seed's `customers/marketing_consent_update(d)`).
    ShopifySmsConsent,
    /// Shopify's recorded WhatsApp consent
    /// (`customers_whats_app_marketing_consent/update`): authoritative over
    /// SMS consent once present (ADR 0018).
    ShopifyWhatsappConsent,
    BackInStockWidget,
    ChatWidget,
    ManualImport,
    StopReply,
    /// The customer texted an opt-in keyword (`START` or a synonym).
    StartReply,
    /// The customer stopped or resumed marketing messages in WhatsApp itself
    /// (Meta's `user_preferences` webhook).
    MetaUserPreferences,
    Api,
    Redaction,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::ShopifyCheckout => "shopify_checkout",
            ConsentSource::ShopifyCustomer => "shopify_customer",
            ConsentSource::ShopifySmsConsent => "shopify_sms_consent",
            ConsentSource::ShopifyWhatsappConsent => "shopify_whatsapp_consent",
            ConsentSource::BackInStockWidget => "back_in_stock_widget",
            ConsentSource::ChatWidget => "chat_widget",
            ConsentSource::ManualImport => "manual_import",
            ConsentSource::StopReply => "stop_reply",
            ConsentSource::StartReply => "start_reply",
            ConsentSource::MetaUserPreferences => "meta_user_preferences",
            ConsentSource::Api => "api",
            ConsentSource::Redaction => "redaction",
        }
    }
}

impl fmt::Display for ConsentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsentSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsentSource::parse(s).ok_or_else(|| format!("`{s}` is not a consent source"))
    }
}

/// Whether an inbound text is an opt-out: one of `keywords`, ignoring case,
/// surrounding spaces and trailing punctuation ("Stop!", " stop ").
pub fn is_stop_reply(text: &str, keywords: &[String]) -> bool {
    is_keyword_reply(text, keywords)
}

/// Whether an inbound text is an opt-in (`START` or a configured synonym),
/// matched exactly like [`is_stop_reply`].
pub fn is_start_reply(text: &str, keywords: &[String]) -> bool {
    is_keyword_reply(text, keywords)
}

fn is_keyword_reply(text: &str, keywords: &[String]) -> bool {
    let t = text.trim().trim_end_matches(['.', '!', '?']).trim();
    // Unicode-aware case folding: keywords such as "ALTA" or "SÍ" must match
    // whatever case the customer's keyboard produced.
    !t.is_empty()
        && keywords
            .iter()
            .any(|k| k.trim().to_lowercase() == t.to_lowercase())
}

/// Default opt-in keywords: the customer's own way back after a STOP.
pub fn default_start_keywords() -> Vec<String> {
    ["START", "UNSTOP", "SUBSCRIBE", "ALTA"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Default opt-out keywords (English and Spanish/Portuguese storefronts).
pub fn default_stop_keywords() -> Vec<String> {
    [
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "BAJA",
        "PARAR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_states_map() {
        assert_eq!(
            MarketingState::from_shopify_sms("subscribed"),
            MarketingState::Subscribed
        );
        assert_eq!(
            MarketingState::from_shopify_sms("NOT_SUBSCRIBED"),
            MarketingState::NotSubscribed
        );
        assert_eq!(
            MarketingState::from_shopify_sms("weird"),
            MarketingState::Unknown
        );
        for s in MarketingState::ALL {
            assert_eq!(s.as_str().parse::<MarketingState>().unwrap(), s);
        }
    }

    /// Rows decode through `FromStr` and the API serialises with serde:
    /// both must spell every value as the database stores it (`as_str`).
    #[test]
    fn text_forms_agree() {
        for s in MarketingState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.to_string().parse::<MarketingState>(), Ok(s));
        }
        for s in ConsentSource::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.to_string().parse::<ConsentSource>(), Ok(s));
        }
        assert!("meta".parse::<ConsentSource>().is_err());
    }

    #[test]
    fn redacted_is_permanent() {
        assert!(!MarketingState::Redacted.may_become(MarketingState::Subscribed));
        assert!(MarketingState::Unsubscribed.may_become(MarketingState::Subscribed));
    }

    #[test]
    fn stop_replies() {
        let k = default_stop_keywords();
        for yes in ["STOP", "stop", " Stop! ", "baja", "unsubscribe."] {
            assert!(is_stop_reply(yes, &k), "{yes}");
        }
        for no in ["stop sending me shoes", "", "stopp", "please stop"] {
            assert!(!is_stop_reply(no, &k), "{no}");
        }
    }

    #[test]
    fn start_replies() {
        let k = default_start_keywords();
        for yes in ["START", "start", " Start! ", "alta.", "Subscribe?"] {
            assert!(is_start_reply(yes, &k), "{yes}");
        }
        for no in [
            "start sending me shoes",
            "",
            "STOP",
            "restart",
            "please start",
        ] {
            assert!(!is_start_reply(no, &k), "{no}");
        }
        let custom = vec!["Sí".to_string()];
        assert!(is_start_reply("SÍ!", &custom));
    }
}
