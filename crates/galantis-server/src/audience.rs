//! Audience orchestration: membership transitions become domain events
//! (`USER_ADDED_TO_SEGMENT`, `USER_ADDED_TO_LIST`), recorded in the same
//! transaction as the change (the store publishes them once it commits);
//! contact changes from webhooks, the API and imports re-evaluate segments;
//! consent and tag changes made in Galantis are written back to Shopify
//! through a job enqueued in that same transaction; a change of a
//! collection's products re-evaluates the segments whose rules mention the
//! collection.

use chrono::{DateTime, Utc};
use galantis_core::DomainEvent;
use galantis_store::events::record_caused_by;
use galantis_store::tenant::segments::{self, Entered};
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

pub fn segment_event(e: &Entered) -> DomainEvent {
    DomainEvent::UserAddedToSegment {
        segment_id: e.segment_id,
        segment_name: e.segment_name.clone(),
        contact_id: e.contact_id,
    }
}

pub fn list_event(list: Uuid, contact: Uuid, source: &str) -> DomainEvent {
    DomainEvent::UserAddedToList {
        list_id: list,
        contact_id: contact,
        source: source.to_owned(),
    }
}

pub(crate) fn at(now_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(now_ms).unwrap_or_default()
}

/// Records who entered a segment; returns how many.
pub async fn entered(
    tx: &mut TenantTx,
    entered: &[Entered],
    now_ms: i64,
    cause: Option<Uuid>,
) -> Result<usize, StoreError> {
    for e in entered {
        record_caused_by(tx, &segment_event(e), cause, at(now_ms)).await?;
    }
    Ok(entered.len())
}

/// A webhook (`cause`) changed a contact (its fields, consent, tags or
/// orders): re-evaluate its segments and record who entered one.
pub async fn contact_changed(
    tx: &mut TenantTx,
    contact: Uuid,
    now_ms: i64,
    cause: Option<Uuid>,
) -> Result<(), StoreError> {
    let e = segments::reevaluate_contacts(tx, &[contact], now_ms).await?;
    entered(tx, &e, now_ms, cause).await?;
    Ok(())
}

/// Contacts changed outside webhooks (API, import): re-evaluate their
/// segments and record entries.
pub async fn contacts_changed(
    tx: &mut TenantTx,
    contacts: &[Uuid],
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in contacts.chunks(1000) {
        let e = segments::reevaluate_contacts(tx, chunk, now_ms).await?;
        entered(tx, &e, now_ms, None).await?;
    }
    Ok(())
}

/// List membership changed for `contacts`: events for who joined, and the
/// segments whose rules mention the list are re-evaluated for them.
pub async fn list_membership_changed(
    tx: &mut TenantTx,
    list: Uuid,
    joined: &[Uuid],
    left: &[Uuid],
    source: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    for c in joined {
        record_caused_by(tx, &list_event(list, *c, source), None, at(now_ms)).await?;
    }
    let mut touched: Vec<Uuid> = joined.iter().chain(left.iter()).copied().collect();
    touched.sort_unstable();
    touched.dedup();
    for chunk in touched.chunks(1000) {
        let e = segments::reevaluate_for_lists(tx, &[list], Some(chunk), now_ms).await?;
        entered(tx, &e, now_ms, None).await?;
    }
    Ok(())
}

/// The products of Shopify collection `collection` changed: re-evaluate,
/// over every contact, the segments whose rules mention it (who entered is
/// recorded; who no longer matches leaves). Returns how many segments, and
/// how many entries.
pub async fn collection_changed(
    tx: &mut TenantTx,
    collection: i64,
    now_ms: i64,
) -> Result<(usize, usize), StoreError> {
    let affected: Vec<segments::Loaded> = segments::load(tx, None, false)
        .await?
        .into_iter()
        .filter(|s| s.rules.referenced_collections().contains(&collection))
        .collect();
    let e = segments::evaluate_many(tx, &affected, None, now_ms).await?;
    let n = entered(tx, &e, now_ms, None).await?;
    Ok((affected.len(), n))
}
