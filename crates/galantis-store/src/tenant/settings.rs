//! A tenant's settings: small JSON values by key (quiet hours, defaults, …).

use serde_json::Value;
use sqlx::types::Json;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

pub async fn get(tx: &mut TenantTx, key: &str) -> Result<Option<Value>, StoreError> {
    let v: Option<Json<Value>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT value FROM tenant_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(v.map(|j| j.0))
}

pub async fn put(tx: &mut TenantTx, key: &str, value: &Value) -> Result<(), StoreError> {
    let now = tx.now();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO tenant_settings (key, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(Json(value))
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn all(tx: &mut TenantTx) -> Result<Vec<(String, Value)>, StoreError> {
    let rows: Vec<(String, Json<Value>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT key, value FROM tenant_settings ORDER BY key")
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows.into_iter().map(|(k, v)| (k, v.0)).collect())
}
