//! Group commit for webhook ingest. Each tenant has one writer task that
//! takes every webhook waiting for it, stores them (events + processing
//! jobs) in one transaction, and only then answers each request. Under load
//! this turns many small transactions into a few larger ones — the
//! acknowledgement still follows the commit of that very event. On
//! PostgreSQL a batch of any size is one statement between `BEGIN` and
//! `COMMIT` (ADR 0032); payloads are stored as received, never re-serialised.

use std::sync::Arc;

use dashmap::DashMap;
use galantis_core::TenantId;
use galantis_store::Db;
use galantis_store::tenant::webhook_events::{self, NewWebhookEvent};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::job::ProcessWebhook;

/// Largest number of webhooks written in one transaction.
const MAX_BATCH: usize = 256;

/// A webhook to persist.
#[derive(Debug)]
pub struct Incoming {
    pub source: &'static str,
    pub topic: String,
    pub external_id: String,
    pub origin: String,
    /// The body as received (validated JSON).
    pub payload: Box<RawValue>,
    pub triggered_at: Option<i64>,
    pub received_at: i64,
    /// Known topics are stored `received` with a processing job; others `ignored`.
    pub process: bool,
}

/// What happened to one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Accepted,
    Ignored,
    Duplicate,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Accepted => "accepted",
            Stored::Ignored => "ignored",
            Stored::Duplicate => "duplicate",
        }
    }
}

type Reply = oneshot::Sender<Result<Stored, String>>;

#[derive(Clone)]
pub struct IngestBatcher {
    db: Db,
    writers: Arc<DashMap<TenantId, mpsc::Sender<(Incoming, Reply)>>>,
}

impl IngestBatcher {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            writers: Arc::default(),
        }
    }

    /// Stores `event` for `tenant`; returns once it is committed.
    pub async fn store(&self, tenant: TenantId, event: Incoming) -> Result<Stored, String> {
        let (tx, rx) = oneshot::channel();
        let mut item = Some((event, tx));
        for _ in 0..2 {
            let sender = self
                .writers
                .entry(tenant)
                .or_insert_with(|| {
                    let (s, r) = mpsc::channel(4 * MAX_BATCH);
                    tokio::spawn(writer(self.db.clone(), tenant, r));
                    s
                })
                .clone();
            match sender
                .send(item.take().expect("one attempt at a time"))
                .await
            {
                Ok(()) => {
                    return rx
                        .await
                        .map_err(|_| "the ingest writer stopped".to_owned())?;
                }
                Err(mpsc::error::SendError(back)) => {
                    // The writer ended (runtime shutting down): start afresh once.
                    self.writers.remove(&tenant);
                    item = Some(back);
                }
            }
        }
        Err("the ingest writer is unavailable".into())
    }
}

async fn writer(db: Db, tenant: TenantId, mut rx: mpsc::Receiver<(Incoming, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        metrics::histogram!("galantis_webhook_ingest_batch_size").record(batch.len() as f64);
        match write(&db, tenant, &batch).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, size = batch.len(), "storing webhooks failed; none acknowledged");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

async fn write(
    db: &Db,
    tenant: TenantId,
    batch: &[(Incoming, Reply)],
) -> Result<Vec<Stored>, galantis_store::StoreError> {
    let rows: Vec<NewWebhookEvent<'_>> = batch
        .iter()
        .map(|(e, _)| NewWebhookEvent {
            source: e.source,
            topic: &e.topic,
            external_id: &e.external_id,
            origin: &e.origin,
            payload: &e.payload,
            triggered_at: e.triggered_at,
            received_at: e.received_at,
            status: if e.process { "received" } else { "ignored" },
            failure_reason: (!e.process).then_some("unknown topic"),
        })
        .collect();
    let mut tx = db.tenant_tx(tenant).await?;
    let mut job_error = None;
    let ids = webhook_events::insert_many_with_jobs(&mut tx, &rows, |i, id| {
        let e = &batch[i].0;
        if !e.process {
            return None;
        }
        let run_at = chrono::DateTime::from_timestamp_millis(e.received_at).unwrap_or_default();
        let job = ProcessWebhook {
            event_id: id,
            replay: None,
        };
        galantis_store::jobs::NewJob::of(&job, run_at)
            .map_err(|err| job_error = Some(err))
            .ok()
    })
    .await?;
    if let Some(e) = job_error {
        return Err(galantis_store::StoreError::Config(format!(
            "job payload: {e}"
        )));
    }
    let out: Vec<Stored> = batch
        .iter()
        .zip(ids)
        .map(|((e, _), id)| match id {
            Some(_) if e.process => Stored::Accepted,
            Some(_) => Stored::Ignored,
            None => Stored::Duplicate,
        })
        .collect();
    tx.commit().await?;
    Ok(out)
}
