//! Credit reservations: a billable message holds one credit from queueing
//! until its acceptance is recorded with its charge (`send_state =
//! 'accepted'`, one transaction) or it is refused (`'rejected'`). The
//! reservations are the billable rows in flight themselves, so they can
//! never drift from the messages (docs/decisions/0005-sending.md).
//!
//! Not the message's status: a status webhook that links a message by its
//! echoed idempotency key moves it out of `QUEUED` before the send's charge
//! commits, and the credit must not look free in between.
//!
//! Both statements spell the predicate of the partial index
//! `messages_credit_held` (tenant migration 0022) term for term: SQLite
//! uses a partial index only for a query whose terms contain the index's.

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// Credits held by billable messages not yet charged nor refused.
pub async fn reserved_credits(tx: &mut TenantTx) -> Result<i64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages
             WHERE billable AND direction = 'outbound' AND (send_state IS NULL OR send_state = 'sending')",
        )
        .fetch_one(&mut *c)
        .await?
    }))
}

/// The balance and the credits held by billable messages in flight, read by
/// one statement so both come from one snapshot. Sends record their
/// acceptance and charge without the tenant lock, so two statements could
/// straddle a send's commit — the balance from before its charge, the
/// reservations from after — and count its credit as free.
pub async fn balance_and_reserved(tx: &mut TenantTx) -> Result<(i64, i64), StoreError> {
    let (balance, reserved): (Option<i64>, i64) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT (SELECT balance FROM billing_account WHERE id = 1),
                    (SELECT COUNT(*) FROM messages
                     WHERE billable AND direction = 'outbound' AND (send_state IS NULL OR send_state = 'sending'))",
        )
        .fetch_one(&mut *c)
        .await?
    });
    Ok((balance.unwrap_or(0), reserved))
}
