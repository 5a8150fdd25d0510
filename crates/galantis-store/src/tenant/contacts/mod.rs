//! Contacts (Shopify customers and WhatsApp users) and their consent proof:
//! the contact row and its lookups here, then by purpose: [`search`] (the
//! `GET /contacts` filters and the audience search), [`write`] (Shopify,
//! WhatsApp and import writers, tags, erasure) and [`consent`] (state
//! changes and their proof).

use galantis_core::MarketingState;
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::parsed_text::Parsed;

/// Customer fields as Shopify sends them, already parsed.
#[derive(Debug, Clone, Default)]
pub struct CustomerFields {
    pub shopify_customer_id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// E.164 when valid.
    pub phone: Option<String>,
    /// As received.
    pub phone_raw: Option<String>,
    /// `valid`, `missing_calling_code` or `invalid` (None without a phone).
    pub phone_status: Option<&'static str>,
    pub locale: Option<String>,
    pub country: Option<String>,
    pub tags: Vec<String>,
    /// The payload carried no `tags` (Shopify API 2025-01+ customers): the
    /// stored tags are kept, never cleared.
    pub tags_absent: bool,
    /// Parsed SMS consent, when the payload carries it.
    pub marketing_state: Option<MarketingState>,
    /// When that consent was given or withdrawn (`consent_updated_at`); the
    /// customer's `updated_at` moves with any edit, so it would make an old
    /// consent look newer than a later STOP.
    pub consent_updated_at: Option<i64>,
    /// Email consent, when the payload carries it: stored and shown, never
    /// used for WhatsApp.
    pub email_marketing_state: Option<MarketingState>,
    pub email_consent_updated_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Contact {
    pub id: Uuid,
    pub shopify_customer_id: Option<i64>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub phone_status: Option<String>,
    pub locale: Option<String>,
    pub country: Option<String>,
    pub tags: Vec<String>,
    pub marketing_state: MarketingState,
    /// Shopify's email marketing consent, for display: WhatsApp sends follow
    /// `marketing_state` alone.
    pub email_marketing_state: Option<MarketingState>,
    pub exclude_from_galantis: bool,
    pub orders_count: i64,
    pub total_spent_cents: i64,
    pub deleted: bool,
    pub redacted: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    shopify_customer_id: Option<i64>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    phone_status: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    tags: Json<Vec<String>>,
    marketing_state: Parsed<MarketingState>,
    email_marketing_state: Option<Parsed<MarketingState>>,
    exclude_from_galantis: bool,
    orders_count: i64,
    total_spent_cents: i64,
    deleted_at: Option<i64>,
    redacted_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

macro_rules! columns {
    () => {
        "id, shopify_customer_id, first_name, last_name, email, phone, phone_status, locale, country, tags,
         marketing_state, email_marketing_state, exclude_from_galantis, orders_count, total_spent_cents, deleted_at, redacted_at,
         created_at, updated_at"
    };
}

mod consent;
pub mod phone_changes;
mod search;
mod write;

pub use consent::{
    ConsentEvent, ShopifyConsent, apply_shopify_sms_consent, apply_shopify_whatsapp_consent,
    consent_history, set_email_consent, set_marketing_state,
};
pub use search::{ContactSearch, Filter, list, search, search_ids};
pub(crate) use search::{in_lists, in_segments};
pub use write::{
    Upserted, change_tags, create_from_whatsapp, create_imported_contact, mark_deleted, redact,
    redact_all_remaining, refresh_order_stats, set_excluded, update_imported_contact,
    upsert_customer,
};

fn to_contact(r: Row) -> Contact {
    Contact {
        id: r.id,
        shopify_customer_id: r.shopify_customer_id,
        first_name: r.first_name,
        last_name: r.last_name,
        email: r.email,
        phone: r.phone,
        phone_status: r.phone_status,
        locale: r.locale,
        country: r.country,
        tags: r.tags.0,
        marketing_state: r.marketing_state.into_inner(),
        email_marketing_state: r.email_marketing_state.map(Parsed::into_inner),
        exclude_from_galantis: r.exclude_from_galantis,
        orders_count: r.orders_count,
        total_spent_cents: r.total_spent_cents,
        deleted: r.deleted_at.is_some(),
        redacted: r.redacted_at.is_some(),
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    }
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Contact>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM contacts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_contact))
}

/// `$1, …, $n`: the placeholders of an `IN (…)` list (both engines).
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ids per `IN (…)` statement, well under both engines' bind limits.
pub(crate) const IN_CHUNK: usize = 500;

/// The contacts of `ids` that exist, by id: one statement per
/// [`IN_CHUNK`] ids instead of one per contact (a campaign's batch).
pub async fn get_many(
    tx: &mut TenantTx,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Contact>, StoreError> {
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {} FROM contacts WHERE id IN ({})",
            columns!(),
            placeholders(chunk.len())
        );
        let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in chunk {
                q = q.bind(*id);
            }
            q.fetch_all(&mut *c).await?
        });
        out.extend(rows.into_iter().map(to_contact).map(|c| (c.id, c)));
    }
    Ok(out)
}

pub async fn by_shopify_id(
    tx: &mut TenantTx,
    shopify_id: i64,
) -> Result<Option<Contact>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM contacts WHERE shopify_customer_id = $1"
        ))
        .bind(shopify_id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_contact))
}

pub async fn by_phone(tx: &mut TenantTx, phone_e164: &str) -> Result<Option<Contact>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM contacts WHERE phone = $1 AND deleted_at IS NULL"
        ))
        .bind(phone_e164)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_contact))
}
