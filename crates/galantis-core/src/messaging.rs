//! Outbound message statuses and their ordering, types and sources.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod inbound;

/// QUEUED → SENT → DELIVERED → READ (→ PLAYED), or FAILED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "QUEUED",
            MessageStatus::Sent => "SENT",
            MessageStatus::Delivered => "DELIVERED",
            MessageStatus::Read => "READ",
            MessageStatus::Played => "PLAYED",
            MessageStatus::Failed => "FAILED",
        }
    }

    /// Meta's lower-case status names.
    pub fn from_meta(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "played" => MessageStatus::Played,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }

    fn rank(self) -> u8 {
        match self {
            MessageStatus::Queued => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Failed => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Played => 4,
        }
    }

    /// Whether a message now in `self` moves to `next`. Statuses only move
    /// forward: a late `sent` after `read` changes nothing, and `failed`
    /// never erases a recorded delivery or read.
    pub fn advances_to(self, next: MessageStatus) -> bool {
        match (self, next) {
            (a, b) if a == b => false,
            (MessageStatus::Failed, _) => false,
            (_, MessageStatus::Failed) => self.rank() < MessageStatus::Delivered.rank(),
            (a, b) => b.rank() > a.rank(),
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            MessageStatus::Queued,
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read,
            MessageStatus::Played,
            MessageStatus::Failed,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("`{s}` is not a message status"))
    }
}

/// What an outbound message carries: Meta's `type`, one per content field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Template,
    Text,
    Interactive,
    Image,
    Video,
    Document,
    Audio,
    Location,
    Sticker,
}

impl MessageKind {
    pub const ALL: [MessageKind; 9] = [
        MessageKind::Template,
        MessageKind::Text,
        MessageKind::Interactive,
        MessageKind::Image,
        MessageKind::Video,
        MessageKind::Document,
        MessageKind::Audio,
        MessageKind::Location,
        MessageKind::Sticker,
    ];

    /// Free-form types: sent only inside the 24 h service window.
    pub const FREE_FORM: [MessageKind; 8] = [
        MessageKind::Text,
        MessageKind::Interactive,
        MessageKind::Image,
        MessageKind::Video,
        MessageKind::Document,
        MessageKind::Audio,
        MessageKind::Location,
        MessageKind::Sticker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Template => "template",
            MessageKind::Text => "text",
            MessageKind::Interactive => "interactive",
            MessageKind::Image => "image",
            MessageKind::Video => "video",
            MessageKind::Document => "document",
            MessageKind::Audio => "audio",
            MessageKind::Location => "location",
            MessageKind::Sticker => "sticker",
        }
    }

    pub fn is_template(self) -> bool {
        self == MessageKind::Template
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an outbound message type"))
    }
}

impl TryFrom<String> for MessageKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Where an outbound message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MessageSource {
    #[default]
    Api,
    Inbox,
    Campaign,
    Automation,
    BackInStock,
}

impl MessageSource {
    pub const ALL: [MessageSource; 5] = [
        MessageSource::Api,
        MessageSource::Inbox,
        MessageSource::Campaign,
        MessageSource::Automation,
        MessageSource::BackInStock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageSource::Api => "api",
            MessageSource::Inbox => "inbox",
            MessageSource::Campaign => "campaign",
            MessageSource::Automation => "automation",
            MessageSource::BackInStock => "back_in_stock",
        }
    }

    /// Sources an automation run sends from: only their messages' statuses
    /// can be awaited by a run (a delivery-status condition).
    pub fn is_sent_by_runs(self) -> bool {
        matches!(self, MessageSource::Automation | MessageSource::BackInStock)
    }

    /// Sends Galantis starts on the merchant's behalf rather than in answer
    /// to the customer: they need the contact's marketing consent whatever
    /// their content.
    pub fn is_marketing(self) -> bool {
        matches!(
            self,
            MessageSource::Campaign | MessageSource::Automation | MessageSource::BackInStock
        )
    }
}

impl fmt::Display for MessageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageSource::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a message source"))
    }
}

impl TryFrom<String> for MessageSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<String> for MessageStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Stored names compare with the typed value (`m.status == "READ"`), so code
/// and tests written against the strings read the same.
macro_rules! eq_stored_name {
    ($t:ty) => {
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}
eq_stored_name!(MessageStatus);
eq_stored_name!(MessageKind);
eq_stored_name!(MessageSource);

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(Queued.advances_to(Sent));
        assert!(Sent.advances_to(Delivered));
        assert!(Sent.advances_to(Read), "a missed delivered is fine");
        assert!(!Read.advances_to(Sent));
        assert!(!Read.advances_to(Delivered));
        assert!(
            !Delivered.advances_to(Failed),
            "failed never erases a delivery"
        );
        assert!(!Read.advances_to(Failed));
        assert!(Sent.advances_to(Failed));
        assert!(Queued.advances_to(Failed));
        assert!(!Failed.advances_to(Delivered));
        assert!(Read.advances_to(Played));
        assert!(!Sent.advances_to(Sent));
    }

    #[test]
    fn kinds_and_sources_round_trip_their_stored_names() {
        use super::{MessageKind, MessageSource};
        for k in MessageKind::ALL {
            assert_eq!(k.as_str().parse::<MessageKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in MessageSource::ALL {
            assert_eq!(s.as_str().parse::<MessageSource>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("reaction".parse::<MessageKind>().is_err());
        assert!("API".parse::<MessageSource>().is_err());
    }
}
