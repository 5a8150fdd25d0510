//! PostgreSQL NOTIFY after commit, coalesced, from one task (ADR 0040).
//!
//! Why: a transaction that calls `pg_notify` takes, at commit, one lock
//! that is global to the PostgreSQL cluster (the notification queue's) and
//! holds it until its commit record is flushed. Every transaction that
//! enqueued a job or recorded an event used to notify inside itself, so the
//! commits of all of them, across tenants, waited for each other's WAL
//! flush one at a time.
//!
//! Now the data transactions never notify. [`crate::db`] hands what a
//! transaction would have announced (the lanes it enqueued into, the last
//! event number of its tenant) to [`PgNotifier::post`] after its commit; one
//! task merges whatever arrives meanwhile and sends it all in one autocommit
//! statement, so at most one of this process's transactions holds that lock
//! at a time, briefly.
//!
//! What it changes: another node hears of a commit a moment after it rather
//! than at it (this node's own workers and subscribers are woken in
//! process, as before). A notification lost to a crash between commit and
//! send, or to a failed send, costs a listener only latency: job workers
//! poll anyway, and the realtime hub re-reads every tenant when its LISTEN
//! reconnects and at the next event of the tenant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use galantis_core::{Lane, TenantId};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::mpsc;

use crate::jobs::signals::LaneSet;

/// The channel job enqueues are announced on (payload: the lane).
pub const JOBS_CHANNEL: &str = "galantis_jobs";

/// Least time between two sends: under load a send every commit would keep
/// a connection busy with NOTIFY transactions (each one a commit of its
/// own); this bounds them to a few hundred a second and another node's
/// wake-up to this much later.
const SPACING: Duration = Duration::from_millis(2);

pub(crate) struct PgNotifier {
    pending: Mutex<Pending>,
    wake: mpsc::Sender<()>,
    /// Set by [`PgNotifier::close`]: the task sends what is pending, gives
    /// its connection back and ends (the pool's close waits for it).
    closed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    lanes: LaneSet,
    /// Tenant → the last event number committed (what listeners read up to).
    events: HashMap<TenantId, i64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.lanes.is_empty() && self.events.is_empty()
    }

    /// `(channel, payload)` pairs, jobs first.
    fn messages(self) -> (Vec<&'static str>, Vec<String>) {
        let mut channels = Vec::new();
        let mut payloads = Vec::new();
        for lane in Lane::ALL {
            if self.lanes.contains(lane) {
                channels.push(JOBS_CHANNEL);
                payloads.push(lane.as_str().to_owned());
            }
        }
        for (tenant, seq) in self.events {
            channels.push(crate::events::EVENTS_CHANNEL);
            payloads.push(format!("{}:{seq}", tenant.as_uuid()));
        }
        (channels, payloads)
    }
}

impl PgNotifier {
    /// Starts the sending task; it ends when the notifier is dropped.
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        let (wake, rx) = mpsc::channel(1);
        let this = Arc::new(Self {
            pending: Mutex::default(),
            wake,
            closed: AtomicBool::new(false),
        });
        tokio::spawn(send_loop(Arc::downgrade(&this), rx, pool));
        this
    }

    /// Announces, soon, what a transaction committed: jobs in `lanes`, and
    /// the tenant's events up to `event`'s number.
    pub(crate) fn post(&self, lanes: LaneSet, event: Option<(TenantId, i64)>) {
        if lanes.is_empty() && event.is_none() {
            return;
        }
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.lanes.union(lanes);
            if let Some((tenant, seq)) = event {
                let last = p.events.entry(tenant).or_insert(seq);
                *last = (*last).max(seq);
            }
        }
        // Full means a wake-up is already queued; it will see these too.
        let _ = self.wake.try_send(());
    }

    /// Sends what is pending, then stops and gives its connection back.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn send_loop(notifier: Weak<PgNotifier>, mut wake: mpsc::Receiver<()>, pool: PgPool) {
    // One connection kept for the task (from the pool's reserve for direct
    // users), taken again after an error.
    let mut conn: Option<PoolConnection<Postgres>> = None;
    while wake.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        let Some(n) = notifier.upgrade() else { return };
        let pending = n.take();
        let closing = n.closed.load(Ordering::Acquire);
        drop(n);
        if !pending.is_empty() {
            let (channels, payloads) = pending.messages();
            if let Err(e) = send(&pool, &mut conn, &channels, &payloads).await {
                conn = None;
                // Listeners fall back on polling and re-reads (module doc).
                tracing::warn!(error = %e, notifications = channels.len(), "could not send PostgreSQL notifications");
            }
        }
        if closing {
            return;
        }
        tokio::time::sleep_until(started + SPACING).await;
    }
}

async fn send(
    pool: &PgPool,
    conn: &mut Option<PoolConnection<Postgres>>,
    channels: &[&str],
    payloads: &[String],
) -> Result<(), sqlx::Error> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pool.acquire().await?),
    };
    sqlx::query("SELECT pg_notify(c, p) FROM UNNEST($1::text[], $2::text[]) AS x(c, p)")
        .bind(channels)
        .bind(payloads)
        .execute(&mut **c)
        .await?;
    Ok(())
}
