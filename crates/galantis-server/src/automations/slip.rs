//! A wait and the event it awaits, written at the same moment: neither side
//! may miss the other (ADR 0036 for statuses, ADR 0038 for replies).
//!
//! A step reads its facts, decides to wait for a status or a reply, and
//! writes the wait. A status or reply committed in between finds no waiting
//! run (its wake-up looks before the wait commits) and the step did not
//! see it either: the run would sleep until its window ends. So before the
//! wait is written, the step takes the lock that status's or reply's
//! handler takes (the message's row; the contact's replies), reads again
//! and, if anything moved, queues its own wake-up. A handler that takes the
//! lock after the step commits after the wait, and its wake-up finds the
//! run. SQLite's single writer rules the interleaving out; the second read
//! there only repeats the first.

use chrono::{DateTime, Utc};
use galantis_core::MessageStatus;
use galantis_core::automation::{Awaited, Facts, Step, WaitKind};
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::sending;
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

/// What committed unseen: the engine wakes the run with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Missed {
    Status {
        message_id: Uuid,
        status: MessageStatus,
    },
    Reply {
        at: DateTime<Utc>,
        button_id: Option<String>,
    },
}

/// What `out` waits for that committed since `facts` were read, or
/// `None`. In a batch (`batched`) it never waits for a lock another
/// transaction holds ([`StoreError::LockBusy`]: the step runs after the
/// batch, alone).
pub(super) async fn missed(
    tx: &mut TenantTx,
    run: &runs::Run,
    out: &Step,
    facts: &Facts,
    batched: bool,
) -> Result<Option<Missed>, StoreError> {
    let Some(awaited) = awaited(out) else {
        return Ok(None);
    };
    tx.wait_for_locks(!batched);
    let moved = read_again(tx, run, facts, awaited).await;
    tx.wait_for_locks(true);
    moved
}

/// What the step's new wait awaits, unless the step also sends: a message
/// queued by this step has no status and no reply before the step commits.
fn awaited(out: &Step) -> Option<Awaited> {
    let WaitKind::Event { awaited } = out.state.wait.as_ref()?.kind else {
        return None;
    };
    (!out.sends()).then_some(awaited)
}

async fn read_again(
    tx: &mut TenantTx,
    run: &runs::Run,
    facts: &Facts,
    awaited: Awaited,
) -> Result<Option<Missed>, StoreError> {
    let (status, reply) = match awaited {
        Awaited::MessageStatus => (true, false),
        Awaited::Reply => (false, true),
        Awaited::ReplyOrMessageStatus => (true, true),
    };
    if status && let Some(input) = status_moved(tx, run, facts).await? {
        return Ok(Some(input));
    }
    if reply {
        return reply_arrived(tx, run, facts).await;
    }
    Ok(None)
}

/// The run's last message, held until commit (`status_for_wait`): its
/// status, if no longer the one the facts saw.
async fn status_moved(
    tx: &mut TenantTx,
    run: &runs::Run,
    facts: &Facts,
) -> Result<Option<Missed>, StoreError> {
    let Some(message_id) = run.last_message_id else {
        return Ok(None);
    };
    let Some(seen) = facts
        .last_message
        .as_ref()
        .filter(|m| m.message_id == Some(message_id))
    else {
        return Ok(None);
    };
    let now = sending::status_for_wait(tx, message_id).await?;
    Ok(now
        .filter(|s| *s != seen.status)
        .map(|status| Missed::Status { message_id, status }))
}

/// The contact's replies since the same moment the facts read them from,
/// under the replies lock (`runs::hold_replies`): the first one the facts
/// did not have, if any.
async fn reply_arrived(
    tx: &mut TenantTx,
    run: &runs::Run,
    facts: &Facts,
) -> Result<Option<Missed>, StoreError> {
    let Some(since) = super::facts::replies_since(run, facts) else {
        return Ok(None);
    };
    runs::hold_replies(tx, run.contact_id).await?;
    let replies = runs::inbound_since(tx, run.contact_id, since.timestamp_millis()).await?;
    let Some((at_ms, button_id)) = replies.into_iter().nth(facts.replies.len()) else {
        return Ok(None);
    };
    Ok(Some(Missed::Reply {
        at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
        button_id,
    }))
}
