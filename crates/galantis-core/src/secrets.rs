//! Named per-tenant secrets and the `KeyStore` port that keeps them.

use std::future::Future;

use crate::TenantId;

/// The secrets a tenant may hold. A closed set, so a typo cannot create a
/// secret nobody reads, and names are safe to use as associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretName {
    ShopifyAccessToken,
    ShopifyRefreshToken,
    MetaAccessToken,
    CatalogToken,
}

impl SecretName {
    pub const ALL: [SecretName; 4] = [
        SecretName::ShopifyAccessToken,
        SecretName::ShopifyRefreshToken,
        SecretName::MetaAccessToken,
        SecretName::CatalogToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecretName::ShopifyAccessToken => "shopify_access_token",
            SecretName::ShopifyRefreshToken => "shopify_refresh_token",
            SecretName::MetaAccessToken => "meta_access_token",
            SecretName::CatalogToken => "catalog_token",
        }
    }
}

/// Stores and reads a tenant's secrets, encrypted at rest. Values cross this
/// port as plain `String`s inside the caller's own secret wrapper; an
/// implementation must never log them.
pub trait KeyStore: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    fn put_secret(
        &self,
        tenant: TenantId,
        name: SecretName,
        value: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn get_secret(
        &self,
        tenant: TenantId,
        name: SecretName,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    fn delete_secret(
        &self,
        tenant: TenantId,
        name: SecretName,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}
