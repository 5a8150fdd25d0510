//! Tracked links (`GET /r/{code}`): a code, its target and what it is
//! attributed to (contact, back-in-stock subscription, message); every click
//! is kept with its time.
//!
//! A code is the tenant's id (22 base64url characters) followed by 10 random
//! ones, so the redirect finds the tenant's storage from the code alone,
//! with no control-database lookup and no cross-tenant index.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use galantis_core::TenantId;
use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

const TENANT_CHARS: usize = 22;
const RANDOM_BYTES: usize = 8;
/// Longest target accepted (URLs in WhatsApp templates are far shorter).
pub const MAX_TARGET_CHARS: usize = 2000;

/// What a click is attributed to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attribution {
    pub contact_id: Option<Uuid>,
    pub subscription_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShortLink {
    pub id: Uuid,
    pub code: String,
    pub target_url: String,
}

/// The tenant a code belongs to (None for anything that is not a code).
pub fn tenant_of_code(code: &str) -> Option<TenantId> {
    if code.len() != TENANT_CHARS + 11 || !code.is_ascii() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(&code[..TENANT_CHARS]).ok()?;
    let id = Uuid::from_slice(&bytes).ok()?;
    Some(TenantId::from_uuid(id))
}

fn new_code(tenant: TenantId) -> Result<String, StoreError> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
    Ok(format!(
        "{}{}",
        URL_SAFE_NO_PAD.encode(tenant.as_uuid().as_bytes()),
        URL_SAFE_NO_PAD.encode(random)
    ))
}

/// Creates a short link to `target_url` (an absolute http(s) URL).
pub async fn create(
    tx: &mut TenantTx,
    target_url: &str,
    attribution: Attribution,
    now_ms: i64,
) -> Result<ShortLink, StoreError> {
    let mut links = create_many(tx, target_url, &[attribution], now_ms).await?;
    Ok(links.pop().expect("one link per attribution"))
}

/// Links per multi-row `INSERT`.
const CREATE_CHUNK: usize = 500;

/// One short link to `target_url` per attribution, in order, in one
/// statement per [`CREATE_CHUNK`] (a restock page's links).
pub async fn create_many(
    tx: &mut TenantTx,
    target_url: &str,
    attributions: &[Attribution],
    now_ms: i64,
) -> Result<Vec<ShortLink>, StoreError> {
    let ok = (target_url.starts_with("https://") || target_url.starts_with("http://"))
        && target_url.chars().count() <= MAX_TARGET_CHARS
        && !target_url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(StoreError::Conflict("invalid_target_url"));
    }
    let links = attributions
        .iter()
        .map(|_| {
            Ok(ShortLink {
                id: Uuid::now_v7(),
                code: new_code(tx.tenant())?,
                target_url: target_url.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    for (links, attributions) in links
        .chunks(CREATE_CHUNK)
        .zip(attributions.chunks(CREATE_CHUNK))
    {
        on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO short_links (id, code, target_url, contact_id, subscription_id, message_id, created_at) ",
            );
            qb.push_values(links.iter().zip(attributions), |mut row, (l, a)| {
                row.push_bind(l.id)
                    .push_bind(&l.code)
                    .push_bind(target_url)
                    .push_bind(a.contact_id)
                    .push_bind(a.subscription_id)
                    .push_bind(a.message_id)
                    .push_bind(now_ms);
            });
            qb.build().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(links)
}

/// Counts a click on `code` and returns its target; None for an unknown code.
pub async fn click(
    tx: &mut TenantTx,
    code: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(Uuid, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "UPDATE short_links SET clicks = clicks + 1 WHERE code = $1 RETURNING id, target_url",
        )
        .bind(code)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some((id, target)) = row else {
        return Ok(None);
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query("INSERT INTO short_link_clicks (id, link_id, clicked_at) VALUES ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(now_ms)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(Some(target))
}

/// Clicks on `code` so far.
pub async fn clicks(tx: &mut TenantTx, code: &str) -> Result<Option<i64>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT clicks FROM short_links WHERE code = $1")
            .bind(code)
            .fetch_optional(&mut *c)
            .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_their_tenant() {
        let t = TenantId::new();
        let code = new_code(t).unwrap();
        assert_eq!(code.len(), 33);
        assert_eq!(tenant_of_code(&code), Some(t));
        assert_ne!(new_code(t).unwrap(), code);
        assert_eq!(tenant_of_code("short"), None);
        assert_eq!(tenant_of_code(&format!("!{}", &code[1..])), None);
    }
}
