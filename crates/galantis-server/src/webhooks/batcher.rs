//! Group commit for webhook ingest (`crate::group_commit`): each tenant's
//! writer stores every webhook waiting for it (events + processing jobs) in
//! one transaction, and only then answers each request — the
//! acknowledgement still follows the commit of that very event. On
//! PostgreSQL a batch of any size is one statement between `BEGIN` and
//! `COMMIT` (ADR 0032); payloads are stored as received, never re-serialised.

use futures::future::BoxFuture;
use galantis_core::TenantId;
use galantis_store::Db;
use galantis_store::tenant::webhook_events::{self, NewWebhookEvent};
use serde_json::value::RawValue;

use crate::group_commit::{GroupCommit, GroupWrite};

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

/// Webhook ingest as a [`GroupWrite`]: events and their processing jobs.
pub struct IngestWrite {
    db: Db,
}

/// Group commit of incoming webhooks, one writer per tenant.
pub type IngestBatcher = GroupCommit<IngestWrite>;

pub fn ingest_batcher(db: Db) -> IngestBatcher {
    GroupCommit::new(IngestWrite { db })
}

impl GroupWrite for IngestWrite {
    type Item = Incoming;
    type Out = Stored;
    const NAME: &'static str = "webhook_ingest";
    const MAX_BATCH: usize = MAX_BATCH;

    fn write<'a>(
        &'a self,
        tenant: TenantId,
        items: &'a [Incoming],
    ) -> BoxFuture<'a, Result<Vec<Stored>, String>> {
        Box::pin(async move {
            write(&self.db, tenant, items).await.map_err(|e| {
                tracing::error!(tenant = %tenant, error = %e, size = items.len(), "storing webhooks failed; none acknowledged");
                e.to_string()
            })
        })
    }
}

async fn write(
    db: &Db,
    tenant: TenantId,
    batch: &[Incoming],
) -> Result<Vec<Stored>, galantis_store::StoreError> {
    let rows: Vec<NewWebhookEvent<'_>> = batch
        .iter()
        .map(|e| NewWebhookEvent {
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
        let e = &batch[i];
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
        .map(|(e, id)| match id {
            Some(_) if e.process => Stored::Accepted,
            Some(_) => Stored::Ignored,
            None => Stored::Duplicate,
        })
        .collect();
    tx.commit().await?;
    Ok(out)
}
