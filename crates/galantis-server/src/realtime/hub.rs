//! One node's realtime clients, grouped by tenant, each with its position
//! in the tenant's event sequence.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galantis_core::{DomainEvent, Permission, Role, TenantId};
use galantis_store::Db;
use galantis_store::tenant::domain_events::{self, SequencedEvent};
use tokio::sync::{Notify, mpsc};

use crate::config::RealtimeConfig;

/// Rows read per query; a longer backlog is read in several.
const BATCH: u32 = 500;

/// The realtime type of an event and the permission needed to receive it,
/// or `None` for events that are not pushed. The one place to extend when a
/// new event reaches dashboards.
pub fn realtime_type(event: &DomainEvent) -> Option<(&'static str, Permission)> {
    match event {
        DomainEvent::ConversationMessageCreated { .. } => {
            Some(("conversation.message_created", Permission::InboxRead))
        }
        DomainEvent::ConversationUpdated { .. } => {
            Some(("conversation.updated", Permission::InboxRead))
        }
        DomainEvent::MessageStatusUpdated { .. } => {
            Some(("message.status_updated", Permission::InboxRead))
        }
        DomainEvent::TemplateStatusUpdated { .. } => {
            Some(("template.status_updated", Permission::TemplatesRead))
        }
        DomainEvent::CampaignProgress { .. } => {
            Some(("campaign.progress", Permission::CampaignsRead))
        }
        DomainEvent::CampaignCompleted { .. } => {
            Some(("campaign.completed", Permission::CampaignsRead))
        }
        _ => None,
    }
}

/// A pushed event: who may read it, and its JSON text (shared by clients).
type Frame = (Permission, Arc<str>);

/// The JSON frame of a stored event, or `None` when it is not pushed.
fn frame(row: &SequencedEvent) -> Option<Frame> {
    // A kind this build does not know (written by a newer node) is skipped.
    let event = DomainEvent::from_stored(&row.kind, &row.payload).ok()?;
    let (kind, permission) = realtime_type(&event)?;
    let text = serde_json::json!({"type": kind, "seq": row.seq, "data": event.payload()});
    Some((permission, Arc::from(text.to_string())))
}

/// Why the hub let a client go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its buffer was full: it fell behind.
    TooSlow,
}

struct Client {
    id: u64,
    role: Role,
    cursor: i64,
    tx: mpsc::Sender<Arc<str>>,
    dropped: Arc<Mutex<Option<Dropped>>>,
}

struct Feed {
    clients: Vec<Client>,
    wake: Arc<Notify>,
}

struct Inner {
    db: Db,
    /// Set when the node shuts down: sockets close with "going away".
    closing: tokio::sync::watch::Sender<bool>,
    settings: RealtimeConfig,
    tenants: Mutex<HashMap<TenantId, Feed>>,
    next_id: AtomicU64,
}

/// This node's realtime clients. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A client's registration: frames arrive on `rx`; dropping it unregisters.
pub struct Subscription {
    pub rx: mpsc::Receiver<Arc<str>>,
    dropped: Arc<Mutex<Option<Dropped>>>,
    id: u64,
    tenant: TenantId,
    hub: Hub,
}

impl Subscription {
    /// Why the hub stopped feeding this client, once `rx` is closed.
    pub fn dropped(&self) -> Option<Dropped> {
        *self.dropped.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.lock();
        if let Some(feed) = map.get_mut(&self.tenant) {
            feed.clients.retain(|c| c.id != self.id);
            // The feed's task notices it is empty and removes it.
            feed.wake.notify_one();
        }
    }
}

