//! Outbound message statuses and their ordering.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
}
