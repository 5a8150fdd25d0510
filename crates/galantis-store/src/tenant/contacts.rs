//! Contacts (Shopify customers and WhatsApp users) and their consent proof.

use galantis_core::{ConsentSource, MarketingState};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

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
    /// Parsed SMS consent, when the payload carries it.
    pub marketing_state: Option<MarketingState>,
    /// When that consent was given or withdrawn (`consent_updated_at`); the
    /// customer's `updated_at` moves with any edit, so it would make an old
    /// consent look newer than a later STOP.
    pub consent_updated_at: Option<i64>,
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
    pub marketing_state: String,
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
    marketing_state: String,
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
         marketing_state, exclude_from_galantis, orders_count, total_spent_cents, deleted_at, redacted_at,
         created_at, updated_at"
    };
}

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
        marketing_state: r.marketing_state,
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

/// What an upsert did, for domain events.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted {
    Created(Box<Contact>),
    Updated {
        before: Box<Contact>,
        after: Box<Contact>,
    },
    /// Older than what is stored, or the contact was deleted or redacted.
    Skipped,
}

/// Creates or updates the contact of a Shopify customer. Stale payloads
/// (older `updated_at` than stored) and payloads for deleted or redacted
/// contacts change nothing. A phone already used by another contact (e.g. a
/// WhatsApp user who wrote first) is merged into this customer.
pub async fn upsert_customer(
    tx: &mut TenantTx,
    f: &CustomerFields,
    now_ms: i64,
) -> Result<Upserted, StoreError> {
    let existing = by_shopify_id(tx, f.shopify_customer_id).await?;
    if let Some(e) = &existing {
        let stored: Option<i64> = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar("SELECT shopify_updated_at FROM contacts WHERE id = $1")
                .bind(e.id)
                .fetch_one(&mut *c)
                .await?
        });
        if e.deleted || e.redacted || stored.is_some_and(|s| s > f.updated_at) {
            return Ok(Upserted::Skipped);
        }
    }
    // A WhatsApp-only contact with this phone becomes this customer.
    let phone_owner = match &f.phone {
        Some(p) => by_phone(tx, p)
            .await?
            .filter(|c| c.shopify_customer_id.is_none()),
        None => None,
    };
    let target = existing.clone().or(phone_owner);
    let id = target.as_ref().map(|c| c.id).unwrap_or_else(Uuid::now_v7);
    if target.is_none() {
        on_tx!(tx.tx(), |c| {
            sqlx::query("INSERT INTO contacts (id, marketing_state, created_at, updated_at) VALUES ($1, 'UNKNOWN', $2, $2)")
                .bind(id)
                .bind(now_ms)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET shopify_customer_id = $1, first_name = $2, last_name = $3, email = $4, phone = $5,
                    phone_raw = $6, phone_status = $7, locale = $8, country = COALESCE($9, country), tags = $10,
                    shopify_updated_at = $11, updated_at = $12
             WHERE id = $13",
        )
        .bind(f.shopify_customer_id)
        .bind(&f.first_name)
        .bind(&f.last_name)
        .bind(&f.email)
        .bind(&f.phone)
        .bind(&f.phone_raw)
        .bind(f.phone_status)
        .bind(&f.locale)
        .bind(&f.country)
        .bind(Json(&f.tags))
        .bind(f.updated_at)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if crate::tenant::orders::adopt_orphans(tx, id, f.shopify_customer_id).await? > 0 {
        refresh_order_stats(tx, id, now_ms).await?;
    }
    if let Some(state) = f.marketing_state {
        set_marketing_state(
            tx,
            id,
            state,
            ConsentSource::ShopifyCustomer,
            Some(&format!("customer:{}", f.shopify_customer_id)),
            f.consent_updated_at.unwrap_or(f.updated_at),
            now_ms,
        )
        .await?;
    }
    let after = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    // A customer Shopify tells us about for the first time is "created", even
    // when it merged into a contact known from WhatsApp.
    Ok(match target.filter(|_| existing.is_some()) {
        Some(before) => Upserted::Updated {
            before: Box::new(before),
            after: Box::new(after),
        },
        None => Upserted::Created(Box::new(after)),
    })
}

/// Creates a contact known only by its WhatsApp number (an inbound message
/// from someone who is not a Shopify customer).
pub async fn create_from_whatsapp(
    tx: &mut TenantTx,
    phone_e164: &str,
    profile_name: Option<&str>,
    now_ms: i64,
) -> Result<Contact, StoreError> {
    let id = Uuid::now_v7();
    let (first, last) = match profile_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => match n.split_once(' ') {
            Some((f, l)) => (Some(f.to_owned()), Some(l.to_owned())),
            None => (Some(n.to_owned()), None),
        },
        None => (None, None),
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO contacts (id, first_name, last_name, phone, phone_raw, phone_status, marketing_state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4, 'valid', 'UNKNOWN', $5, $5)",
        )
        .bind(id)
        .bind(first)
        .bind(last)
        .bind(phone_e164)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

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
    let current: Option<String> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT marketing_state FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_optional(&mut *c)
            .await?
    });
    let Some(current) = current else {
        return Err(StoreError::NotFound);
    };
    let current: MarketingState = current.parse().unwrap_or(MarketingState::Unknown);
    if current == state || !current.may_become(state) {
        return Ok(false);
    }
    // The latest proof wins: a consent change older than the one in force
    // (e.g. a lagging Shopify update after a STOP reply) changes nothing.
    let latest: Option<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT MAX(occurred_at) FROM consent_events WHERE contact_id = $1")
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

