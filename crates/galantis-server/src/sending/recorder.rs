//! Group commit of the send job's two writes (`crate::group_commit`): the
//! `sending` mark before the call to Meta, and the acceptance after it
//! (its credits and the job's completion). Each is still committed before
//! the job goes on — the mark before the call, the acceptance before the
//! job reports success — but the sends of one tenant share their
//! transactions: on SQLite a campaign at 1,000/s otherwise asks its one
//! writer for 2,000 transactions a second beside the status webhooks.
//!
//! A group that fails (a lost claim, a deadlock PostgreSQL broke, a commit
//! error) fails every write in it, and each job then writes alone, exactly
//! as without the group ([`mark_sending`], `job::finish_accepted`). A write
//! whose wamid another transaction holds is left out of the group at once
//! ([`Recorded::Alone`]): the group takes wamid locks without waiting, so it
//! never waits on one while holding others.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use galantis_core::TenantId;
use galantis_store::jobs::run::{self, ClaimedJob};
use galantis_store::tenant::billing;
use galantis_store::tenant::sending as store;
use galantis_store::{Db, StoreError};
use uuid::Uuid;

use super::credits;
use crate::group_commit::{GroupCommit, GroupWrite};

/// One write of a send job.
pub enum SendWrite {
    /// Step 6: a call to Meta is about to start.
    Sending { message_id: Uuid },
    /// Meta accepted (or had accepted) the message: record it, settle its
    /// credits, complete the job.
    Accepted(Box<AcceptedWrite>),
}

pub struct AcceptedWrite {
    /// The send job, completed in the same transaction.
    pub job: Arc<ClaimedJob>,
    pub acceptance: Acceptance,
}

/// What recording an acceptance needs of the message.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub message_id: Uuid,
    pub billable: bool,
    /// The wamid to lock: Meta's answer's, else the one stored.
    pub wamid: Option<String>,
    /// `(wamid if known, sandbox)` of a new acceptance; `None` when it was
    /// recorded already (a retried job).
    pub accepted: Option<(Option<String>, bool)>,
}

/// The outcome of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The mark: `false` when the message was withdrawn meanwhile.
    Sending(bool),
    /// Recorded, and the job completed.
    Accepted,
    /// Left out of the group: write it alone.
    Alone,
}

pub struct SendWrites {
    db: Db,
}

pub type SendRecorder = GroupCommit<SendWrites>;

pub fn send_recorder(db: Db) -> SendRecorder {
    GroupCommit::new(SendWrites { db })
}

impl GroupWrite for SendWrites {
    type Item = SendWrite;
    type Out = Recorded;
    const NAME: &'static str = "send";
    const MAX_BATCH: usize = 64;

    fn write<'a>(
        &'a self,
        tenant: TenantId,
        items: &'a [SendWrite],
    ) -> BoxFuture<'a, Result<Vec<Recorded>, String>> {
        Box::pin(async move {
            self.write_group(tenant, items).await.map_err(|e| {
                tracing::debug!(tenant = %tenant, error = %e, size = items.len(), "a group of send writes failed; each is written alone");
                e.to_string()
            })
        })
    }
}

impl SendWrites {
    /// Locks in the order of the one-send path: tenant (only to roll a
    /// billing period over), wamids (without waiting), message rows, the
    /// billing account's row.
    async fn write_group(
        &self,
        tenant: TenantId,
        items: &[SendWrite],
    ) -> Result<Vec<Recorded>, StoreError> {
        let now = self.db.now();
        let now_ms = now.timestamp_millis();
        let mut tx = self.db.tenant_tx(tenant).await?;
        let billable = items
            .iter()
            .any(|w| matches!(w, SendWrite::Accepted(a) if a.acceptance.billable));
        let period = if billable {
            Some(billing::account(&mut tx, now).await?.period)
        } else {
            None
        };
        let mut out = vec![Recorded::Alone; items.len()];
        let mut included = vec![true; items.len()];
        for (i, w) in items.iter().enumerate() {
            if let SendWrite::Accepted(a) = w
                && let Some(wamid) = &a.acceptance.wamid
            {
                included[i] = store::try_lock_wamid(&mut tx, wamid).await?;
            }
        }
        let mut settling = Vec::new();
        // Completions per claiming worker (one statement each).
        let mut completing: BTreeMap<&str, Vec<&ClaimedJob>> = BTreeMap::new();
        for (i, w) in items.iter().enumerate() {
            if !included[i] {
                continue;
            }
            match w {
                SendWrite::Sending { message_id } => {
                    out[i] =
                        Recorded::Sending(store::mark_sending(&mut tx, *message_id, now_ms).await?);
                }
                SendWrite::Accepted(a) => {
                    let s = store::record_acceptance(
                        &mut tx,
                        a.acceptance.message_id,
                        a.acceptance
                            .accepted
                            .as_ref()
                            .map(|(w, sandbox)| (w.as_deref(), *sandbox)),
                        now_ms,
                    )
                    .await?;
                    settling.extend(s);
                    completing.entry(&a.job.worker).or_default().push(&a.job);
                    out[i] = Recorded::Accepted;
                }
            }
        }
        for jobs in completing.values() {
            let n = run::complete_all_in(&mut tx, jobs, now).await?;
            if n != jobs.len() as u64 {
                // Rolled back: each job then finds out alone.
                return Err(StoreError::Conflict("claim_lost"));
            }
        }
        for s in &settling {
            credits::settle(&mut tx, s, period.as_deref(), now).await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
