//! What a topic handler reports back to the processor. Handlers record
//! their domain events themselves, in the processing transaction, linked to
//! the webhook event that caused them.

use chrono::{DateTime, Utc};
use galantis_core::DomainEvent;
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

/// What a topic handler did.
pub struct Outcome {
    /// The stored webhook event being processed.
    cause: Uuid,
    at: DateTime<Utc>,
    /// `Some(reason)`: nothing to do (recorded as `ignored`).
    pub ignored: Option<String>,
}

impl Outcome {
    pub fn new(cause: Uuid, at: DateTime<Utc>) -> Self {
        Self {
            cause,
            at,
            ignored: None,
        }
    }

    /// When the event is being processed (the clock's now).
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    pub fn cause(&self) -> Option<Uuid> {
        Some(self.cause)
    }

    /// Records `event` (with its subscribers' jobs) in the handler's transaction.
    pub async fn event(&self, tx: &mut TenantTx, event: DomainEvent) -> Result<(), StoreError> {
        galantis_store::events::record_caused_by(tx, &event, Some(self.cause), self.at).await?;
        Ok(())
    }
}

/// A handler failure: retry (transient) or give up (the payload can never work).
pub enum HandlerError {
    Transient(anyhow::Error),
    Invalid(String),
}

/// A broken constraint fails the event for good, with the rule in its
/// reason: the same payload breaks it again on every retry, so retrying
/// would only hide the conflict behind a job that never succeeds.
/// Everything else from the store (an outage, a timeout) is retried.
impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e.conflict() {
            Some(rule) => HandlerError::Invalid(format!("conflict: {rule}")),
            None => HandlerError::Transient(e.into()),
        }
    }
}
