//! API tokens: `glt_` + 256 random bits (base64url). Only a SHA-256 hash is
//! stored; the plaintext is returned once, at issue. A token works only while
//! it is unrevoked, its member exists and its tenant is active.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use galantis_core::{MemberId, Role, ShopDomain, TenantId, TokenId};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{ControlTx, Db};
use crate::error::StoreError;
use crate::on_tx;

pub const TOKEN_PREFIX: &str = "glt_";

/// A freshly issued token. `secret` is the only copy of the plaintext.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: TokenId,
    pub secret: SecretString,
    pub display_prefix: String,
}

/// Token metadata, safe to show.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub member_id: MemberId,
    pub display_prefix: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who is calling: resolved from a token on every request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub shop: ShopDomain,
    pub member_id: MemberId,
    pub role: Role,
    pub token_id: TokenId,
    last_used_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token: the auth cache's key.
    key: [u8; 32],
}

impl Principal {
    pub(crate) fn set_last_used_at(&mut self, at: DateTime<Utc>) {
        self.last_used_at = Some(at);
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hash(token: &str) -> String {
    hex::encode(digest(token))
}

fn generate() -> Result<(String, String), StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| crate::crypto::CryptoError::Random)?;
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let display = token[..TOKEN_PREFIX.len() + 6].to_owned();
    Ok((token, display))
}

pub async fn issue(
    tx: &mut ControlTx,
    tenant: TenantId,
    member: MemberId,
    label: Option<&str>,
) -> Result<IssuedToken, StoreError> {
    let (token, display_prefix) = generate()?;
    let id = TokenId::new();
    on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, member_id, token_hash, display_prefix, label, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(member.as_uuid())
        .bind(hash(&token))
        .bind(&display_prefix)
        .bind(label)
        .bind(tx.1.now())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(IssuedToken {
        id,
        secret: SecretString::from(token),
        display_prefix,
    })
}

/// Issues a token for an existing member of `tenant`.
pub async fn create(
    db: &Db,
    tenant: TenantId,
    member: MemberId,
    label: Option<&str>,
) -> Result<IssuedToken, StoreError> {
    if crate::control::members::get(db, tenant, member)
        .await?
        .is_none()
    {
        return Err(StoreError::NotFound);
    }
    let mut tx = db.control_tx().await?;
    let t = issue(&mut tx, tenant, member, label).await?;
    tx.commit().await?;
    Ok(t)
}

/// Resolves a presented bearer token. `None` for anything that should be a 401:
/// unknown, malformed, revoked, member removed, tenant deactivated.
///
/// A token resolved in the last [`AUTH_CACHE_TTL`](super::auth_cache::AUTH_CACHE_TTL)
/// (2 s) is answered from this process's cache; changes made through this
/// process invalidate it at once (see `control::auth_cache`).
pub async fn authenticate(
    db: &Db,
    presented: &SecretString,
) -> Result<Option<Principal>, StoreError> {
    let presented = presented.expose_secret();
    if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 128 {
        return Ok(None);
    }
    let key = digest(presented);
    let cache = db.auth_cache();
    if let Some(p) = cache.get(&key) {
        return Ok(Some(p));
    }
    let generation = cache.generation();
    let mut tx = db.control_read().await?;
    type Row = (Uuid, String, Uuid, String, Uuid, Option<DateTime<Utc>>);
    let row: Option<Row> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(
            "SELECT t.id, t.shop_domain, m.id, m.role, k.id, k.last_used_at
             FROM api_tokens k
             JOIN members m ON m.id = k.member_id
             JOIN tenants t ON t.id = k.tenant_id AND t.id = m.tenant_id
             WHERE k.token_hash = $1 AND k.revoked_at IS NULL AND t.status = 'active'",
        )
        .bind(hex::encode(key))
        .fetch_optional(&mut *c)
        .await?
    });
    tx.commit().await?;
    let Some((tenant, shop, member, role, token, last_used_at)) = row else {
        return Ok(None);
    };
    let (Ok(shop), Ok(role)) = (ShopDomain::parse(&shop), role.parse::<Role>()) else {
        tracing::error!(token = %token, "token resolves to a member or tenant with invalid stored fields");
        return Ok(None);
    };
    let principal = Principal {
        tenant_id: TenantId::from_uuid(tenant),
        shop,
        member_id: MemberId::from_uuid(member),
        role,
        token_id: TokenId::from_uuid(token),
        last_used_at,
        key,
    };
    cache.insert(key, principal.clone(), generation);
    Ok(Some(principal))
}

/// Records use of a token, at most once a minute, so the hot auth path does
/// not write on every request.
pub async fn touch(db: &Db, principal: &Principal) -> Result<(), StoreError> {
    let now = db.now();
    if principal
        .last_used_at
        .is_some_and(|t| now - t < chrono::Duration::minutes(1))
    {
        return Ok(());
    }
    let mut tx = db.control_tx().await?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(principal.token_id.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    db.auth_cache().touched(&principal.key, now);
    Ok(())
}

/// Revokes a token of `tenant`. Revoking twice is a no-op; another tenant's
/// token is `NotFound`.
pub async fn revoke(db: &Db, tenant: TenantId, token: TokenId) -> Result<(), StoreError> {
    let mut tx = db.control_tx().await?;
    let found = on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE tenant_id = $2 AND id = $3",
        )
        .bind(tx.1.now())
        .bind(tenant.as_uuid())
        .bind(token.as_uuid())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    tx.commit().await?;
    db.auth_cache().invalidate_all();
    if found == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Tokens of `tenant`, optionally of one member.
pub async fn list(
    db: &Db,
    tenant: TenantId,
    member: Option<MemberId>,
) -> Result<Vec<TokenInfo>, StoreError> {
    type Row = (
        Uuid,
        Uuid,
        String,
        Option<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let mut tx = db.control_read().await?;
    let rows: Vec<Row> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(
            "SELECT id, member_id, display_prefix, label, created_at, last_used_at, revoked_at
             FROM api_tokens WHERE tenant_id = $1 AND ($2 IS NULL OR member_id = $2) ORDER BY id",
        )
        .bind(tenant.as_uuid())
        .bind(member.map(|m| m.as_uuid()))
        .fetch_all(&mut *c)
        .await?
    });
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            id: TokenId::from_uuid(r.0),
            member_id: MemberId::from_uuid(r.1),
            display_prefix: r.2,
            label: r.3,
            created_at: r.4,
            last_used_at: r.5,
            revoked_at: r.6,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_high_entropy() {
        let (a, da) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert!(a.starts_with("glt_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(a, b);
        assert!(a.starts_with(&da));
        assert_ne!(hash(&a), a);
    }
}
