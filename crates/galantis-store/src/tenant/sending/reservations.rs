//! Credit reservations: a queued billable message holds one credit until
//! Meta accepts it (then it is charged) or it fails (then it is released).
//! The reservations are the QUEUED billable rows themselves, so they can
//! never drift from the messages (docs/decisions/0005-sending.md).

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// Credits held by billable messages queued but not yet accepted.
pub async fn reserved_credits(tx: &mut TenantTx) -> Result<i64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE billable = $1 AND status = 'QUEUED' AND direction = 'outbound'
               AND (send_state IS NULL OR send_state = 'sending')",
        )
        .bind(true)
        .fetch_one(&mut *c)
        .await?
    }))
}

/// The balance and the credits held by queued billable messages, read by
/// one statement so both come from one snapshot. Sends record their
/// acceptance and charge without the tenant lock, so two statements could
/// straddle a send's commit — the balance from before its charge, the
/// reservations from after — and count its credit as free.
pub async fn balance_and_reserved(tx: &mut TenantTx) -> Result<(i64, i64), StoreError> {
    let (balance, reserved): (Option<i64>, i64) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT (SELECT balance FROM billing_account WHERE id = 1),
                    (SELECT COUNT(*) FROM messages WHERE billable = $1 AND status = 'QUEUED' AND direction = 'outbound'
                       AND (send_state IS NULL OR send_state = 'sending'))",
        )
        .bind(true)
        .fetch_one(&mut *c)
        .await?
    });
    Ok((balance.unwrap_or(0), reserved))
}