#[derive(Debug, Clone, Serialize)]
pub struct ConsentEvent {
    pub state: String,
    pub previous_state: Option<String>,
    pub source: String,
    pub reference: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

pub async fn consent_history(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<ConsentEvent>, StoreError> {
    let rows: Vec<(String, Option<String>, String, Option<String>, i64)> = on_tx!(tx.tx(), |c| {
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
            state: r.0,
            previous_state: r.1,
            source: r.2,
            reference: r.3,
            occurred_at: from_ms(r.4),
        })
        .collect())
}

/// Adds or removes tags (case-insensitively, keeping Shopify's spelling).
pub async fn change_tags(
    tx: &mut TenantTx,
    contact: Uuid,
    add: &[String],
    remove: &[String],
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let current = get(tx, contact).await?.ok_or(StoreError::NotFound)?;
    let mut tags = current.tags.clone();
    tags.retain(|t| !remove.iter().any(|r| r.eq_ignore_ascii_case(t)));
    for a in add {
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(a)) {
            tags.push(a.clone());
        }
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE contacts SET tags = $1, updated_at = $2 WHERE id = $3")
            .bind(Json(&tags))
            .bind(now_ms)
            .bind(contact)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(tags)
}

/// Marks a customer's contact deleted (hidden, never resurrected by a late
/// update). A delete before the create leaves a tombstone.
pub async fn mark_deleted(
    tx: &mut TenantTx,
    shopify_id: i64,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    match by_shopify_id(tx, shopify_id).await? {
        Some(c) => {
            on_tx!(tx.tx(), |x| {
                sqlx::query("UPDATE contacts SET deleted_at = COALESCE(deleted_at, $1), updated_at = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(c.id)
                    .execute(&mut *x)
                    .await?
                    .rows_affected()
            });
            Ok(Some(c.id))
        }
        None => {
            on_tx!(tx.tx(), |x| {
                sqlx::query(
                    "INSERT INTO contacts (id, shopify_customer_id, marketing_state, deleted_at, created_at, updated_at)
                     VALUES ($1, $2, 'UNKNOWN', $3, $3, $3)",
                )
                .bind(Uuid::now_v7())
                .bind(shopify_id)
                .bind(now_ms)
                .execute(&mut *x)
                .await?
                .rows_affected()
            });
            Ok(None)
        }
    }
}

/// Recomputes order aggregates of a contact from its orders.
pub async fn refresh_order_stats(
    tx: &mut TenantTx,
    contact: Uuid,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET
                orders_count = (SELECT COUNT(*) FROM orders WHERE contact_id = $1 AND cancelled_at IS NULL AND deleted_at IS NULL),
                total_spent_cents = COALESCE((SELECT SUM(total_price_cents) FROM orders WHERE contact_id = $1 AND cancelled_at IS NULL AND deleted_at IS NULL), 0),
                first_order_at = (SELECT MIN(shopify_created_at) FROM orders WHERE contact_id = $1 AND deleted_at IS NULL),
                last_order_at = (SELECT MAX(shopify_created_at) FROM orders WHERE contact_id = $1 AND deleted_at IS NULL),
                updated_at = $2
             WHERE id = $1",
        )
        .bind(contact)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Filters for listing contacts.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub marketing_state: Option<String>,
    pub tag: Option<String>,
    pub country: Option<String>,
    pub search: Option<String>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list(tx: &mut TenantTx, f: &Filter) -> Result<Vec<Contact>, StoreError> {
    let search = f
        .search
        .as_ref()
        .map(|s| crate::like::like_contains(&s.to_lowercase()));
    // A whole tag, case-insensitively: the same test as the segment rule
    // `customer_tag`, so a filter and a segment never disagree.
    let tag = f.tag.as_ref().map(|t| t.trim().to_lowercase());
    let rows: Vec<Row> = on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query_as(concat!("SELECT ", columns!(), " FROM contacts
                WHERE deleted_at IS NULL AND ($1 IS NULL OR marketing_state = $1) AND ($2 IS NULL OR country = $2)
                  AND ($3 IS NULL OR lower(coalesce(first_name,'') || ' ' || coalesce(last_name,'') || ' ' || coalesce(email,'') || ' ' || coalesce(phone,'')) LIKE $3 ESCAPE '\\')
                  AND ($4 IS NULL OR EXISTS (SELECT 1 FROM json_each(tags) t WHERE lower(t.value) = $4))
                  AND ($5 IS NULL OR id < $5)
                ORDER BY id DESC LIMIT $6"))
                .bind(&f.marketing_state).bind(&f.country).bind(&search).bind(&tag).bind(f.before).bind(i64::from(f.limit))
                .fetch_all(&mut *c).await?
            },
        postgres
            | c
            | {
                sqlx::query_as(concat!("SELECT ", columns!(), " FROM contacts
                WHERE deleted_at IS NULL AND ($1::text IS NULL OR marketing_state = $1) AND ($2::text IS NULL OR country = $2)
                  AND ($3::text IS NULL OR lower(coalesce(first_name,'') || ' ' || coalesce(last_name,'') || ' ' || coalesce(email,'') || ' ' || coalesce(phone,'')) LIKE $3 ESCAPE '\\')
                  AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(tags) = 'array' THEN tags ELSE '[]'::jsonb END) AS t(v) WHERE lower(t.v) = $4))
                  AND ($5::uuid IS NULL OR id < $5)
                ORDER BY id DESC LIMIT $6"))
                .bind(&f.marketing_state).bind(&f.country).bind(&search).bind(&tag).bind(f.before).bind(i64::from(f.limit))
                .fetch_all(&mut *c).await?
            }
    );
    Ok(rows.into_iter().map(to_contact).collect())
}

/// Erases a contact's personal data for good: identifiers scrubbed, consent
/// REDACTED (permanent), message bodies and consent references anonymised.
/// Rows stay so aggregate counts do.
pub async fn redact(tx: &mut TenantTx, contact: Uuid, now_ms: i64) -> Result<(), StoreError> {
    set_marketing_state(
        tx,
        contact,
        MarketingState::Redacted,
        ConsentSource::Redaction,
        None,
        now_ms,
        now_ms,
    )
    .await?;
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET first_name = NULL, last_name = NULL, email = NULL, phone = NULL, phone_raw = NULL,
                    phone_status = NULL, locale = NULL, country = NULL, tags = $1, redacted_at = COALESCE(redacted_at, $2),
                    updated_at = $2
             WHERE id = $3",
        )
        .bind(Json(Vec::<String>::new()))
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?;
        sqlx::query("UPDATE consent_events SET reference = NULL WHERE contact_id = $1")
            .bind(contact)
            .execute(&mut *c)
            .await?;
        sqlx::query("UPDATE messages SET body = NULL, content = $1 WHERE contact_id = $2")
            .bind(Json(Value::Object(Default::default())))
            .bind(contact)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM checkouts WHERE contact_id = $1")
            .bind(contact)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Shop erasure: every contact not yet redacted (including deleted ones).
pub async fn redact_all_remaining(tx: &mut TenantTx, now_ms: i64) -> Result<u64, StoreError> {
    let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT id FROM contacts WHERE redacted_at IS NULL")
            .fetch_all(&mut *c)
            .await?
    });
    for id in &ids {
        redact(tx, *id, now_ms).await?;
    }
    Ok(ids.len() as u64)
}
