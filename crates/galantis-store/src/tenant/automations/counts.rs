//! Row counts of the tables an automation may write, so tests can prove
//! that a dry run writes nothing (and operators can size a tenant).

use sqlx::AssertSqlSafe;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// The tenant tables an automation's run touches, directly or through the
/// send path (the queue's jobs live in the control database on PostgreSQL).
pub const TABLES: [&str; 8] = [
    "automations",
    "automation_versions",
    "automation_runs",
    "automation_activity",
    "messages",
    "message_status_events",
    "credit_ledger",
    "domain_events",
];

/// `(table, rows)` for each of [`TABLES`].
pub async fn row_counts(tx: &mut TenantTx) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut out = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let n: i64 = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
                .fetch_one(&mut *c)
                .await?
        });
        out.push((t, n));
    }
    Ok(out)
}
