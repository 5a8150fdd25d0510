//! The master key check and tenant data keys.

use galantis_core::TenantId;
use uuid::Uuid;

use crate::crypto::{CryptoError, DataKey, MasterKey};
use crate::db::Db;
use crate::error::StoreError;
use crate::on_tx;

/// Verifies `master` against the stored check, or stores the check on first
/// use. Fails with `WrongMasterKey` rather than letting anything decrypt to
/// garbage later.
pub async fn verify_or_init(db: &Db, master: &MasterKey) -> Result<(), StoreError> {
    let mut tx = db.control_tx().await?;
    let check: Option<Vec<u8>> = on_tx!(&mut tx.0, |c| {
        sqlx::query_scalar("SELECT master_key_check FROM keyring WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?
    });
    match check {
        Some(check) => {
            tx.commit().await?;
            master.verify_check(&check)?;
        }
        None => {
            // A database that already has tenants but no check was not made
            // by this version; refuse rather than guess.
            let tenants: i64 = on_tx!(&mut tx.0, |c| {
                sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
                    .fetch_one(&mut *c)
                    .await?
            });
            if tenants > 0
                && let Some((id, wrapped)) = any_wrapped_key(&mut tx).await?
            {
                master.unwrap(id, &wrapped)?;
            }
            let check = master.make_check()?;
            on_tx!(&mut tx.0, |c| {
                sqlx::query(
                    "INSERT INTO keyring (id, master_key_check, created_at) VALUES (1, $1, $2)",
                )
                .bind(&check)
                .bind(tx.1.now())
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            tx.commit().await?;
        }
    }
    Ok(())
}

async fn any_wrapped_key(
    tx: &mut crate::db::ControlTx,
) -> Result<Option<(TenantId, Vec<u8>)>, StoreError> {
    let row: Option<(Uuid, Vec<u8>)> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as("SELECT id, wrapped_data_key FROM tenants LIMIT 1")
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(|(id, k)| (TenantId::from_uuid(id), k)))
}

/// The tenant's data key, unwrapped.
pub async fn data_key(
    db: &Db,
    master: &MasterKey,
    tenant: TenantId,
) -> Result<DataKey, StoreError> {
    let mut tx = db.control_read().await?;
    let wrapped: Option<Vec<u8>> = on_tx!(&mut tx.0, |c| {
        sqlx::query_scalar("SELECT wrapped_data_key FROM tenants WHERE id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    Ok(master.unwrap(tenant, &wrapped.ok_or(StoreError::NotFound)?)?)
}

/// Re-wraps every tenant's data key from `old` to `new` and replaces the key
/// check, in one transaction: either every tenant moves to the new key or
/// none does. Secrets themselves are untouched. Returns the tenant count.
pub async fn rotate(db: &Db, old: &MasterKey, new: &MasterKey) -> Result<u64, StoreError> {
    verify_or_init(db, old).await?;
    let mut tx = db.control_tx().await?;
    let rows: Vec<(Uuid, Vec<u8>)> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as("SELECT id, wrapped_data_key FROM tenants ORDER BY id")
            .fetch_all(&mut *c)
            .await?
    });
    for (id, wrapped) in &rows {
        let tenant = TenantId::from_uuid(*id);
        let key = old.unwrap(tenant, wrapped).map_err(|e| match e {
            CryptoError::WrongMasterKey => StoreError::Config(format!(
                "tenant {tenant}'s data key does not open with the current master key; nothing was rotated"
            )),
            other => other.into(),
        })?;
        let rewrapped = new.wrap(tenant, &key)?;
        on_tx!(&mut tx.0, |c| {
            sqlx::query("UPDATE tenants SET wrapped_data_key = $1 WHERE id = $2")
                .bind(&rewrapped)
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    let check = new.make_check()?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query("UPDATE keyring SET master_key_check = $1, rotated_at = $2 WHERE id = 1")
            .bind(&check)
            .bind(tx.1.now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    Ok(rows.len() as u64)
}
