//! A tenant's WhatsApp phone numbers as the control tables route them
//! (webhooks find their tenant by `phone_number_id`, templates by WABA id).

use galantis_core::TenantId;
use serde::Serialize;

use crate::control::tenants::PhoneNumberLink;
use crate::db::{ControlTx, Db};
use crate::error::StoreError;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoutedNumber {
    pub phone_number_id: String,
    pub waba_id: String,
    pub is_default: bool,
}

/// The tenant's numbers, the default first.
pub async fn list_for_tenant(db: &Db, tenant: TenantId) -> Result<Vec<RoutedNumber>, StoreError> {
    let mut tx = db.control_read().await?;
    let rows: Vec<(String, String, bool)> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(
            "SELECT phone_number_id, waba_id, is_default FROM phone_numbers WHERE tenant_id = $1
             ORDER BY is_default DESC, phone_number_id",
        )
        .bind(tenant.as_uuid())
        .fetch_all(&mut *c)
        .await?
    });
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| RoutedNumber {
            phone_number_id: r.0,
            waba_id: r.1,
            is_default: r.2,
        })
        .collect())
}

/// Replaces the tenant's numbers with `links` (`default_id` is the default).
/// A number connected to another tenant is a `phone_number_taken` conflict.
pub async fn replace_for_tenant(
    tx: &mut ControlTx,
    tenant: TenantId,
    links: &[PhoneNumberLink],
    default_id: &str,
) -> Result<(), StoreError> {
    on_tx!(&mut tx.0, |c| {
        sqlx::query("DELETE FROM phone_numbers WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    for l in links {
        let r = on_tx!(&mut tx.0, |c| {
            sqlx::query(
                "INSERT INTO phone_numbers (phone_number_id, tenant_id, waba_id, is_default, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&l.phone_number_id)
            .bind(tenant.as_uuid())
            .bind(&l.waba_id)
            .bind(l.phone_number_id == default_id)
            .bind(tx.1.now())
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
        });
        match r {
            Ok(_) => {}
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict("phone_number_taken"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
