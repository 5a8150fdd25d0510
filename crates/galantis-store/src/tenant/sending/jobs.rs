//! Job SQL of the send path.

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// Makes the tenant's snoozed jobs of `kind` due now (after a reconnect,
/// held sends go at once). Returns how many.
pub async fn wake_jobs(tx: &mut TenantTx, kind: &str, now_ms: i64) -> Result<u64, StoreError> {
    let tenant = tx.tenant().as_uuid();
    // Wake this node's workers of the lane at commit.
    tx.pending.lanes.insert(galantis_core::Lane::Messages);
    Ok(on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query(
                "UPDATE jobs SET run_at = $1 WHERE kind = $2 AND state = 'available' AND run_at > $1",
            )
            .bind(now_ms)
            .bind(kind)
            .execute(&mut *c)
            .await?
            .rows_affected()
            },
        postgres
            | c
            | {
                let n = sqlx::query(
                "UPDATE public.jobs SET run_at = $1 WHERE tenant_id = $3 AND kind = $2 AND state = 'available' AND run_at > $1",
            )
            .bind(now_ms)
            .bind(kind)
            .bind(tenant)
            .execute(&mut *c)
            .await?
            .rows_affected();
                sqlx::query("SELECT pg_notify('galantis_jobs', 'messages')")
                    .execute(&mut *c)
                    .await?;
                n
            }
    ))
}
