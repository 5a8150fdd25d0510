//! Consent: state changes with their proof, and the proof's history.

use galantis_core::{ConsentSource, MarketingState};
use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::parsed_text::Parsed;

/// Changes consent and records the proof. A no-op when unchanged; REDACTED
/// never changes. Returns whether the state changed.
#[allow(clippy::too_many_arguments)]
pub async fn set_marketing_state(
    tx: &mut TenantTx,
    contact: Uuid,
    state: MarketingState,
    source: ConsentSource,
    reference: Option<&str>,
    occurred_at: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let current: Option<Parsed<MarketingState>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT marketing_state FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_optional(&mut *c)
            .await?
    });
    let Some(Parsed(current)) = current else {
        return Err(StoreError::NotFound);
    };
    if current == state || !current.may_become(state) {
        return Ok(false);
    }
    // The latest proof wins: a consent change older than the one in force
    // (e.g. a lagging Shopify update after a STOP reply) changes nothing.
    let latest: Option<i64> = on_tx!(tx.tx(), |c| {
        // Identity notes (state unchanged, e.g. a phone that moved) prove no consent.
        sqlx::query_scalar("SELECT MAX(occurred_at) FROM consent_events WHERE contact_id = $1 AND (previous_state IS NULL OR previous_state <> state)")
            .bind(contact)
            .fetch_one(&mut *c)
            .await?
    });
    if latest.is_some_and(|l| occurred_at < l) {
        return Ok(false);
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE contacts SET marketing_state = $1, updated_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now_ms)
            .bind(contact)
            .execute(&mut *c)
            .await?;
        sqlx::query(
            "INSERT INTO consent_events (id, contact_id, state, previous_state, source, reference, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(contact)
        .bind(state.as_str())
        .bind(current.as_str())
        .bind(source.as_str())
        .bind(reference)
        .bind(occurred_at)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(true)
}

/// What a Shopify consent update did to `marketing_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopifyConsent {
    Changed,
    /// Same state, an older proof than the one in force, or REDACTED.
    Unchanged,
    /// SMS consent for a contact whose WhatsApp consent Shopify has sent:
    /// WhatsApp consent decides (ADR 0018), so the SMS state is not applied.
    Superseded,
}

impl From<bool> for ShopifyConsent {
    fn from(changed: bool) -> Self {
        if changed {
            ShopifyConsent::Changed
        } else {
            ShopifyConsent::Unchanged
        }
    }
}

/// Shopify's SMS consent (inline in a customer, or its own topic): it drives
/// `marketing_state` only while Shopify has sent no WhatsApp consent for the
/// contact.
#[allow(clippy::too_many_arguments)]
pub async fn apply_shopify_sms_consent(
    tx: &mut TenantTx,
    contact: Uuid,
    state: MarketingState,
    source: ConsentSource,
    reference: Option<&str>,
    occurred_at: i64,
    now_ms: i64,
) -> Result<ShopifyConsent, StoreError> {
    let whatsapp: Option<Option<i64>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT whatsapp_consent_updated_at FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_optional(&mut *c)
            .await?
    });
    match whatsapp {
        None => Err(StoreError::NotFound),
        Some(Some(_)) => Ok(ShopifyConsent::Superseded),
        Some(None) => {
            Ok(
                set_marketing_state(tx, contact, state, source, reference, occurred_at, now_ms)
                    .await?
                    .into(),
            )
        }
    }
}

/// Shopify's WhatsApp consent: marks the contact as having one (so SMS
/// consent stops deciding) and applies the state, the latest proof winning.
pub async fn apply_shopify_whatsapp_consent(
    tx: &mut TenantTx,
    contact: Uuid,
    state: MarketingState,
    reference: Option<&str>,
    occurred_at: i64,
    now_ms: i64,
) -> Result<ShopifyConsent, StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET whatsapp_consent_updated_at = $1
             WHERE id = $2 AND (whatsapp_consent_updated_at IS NULL OR whatsapp_consent_updated_at < $1)",
        )
        .bind(occurred_at)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(set_marketing_state(
        tx,
        contact,
        state,
        ConsentSource::ShopifyWhatsappConsent,
        reference,
        occurred_at,
        now_ms,
    )
    .await?
    .into())
}

/// Stores Shopify's email consent for display (never for WhatsApp); an
/// older consent than the stored one changes nothing. Returns whether it
/// changed.
pub async fn set_email_consent(
    tx: &mut TenantTx,
    contact: Uuid,
    state: MarketingState,
    occurred_at: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET email_marketing_state = $1, email_consent_updated_at = $2, updated_at = $3
             WHERE id = $4 AND redacted_at IS NULL
               AND (email_consent_updated_at IS NULL OR email_consent_updated_at <= $2)
               AND COALESCE(email_marketing_state, '') <> $1",
        )
        .bind(state.as_str())
        .bind(occurred_at)
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// One consent change and its proof.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentEvent {
    pub state: MarketingState,
    pub previous_state: Option<MarketingState>,
    pub source: ConsentSource,
    pub reference: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    state: Parsed<MarketingState>,
    previous_state: Option<Parsed<MarketingState>>,
    source: Parsed<ConsentSource>,
    reference: Option<String>,
    occurred_at: i64,
}

pub async fn consent_history(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<ConsentEvent>, StoreError> {
    let rows: Vec<EventRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT state, previous_state, source, reference, occurred_at FROM consent_events
             WHERE contact_id = $1 ORDER BY occurred_at, id",
        )
        .bind(contact)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| ConsentEvent {
            state: r.state.into_inner(),
            previous_state: r.previous_state.map(Parsed::into_inner),
            source: r.source.into_inner(),
            reference: r.reference,
            occurred_at: from_ms(r.occurred_at),
        })
        .collect())
}
