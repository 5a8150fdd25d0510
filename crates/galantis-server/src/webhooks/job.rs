//! The job that processes a stored webhook event. Its definition stands
//! alone so ingress can enqueue it without depending on the processor.

use std::time::Duration;

use galantis_core::{JobKind, Lane, RetrySchedule};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessWebhook {
    pub event_id: Uuid,
    /// Set for a manual replay, so it is not deduplicated against the first run.
    #[serde(default)]
    pub replay: Option<Uuid>,
}

impl JobKind for ProcessWebhook {
    const KIND: &'static str = "webhook.process";
    const LANE: Lane = Lane::Ingest;
    const MAX_ATTEMPTS: u32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 3.0,
        cap: Duration::from_secs(1800),
        jitter: 0.2,
    };

    fn unique_key(&self) -> Option<String> {
        Some(match self.replay {
            Some(r) => format!("webhook:{}:replay:{r}", self.event_id),
            None => format!("webhook:{}", self.event_id),
        })
    }
}
