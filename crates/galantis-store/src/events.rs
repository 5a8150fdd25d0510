//! The one way domain events are recorded: a transactional outbox.
//!
//! [`record`] enqueues, in the caller's tenant transaction, the job of every
//! subscriber of the event's kind (automation triggers, segment
//! re-evaluation…) and keeps the event itself to be written, numbered, just
//! before that transaction commits (ADR 0039): the event, its consequences
//! and the change that caused them commit together or not at all, and a
//! subscriber never misses an event because nothing was listening. Only
//! after the commit is the event handed to the in-process [`EventBus`],
//! which is for realtime clients: it may drop events when a listener lags,
//! so nothing durable hangs off it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use galantis_core::{DomainEvent, EventKind, TenantId};
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::NewJob;
use crate::tenant::domain_events;

/// A committed domain event, as published in-process.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    pub tenant: TenantId,
    pub id: Uuid,
    /// The tenant's sequence number of the event (realtime replay order),
    /// given at commit, when the event is written.
    pub seq: i64,
    pub kind: &'static str,
    pub subject_id: Option<String>,
    pub event: Arc<DomainEvent>,
}

/// What a subscriber is given to build its job.
pub struct Recorded<'a> {
    pub tenant: TenantId,
    pub id: Uuid,
    pub event: &'a DomainEvent,
    pub at: DateTime<Utc>,
}

/// Builds the job a subscriber wants for an event, or `None` to skip it.
pub type Subscriber = Arc<dyn Fn(&Recorded<'_>) -> Option<NewJob> + Send + Sync>;

/// Event kind → the subscribers enqueued when one is recorded; filled by
/// feature modules at start-up, before the first event.
#[derive(Default)]
pub struct Subscribers {
    by_kind: RwLock<HashMap<EventKind, Vec<(&'static str, Subscriber)>>>,
}

impl Subscribers {
    /// Subscribes `name` to events of `kind`. Registering the same name for
    /// a kind again replaces it, so building the app twice in one process
    /// does not enqueue twice.
    pub fn subscribe(&self, kind: EventKind, name: &'static str, make: Subscriber) {
        let mut map = self.by_kind.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(kind).or_default();
        list.retain(|(n, _)| *n != name);
        list.push((name, make));
    }

    /// The subscriber names of `kind`, for diagnostics.
    pub fn of(&self, kind: EventKind) -> Vec<&'static str> {
        let map = self.by_kind.read().unwrap_or_else(|p| p.into_inner());
        map.get(&kind)
            .map(|l| l.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }

    fn jobs(&self, r: &Recorded<'_>) -> Vec<NewJob> {
        let map = self.by_kind.read().unwrap_or_else(|p| p.into_inner());
        map.get(&r.event.kind())
            .into_iter()
            .flatten()
            .filter_map(|(_, make)| make(r))
            .collect()
    }
}

/// The store's event plumbing, shared by every clone of a [`crate::Db`].
pub struct EventBus {
    pub subscribers: Subscribers,
    sender: tokio::sync::broadcast::Sender<PublishedEvent>,
    postgres_notify: AtomicBool,
}

/// The PostgreSQL channel on which committed events are announced to every
/// node, as `<tenant id>:<seq>`, when [`EventBus::set_postgres_notify`] is on.
pub const EVENTS_CHANNEL: &str = "galantis_events";

impl Default for EventBus {
    fn default() -> Self {
        Self {
            subscribers: Subscribers::default(),
            sender: tokio::sync::broadcast::channel(1024).0,
            postgres_notify: AtomicBool::new(false),
        }
    }
}

impl EventBus {
    /// The in-process feed of committed events (realtime only: lossy).
    pub fn sender(&self) -> tokio::sync::broadcast::Sender<PublishedEvent> {
        self.sender.clone()
    }

    /// Announce every recorded event on [`EVENTS_CHANNEL`] (PostgreSQL only;
    /// the realtime fan-out across nodes when Redis is not configured).
    pub fn set_postgres_notify(&self, on: bool) {
        self.postgres_notify.store(on, Ordering::Relaxed);
    }

    pub(crate) fn publish(&self, events: Vec<PublishedEvent>) {
        for e in events {
            metrics::counter!("galantis_domain_events_total", "kind" => e.kind).increment(1);
            // Nobody listening is normal: the event is already durable.
            let _ = self.sender.send(e);
        }
    }
}

/// Records `event` in the transaction, with its subscribers' jobs.
pub async fn record(
    tx: &mut TenantTx,
    event: &DomainEvent,
    now: DateTime<Utc>,
) -> Result<Uuid, StoreError> {
    record_caused_by(tx, event, None, now).await
}

/// [`record`], linked to the stored webhook event that caused it.
pub async fn record_caused_by(
    tx: &mut TenantTx,
    event: &DomainEvent,
    webhook_event_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Uuid, StoreError> {
    let subject_id = event.subject_id();
    let id = Uuid::now_v7();
    // Written at commit, numbered (`number_pending`): one insert per event.
    tx.pending.events.rows.push(domain_events::NewEvent {
        id,
        kind: event.kind().as_str(),
        subject_id: subject_id.clone(),
        payload: event.payload(),
        webhook_event_id,
        occurred_at_ms: now.timestamp_millis(),
    });
    let bus = tx.pending.events.bus.clone();
    let recorded = Recorded {
        tenant: tx.tenant(),
        id,
        event,
        at: now,
    };
    for job in bus.subscribers.jobs(&recorded) {
        crate::jobs::enqueue(tx, &job).await?;
    }
    tx.pending.events.queued.push(PublishedEvent {
        tenant: tx.tenant(),
        id,
        seq: 0,
        kind: event.kind().as_str(),
        subject_id,
        event: Arc::new(event.clone()),
    });
    Ok(id)
}

/// Writes the transaction's recorded events, numbered; the last statement
/// before commit (they are announced to other nodes after it: `pg_notify`).
pub(crate) async fn number_pending(tx: &mut TenantTx) -> Result<(), StoreError> {
    if tx.pending.events.rows.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(&mut tx.pending.events.rows);
    let last = domain_events::insert_numbered(tx, &rows).await?;
    let first = last - rows.len() as i64 + 1;
    for (i, e) in tx.pending.events.queued.iter_mut().enumerate() {
        e.seq = first + i as i64;
    }
    Ok(())
}

/// Events recorded in a transaction, published once it commits (and
/// forgotten if it rolls back).
pub(crate) struct PendingEvents {
    bus: Arc<EventBus>,
    queued: Vec<PublishedEvent>,
    /// The rows to write at commit, in the order recorded.
    rows: Vec<domain_events::NewEvent>,
}

impl PendingEvents {
    pub(crate) fn new(bus: &Arc<EventBus>) -> Self {
        Self {
            bus: bus.clone(),
            queued: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The payloads not yet written, for a redaction in the same
    /// transaction.
    pub(crate) fn payloads_mut(&mut self) -> impl Iterator<Item = &mut serde_json::Value> {
        self.rows.iter_mut().map(|r| &mut r.payload)
    }

    /// The number of the transaction's last event, when committed events
    /// are to be announced on [`EVENTS_CHANNEL`] (after commit; see
    /// `pg_notify`).
    pub(crate) fn announced_seq(&self) -> Option<i64> {
        if !self.bus.postgres_notify.load(Ordering::Relaxed) {
            return None;
        }
        self.queued.last().map(|e| e.seq)
    }

    pub(crate) fn publish(&mut self) {
        if !self.queued.is_empty() {
            self.bus.publish(std::mem::take(&mut self.queued));
        }
    }
}
