//! Contact writers: Shopify customers, WhatsApp-only contacts, imported rows,
//! tags, deletion and erasure.

use galantis_core::{ConsentSource, MarketingState};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{
    Contact, CustomerFields, apply_shopify_sms_consent, by_phone, by_shopify_id, get,
    set_email_consent, set_marketing_state,
};
use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

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
    let phone_kept_by = match &f.phone {
        Some(p) => claim_phone(tx, p, id, f.shopify_customer_id, f.updated_at).await?,
        None => None,
    };
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
                    phone_raw = $6, phone_status = $7, locale = $8, country = COALESCE($9, country), tags = COALESCE($10, tags),
                    shopify_updated_at = $11, updated_at = $12
             WHERE id = $13",
        )
        .bind(f.shopify_customer_id)
        .bind(&f.first_name)
        .bind(&f.last_name)
        .bind(&f.email)
        .bind(f.phone.as_ref().filter(|_| phone_kept_by.is_none()))
        .bind(&f.phone_raw)
        .bind(f.phone_status.filter(|_| phone_kept_by.is_none()))
        .bind(&f.locale)
        .bind(&f.country)
        .bind((!f.tags_absent).then_some(Json(&f.tags)))
        .bind(f.updated_at)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if let Some(holder) = phone_kept_by {
        identity_note(
            tx,
            id,
            &format!("phone_kept_by:customer:{holder}"),
            f.updated_at,
        )
        .await?;
    }
    if crate::tenant::orders::adopt_orphans(tx, id, f.shopify_customer_id).await? > 0 {
        refresh_order_stats(tx, id, now_ms).await?;
    }
    if let Some(state) = f.marketing_state {
        apply_shopify_sms_consent(
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
    if let Some(state) = f.email_marketing_state {
        let at = f.email_consent_updated_at.unwrap_or(f.updated_at);
        set_email_consent(tx, id, state, at, now_ms).await?;
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

/// One phone, one contact: when another Shopify customer's contact holds
/// `phone`, the later customer record (by Shopify's `updated_at`) holds it.
/// If this update is the later one, the other contact loses the phone, with
/// a note in its history; otherwise this contact stays without it and the
/// holder's Shopify id is returned. Either delivery order ends the same way,
/// and the unique phone index is never hit (a retry could not fix that).
async fn claim_phone(
    tx: &mut TenantTx,
    phone: &str,
    claimant: Uuid,
    shopify_customer_id: i64,
    version: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(holder) = by_phone(tx, phone).await? else {
        return Ok(None);
    };
    let Some(holder_customer) = holder.shopify_customer_id.filter(|_| holder.id != claimant) else {
        return Ok(None);
    };
    let held_since: Option<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT shopify_updated_at FROM contacts WHERE id = $1")
            .bind(holder.id)
            .fetch_one(&mut *c)
            .await?
    });
    if held_since.is_some_and(|h| h > version) {
        return Ok(Some(holder_customer));
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE contacts SET phone = NULL, phone_status = NULL WHERE id = $1")
            .bind(holder.id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    identity_note(
        tx,
        holder.id,
        &format!("phone_moved_to:customer:{shopify_customer_id}"),
        version,
    )
    .await?;
    Ok(None)
}

/// Records an identity change (not a consent change: the state stays) in
/// the contact's consent history, where its proof of reachability lives.
async fn identity_note(
    tx: &mut TenantTx,
    contact: Uuid,
    reference: &str,
    occurred_at: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO consent_events (id, contact_id, state, previous_state, source, reference, occurred_at)
             SELECT $1, id, marketing_state, marketing_state, $2, $3, $4 FROM contacts WHERE id = $5",
        )
        .bind(Uuid::now_v7())
        .bind(ConsentSource::ShopifyCustomer.as_str())
        .bind(reference)
        .bind(occurred_at)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
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
            crate::tenant::back_in_stock::cancel_for_contact(tx, c.id, now_ms).await?;
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
                    phone_status = NULL, locale = NULL, country = NULL, tags = $1, email_marketing_state = NULL, redacted_at = COALESCE(redacted_at, $2),
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
    crate::tenant::messaging::scrub_amendments_for(tx, contact).await?;
    super::phone_changes::scrub(tx, contact).await?;
    crate::tenant::back_in_stock::cancel_for_contact(tx, contact, now_ms).await?;
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

/// Sets `exclude_from_galantis`; returns whether it changed.
pub async fn set_excluded(
    tx: &mut TenantTx,
    contact: Uuid,
    excluded: bool,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET exclude_from_galantis = $1, updated_at = $2
             WHERE id = $3 AND exclude_from_galantis <> $1",
        )
        .bind(excluded)
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Creates a contact from an imported row (valid E.164 phone).
pub async fn create_imported_contact(
    tx: &mut TenantTx,
    phone_e164: &str,
    first_name: Option<&str>,
    last_name: Option<&str>,
    email: Option<&str>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO contacts (id, first_name, last_name, email, phone, phone_raw, phone_status, marketing_state,
                                   created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5, 'valid', 'UNKNOWN', $6, $6)",
        )
        .bind(id)
        .bind(first_name)
        .bind(last_name)
        .bind(email)
        .bind(phone_e164)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(id)
}

/// Fills or overwrites names and email from an imported row (only the
/// values the row gives). Returns whether anything changed.
pub async fn update_imported_contact(
    tx: &mut TenantTx,
    current: &Contact,
    first_name: Option<&str>,
    last_name: Option<&str>,
    email: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let differs =
        |new: Option<&str>, old: &Option<String>| new.is_some_and(|n| Some(n) != old.as_deref());
    if !(differs(first_name, &current.first_name)
        || differs(last_name, &current.last_name)
        || differs(email, &current.email))
    {
        return Ok(false);
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET first_name = COALESCE($1, first_name), last_name = COALESCE($2, last_name),
                    email = COALESCE($3, email), updated_at = $4
             WHERE id = $5",
        )
        .bind(first_name)
        .bind(last_name)
        .bind(email)
        .bind(now_ms)
        .bind(current.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(true)
}