impl Hub {
    pub fn new(db: Db, settings: RealtimeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                closing: tokio::sync::watch::Sender::new(false),
                settings,
                tenants: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Feed>> {
        self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every socket of this node to close (graceful shutdown).
    pub fn close_all(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Becomes true when the node shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Clients connected to this node.
    pub fn client_count(&self) -> usize {
        self.lock().values().map(|f| f.clients.len()).sum()
    }

    /// The tenant's last event number (where a client without `since` starts).
    pub async fn last_seq(&self, tenant: TenantId) -> Result<i64, galantis_store::StoreError> {
        let mut tx = self.inner.db.tenant_read(tenant).await?;
        let seq = domain_events::last_seq(&mut tx).await?;
        tx.rollback().await?;
        Ok(seq)
    }

    /// Registers a client of `tenant` that has seen every event up to
    /// `after`; it receives the later ones its `role` may read, in order.
    pub fn subscribe(&self, tenant: TenantId, role: Role, after: i64) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inner.settings.client_buffer);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(Mutex::new(None));
        let client = Client {
            id,
            role,
            cursor: after,
            tx,
            dropped: dropped.clone(),
        };
        let mut map = self.lock();
        match map.get_mut(&tenant) {
            Some(feed) => {
                feed.clients.push(client);
                feed.wake.notify_one();
            }
            None => {
                let wake = Arc::new(Notify::new());
                map.insert(
                    tenant,
                    Feed {
                        clients: vec![client],
                        wake: wake.clone(),
                    },
                );
                tokio::spawn(self.clone().run_feed(tenant, wake));
            }
        }
        Subscription {
            rx,
            dropped,
            id,
            tenant,
            hub: self.clone(),
        }
    }

    /// `tenant` has new committed events (from any node).
    pub fn notify(&self, tenant: TenantId) {
        if let Some(feed) = self.lock().get(&tenant) {
            feed.wake.notify_one();
        }
    }

    /// Every tenant with clients here (after a cross-node channel reconnects,
    /// when notifications may have been missed).
    pub fn notify_all(&self) {
        for feed in self.lock().values() {
            feed.wake.notify_one();
        }
    }

    async fn run_feed(self, tenant: TenantId, wake: Arc<Notify>) {
        let resync = Duration::from_secs(self.inner.settings.resync_secs);
        loop {
            let from = {
                let mut map = self.lock();
                match map.get(&tenant) {
                    Some(feed) if !feed.clients.is_empty() => {
                        feed.clients.iter().map(|c| c.cursor).min().unwrap_or(0)
                    }
                    _ => {
                        map.remove(&tenant);
                        return;
                    }
                }
            };
            match self.read(tenant, from).await {
                Ok(rows) => {
                    let more = rows.len() == BATCH as usize;
                    self.deliver(tenant, &rows);
                    if more {
                        continue;
                    }
                }
                // The store shut down under the feed's last clients.
                Err(_) if self.inner.db.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, tenant_id = %tenant, "realtime: cannot read events");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(resync) => {}
            }
        }
    }

    async fn read(
        &self,
        tenant: TenantId,
        after: i64,
    ) -> Result<Vec<SequencedEvent>, galantis_store::StoreError> {
        let mut tx = self.inner.db.tenant_read(tenant).await?;
        let rows = domain_events::after_seq(&mut tx, after, BATCH).await?;
        tx.rollback().await?;
        Ok(rows)
    }

    fn deliver(&self, tenant: TenantId, rows: &[SequencedEvent]) {
        let Some(last) = rows.last().map(|r| r.seq) else {
            return;
        };
        let frames: Vec<(i64, Option<Frame>)> = rows.iter().map(|r| (r.seq, frame(r))).collect();
        let mut map = self.lock();
        let Some(feed) = map.get_mut(&tenant) else {
            return;
        };
        feed.clients.retain_mut(|c| {
            for (seq, f) in &frames {
                if *seq <= c.cursor {
                    continue;
                }
                if let Some((permission, text)) = f
                    && c.role.allows(*permission)
                {
                    match c.tx.try_send(text.clone()) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!("galantis_realtime_dropped_clients_total")
                                .increment(1);
                            *c.dropped.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(Dropped::TooSlow);
                            return false;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
                c.cursor = *seq;
            }
            c.cursor = c.cursor.max(last);
            true
        });
    }
}
