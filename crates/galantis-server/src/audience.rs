//! Audience orchestration: membership transitions become domain events
//! (`USER_ADDED_TO_SEGMENT`, `USER_ADDED_TO_LIST`), recorded in the same
//! transaction as the change and published after it commits; contact
//! changes from webhooks, the API and imports re-evaluate segments; consent
//! and tag changes made in Galantis are written back to Shopify through a
//! job enqueued in that same transaction; a change of a collection's
//! products re-evaluates the segments whose rules mention the collection.

use galantis_store::tenant::domain_events::{self, NewDomainEvent};
use galantis_store::tenant::segments::{self, Entered};
use galantis_store::{StoreError, TenantTx};
use serde_json::json;
use uuid::Uuid;

use crate::state::{AppState, PublishedEvent};
use crate::webhooks::process::Outcome;

pub const USER_ADDED_TO_SEGMENT: &str = "USER_ADDED_TO_SEGMENT";
pub const USER_ADDED_TO_LIST: &str = "USER_ADDED_TO_LIST";

pub fn segment_event(e: &Entered) -> NewDomainEvent {
    NewDomainEvent {
        kind: USER_ADDED_TO_SEGMENT,
        subject_id: Some(e.contact_id.to_string()),
        payload: json!({
            "segment_id": e.segment_id,
            "segment_name": e.segment_name,
            "contact_id": e.contact_id,
        }),
    }
}

pub fn list_event(list: Uuid, contact: Uuid, source: &str) -> NewDomainEvent {
    NewDomainEvent {
        kind: USER_ADDED_TO_LIST,
        subject_id: Some(contact.to_string()),
        payload: json!({ "list_id": list, "contact_id": contact, "source": source }),
    }
}

/// A webhook changed a contact (its fields, consent, tags or orders):
/// re-evaluate its segments; entries become events of the webhook's outcome.
pub async fn contact_changed(
    tx: &mut TenantTx,
    contact: Uuid,
    now_ms: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    for e in segments::reevaluate_contacts(tx, &[contact], now_ms).await? {
        let ev = segment_event(&e);
        out.event(ev.kind, ev.subject_id, ev.payload);
    }
    Ok(())
}

/// Domain events recorded in a transaction, published once it committed.
#[derive(Default)]
pub struct Pending {
    events: Vec<PublishedEvent>,
}

impl Pending {
    pub async fn record(
        &mut self,
        tx: &mut TenantTx,
        e: NewDomainEvent,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let id = domain_events::insert(tx, &e, None, now_ms).await?;
        self.events.push(PublishedEvent {
            tenant: tx.tenant(),
            id,
            kind: e.kind,
            subject_id: e.subject_id,
        });
        Ok(())
    }

    pub async fn entered(
        &mut self,
        tx: &mut TenantTx,
        entered: &[Entered],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for e in entered {
            self.record(tx, segment_event(e), now_ms).await?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Call after commit.
    pub fn publish(self, app: &AppState) {
        for p in self.events {
            metrics::counter!("galantis_domain_events_total", "kind" => p.kind).increment(1);
            let _ = app.events.send(p);
        }
    }
}

/// Contacts changed outside webhooks (API, import): re-evaluate their
/// segments and record entries.
pub async fn contacts_changed(
    tx: &mut TenantTx,
    contacts: &[Uuid],
    now_ms: i64,
    pending: &mut Pending,
) -> Result<(), StoreError> {
    for chunk in contacts.chunks(1000) {
        let entered = segments::reevaluate_contacts(tx, chunk, now_ms).await?;
        pending.entered(tx, &entered, now_ms).await?;
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
    pending: &mut Pending,
) -> Result<(), StoreError> {
    for c in joined {
        pending
            .record(tx, list_event(list, *c, source), now_ms)
            .await?;
    }
    let mut touched: Vec<Uuid> = joined.iter().chain(left.iter()).copied().collect();
    touched.sort_unstable();
    touched.dedup();
    for chunk in touched.chunks(1000) {
        let entered = segments::reevaluate_for_lists(tx, &[list], Some(chunk), now_ms).await?;
        pending.entered(tx, &entered, now_ms).await?;
    }
    Ok(())
}

/// The products of Shopify collection `collection` changed: re-evaluate,
/// over every contact, the segments whose rules mention it (who entered is
/// recorded; who no longer matches leaves). Returns how many segments.
pub async fn collection_changed(
    tx: &mut TenantTx,
    collection: i64,
    now_ms: i64,
    pending: &mut Pending,
) -> Result<usize, StoreError> {
    let affected: Vec<segments::Loaded> = segments::load(tx, None, false)
        .await?
        .into_iter()
        .filter(|s| s.rules.referenced_collections().contains(&collection))
        .collect();
    let entered = segments::evaluate_many(tx, &affected, None, now_ms).await?;
    pending.entered(tx, &entered, now_ms).await?;
    Ok(affected.len())
}
