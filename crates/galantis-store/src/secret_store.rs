//! `SecretStore`: the [`KeyStore`] port over the database and the master key.

use std::sync::Arc;

use galantis_core::{KeyStore, SecretName, TenantId};
use secrecy::{ExposeSecret, SecretString};

use crate::control::keyring;
use crate::crypto::MasterKey;
use crate::db::Db;
use crate::error::StoreError;
use crate::tenant::secrets;

#[derive(Clone)]
pub struct SecretStore {
    db: Db,
    master: Arc<MasterKey>,
}

impl SecretStore {
    pub fn new(db: Db, master: Arc<MasterKey>) -> Self {
        Self { db, master }
    }

    pub async fn put(
        &self,
        tenant: TenantId,
        name: SecretName,
        value: &SecretString,
    ) -> Result<(), StoreError> {
        let key = keyring::data_key(&self.db, &self.master, tenant).await?;
        let mut tx = self.db.tenant_tx(tenant).await?;
        secrets::put(&mut tx, &key, name, value).await?;
        tx.commit().await
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        name: SecretName,
    ) -> Result<Option<SecretString>, StoreError> {
        let key = keyring::data_key(&self.db, &self.master, tenant).await?;
        let mut tx = self.db.tenant_read(tenant).await?;
        let v = secrets::get(&mut tx, &key, name).await?;
        tx.commit().await?;
        Ok(v)
    }

    pub async fn delete(&self, tenant: TenantId, name: SecretName) -> Result<bool, StoreError> {
        let mut tx = self.db.tenant_tx(tenant).await?;
        let v = secrets::delete(&mut tx, name).await?;
        tx.commit().await?;
        Ok(v)
    }
}

impl KeyStore for SecretStore {
    type Error = StoreError;

    async fn put_secret(
        &self,
        tenant: TenantId,
        name: SecretName,
        value: &str,
    ) -> Result<(), StoreError> {
        self.put(tenant, name, &SecretString::from(value.to_owned()))
            .await
    }

    async fn get_secret(
        &self,
        tenant: TenantId,
        name: SecretName,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(tenant, name)
            .await?
            .map(|s| s.expose_secret().to_owned()))
    }

    async fn delete_secret(&self, tenant: TenantId, name: SecretName) -> Result<bool, StoreError> {
        self.delete(tenant, name).await
    }
}
