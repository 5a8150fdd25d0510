//! A tenant's encrypted secrets (Shopify, Meta and catalog tokens).

use galantis_core::SecretName;
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::DataKey;
use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

pub async fn put(
    tx: &mut TenantTx,
    key: &DataKey,
    name: SecretName,
    value: &SecretString,
) -> Result<(), StoreError> {
    let sealed = key.encrypt(tx.tenant(), name.as_str(), value.expose_secret().as_bytes())?;
    let now = tx.now();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO secrets (name, ciphertext, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(&sealed)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get(
    tx: &mut TenantTx,
    key: &DataKey,
    name: SecretName,
) -> Result<Option<SecretString>, StoreError> {
    let sealed = raw_ciphertext(tx, name).await?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = key.decrypt(tx.tenant(), name.as_str(), &sealed)?;
    let text = String::from_utf8(plain).map_err(|_| crate::crypto::CryptoError::Undecryptable)?;
    Ok(Some(SecretString::from(text)))
}

/// The stored bytes, as they are at rest (for audits and tests).
pub async fn raw_ciphertext(
    tx: &mut TenantTx,
    name: SecretName,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *c)
            .await?
    }))
}

pub async fn delete(tx: &mut TenantTx, name: SecretName) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n > 0)
}
