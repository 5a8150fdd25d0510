//! Audience jobs:
//! - `audience.csv_import`: applies a staged CSV import to its list, one
//!   batch per transaction, progress committed with each batch;
//! - `audience.refresh_segments` (per tenant) and its hourly global
//!   scheduler `audience.refresh_all`: re-evaluate segments whose rules
//!   depend on time, emitting `USER_ADDED_TO_SEGMENT` for entries;
//! - `shopify.write_back`: writes a contact's consent or tags back to
//!   Shopify through the [`crate::shopify_client::ShopifyClient`] port.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::audience::{ImportRow, RejectReason, consent_change_allowed};
use galantis_core::{ConsentSource, JobKind, Lane, RetrySchedule, UniqueScope};
use galantis_store::control::tenants;
use galantis_store::tenant::csv_imports::{self, Progress, Reject};
use galantis_store::tenant::{contacts, lists, segments};
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audience;
use crate::jobs::{JobContext, JobError, enqueue};
use crate::shopify_client::{ShopifyError, WriteBack, Written};

// ---------------------------------------------------------------------------
// CSV import
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CsvImport {
    pub import_id: Uuid,
}

impl JobKind for CsvImport {
    const KIND: &'static str = "audience.csv_import";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(3600);

    fn unique_key(&self) -> Option<String> {
        Some(format!("csv_import:{}", self.import_id))
    }
}

pub const IMPORT_SOURCE: &str = "csv_import";

/// What happened to one row.
enum RowOutcome {
    Created,
    Updated,
    Unchanged,
    Rejected(RejectReason),
}

#[allow(clippy::too_many_arguments)]
async fn apply_row(
    tx: &mut TenantTx,
    import: Uuid,
    list: Uuid,
    row: &ImportRow,
    now: i64,
    touched: &mut Vec<Uuid>,
    progress: &mut Progress,
) -> Result<RowOutcome, StoreError> {
    let reference = format!("import:{import}:line:{}", row.line);
    let consent = row.consent.map(|c| c.state());
    let existing = contacts::by_phone(tx, &row.phone).await?;
    // Check everything first: a refused row writes nothing.
    if let (Some(c), Some(next)) = (&existing, consent) {
        let current = c.marketing_state;
        if current != next
            && let Err(refusal) = consent_change_allowed(current, next, ConsentSource::ManualImport)
        {
            return Ok(RowOutcome::Rejected(RejectReason::Consent(refusal)));
        }
    }
    let (id, outcome) = match &existing {
        None => {
            let id = contacts::create_imported_contact(
                tx,
                &row.phone,
                row.first_name.as_deref(),
                row.last_name.as_deref(),
                row.email.as_deref(),
                now,
            )
            .await?;
            if let Some(state) = consent {
                contacts::set_marketing_state(
                    tx,
                    id,
                    state,
                    ConsentSource::ManualImport,
                    Some(&reference),
                    now,
                    now,
                )
                .await?;
            }
            (id, RowOutcome::Created)
        }
        Some(c) => {
            let changed = contacts::update_imported_contact(
                tx,
                c,
                row.first_name.as_deref(),
                row.last_name.as_deref(),
                row.email.as_deref(),
                now,
            )
            .await?;
            let consent_changed = match consent {
                Some(state) => {
                    contacts::set_marketing_state(
                        tx,
                        c.id,
                        state,
                        ConsentSource::ManualImport,
                        Some(&reference),
                        now,
                        now,
                    )
                    .await?
                }
                None => false,
            };
            if consent_changed && c.shopify_customer_id.is_some() {
                enqueue_write_back(tx, c.id, WriteBackField::Consent).await?;
            }
            (
                c.id,
                if changed || consent_changed {
                    RowOutcome::Updated
                } else {
                    RowOutcome::Unchanged
                },
            )
        }
    };
    let joined = lists::add_members(tx, list, &[id], IMPORT_SOURCE, now).await?;
    for c in &joined {
        let e = audience::list_event(list, *c, IMPORT_SOURCE);
        galantis_store::events::record(tx, &e, audience::at(now)).await?;
    }
    progress.added_to_list += joined.len() as i64;
    touched.push(id);
    Ok(outcome)
}

pub async fn run_csv_import(ctx: JobContext, job: CsvImport) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("imports belong to a tenant")))?;
    let db = ctx.app.db.clone();
    let mut tx = db.tenant_tx(tenant).await?;
    let Some(import) = csv_imports::get(&mut tx, job.import_id).await? else {
        // The list (and its imports) was deleted meanwhile.
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    };
    if import.status == "completed" {
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    csv_imports::set_status(
        &mut tx,
        import.id,
        "running",
        None,
        ctx.now().timestamp_millis(),
    )
    .await?;
    tx.commit().await?;

    for seq in import.next_batch..import.batch_count {
        let now = ctx.now().timestamp_millis();
        let mut tx = db.tenant_tx(tenant).await?;
        // Imports and webhook processing of a tenant apply one at a time.
        tx.serialize_tenant_writes().await?;
        let Some(rows) = csv_imports::batch(&mut tx, import.id, seq).await? else {
            tx.rollback().await?;
            continue;
        };
        let mut progress = Progress::default();
        let mut touched = Vec::with_capacity(rows.len());
        let mut rejects = Vec::new();
        for row in &rows {
            match apply_row(
                &mut tx,
                import.id,
                import.list_id,
                row,
                now,
                &mut touched,
                &mut progress,
            )
            .await?
            {
                RowOutcome::Created => progress.created += 1,
                RowOutcome::Updated => progress.updated += 1,
                RowOutcome::Unchanged => progress.unchanged += 1,
                RowOutcome::Rejected(reason) => {
                    progress.rejected += 1;
                    rejects.push(Reject {
                        line: row.line as i64,
                        code: reason.code().to_owned(),
                        reason: reason.to_string(),
                    });
                }
            }
            progress.processed += 1;
        }
        csv_imports::add_rejects(&mut tx, import.id, &rejects).await?;
        audience::contacts_changed(&mut tx, &touched, now).await?;
        csv_imports::record_batch(&mut tx, import.id, seq, &progress, now).await?;
        tx.commit().await?;
        // A large import must not starve the tenant's own requests of the
        // runtime between its batches (each batch is its own transaction, so
        // no lock is held here).
        tokio::task::yield_now().await;
    }

    let mut tx = db.tenant_tx(tenant).await?;
    csv_imports::set_status(
        &mut tx,
        import.id,
        "completed",
        None,
        ctx.now().timestamp_millis(),
    )
    .await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The deadline of one CSV upload, enqueued with the upload itself: an
/// upload still `uploading` by then was cut off (client gone, timeout, or the
/// process died mid-stream) and ends `failed` — durable, so it also holds
/// across a restart, and per import, so nothing scans tenants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportUploadDeadline {
    pub import_id: Uuid,
}

impl JobKind for ImportUploadDeadline {
    const KIND: &'static str = "audience.import_upload_deadline";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);

    fn unique_key(&self) -> Option<String> {
        Some(format!("import_upload_deadline:{}", self.import_id))
    }
}

pub const UPLOAD_INTERRUPTED: &str = "upload interrupted: the connection closed or the request timed out before the file was complete";

/// How long an upload may go without progress before it counts as cut off:
/// past the request timeout the request cannot be alive any more.
pub fn upload_deadline(config: &crate::config::Config) -> Duration {
    Duration::from_secs(config.request_timeout_secs + 5)
}

pub async fn run_import_upload_deadline(
    ctx: JobContext,
    job: ImportUploadDeadline,
) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("imports belong to a tenant")))?;
    let deadline = upload_deadline(&ctx.app.config);
    let now = ctx.now().timestamp_millis();
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    let status = csv_imports::get(&mut tx, job.import_id)
        .await?
        .map(|i| i.status);
    if status.as_deref() == Some("uploading") {
        let stale_before = now - deadline.as_millis() as i64;
        if !csv_imports::fail_upload(
            &mut tx,
            job.import_id,
            UPLOAD_INTERRUPTED,
            stale_before,
            now,
        )
        .await?
        {
            // Still making progress: look again later.
            tx.rollback().await?;
            return Err(JobError::Snooze(deadline));
        }
        tracing::warn!(import = %job.import_id, "CSV upload interrupted; marked failed");
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Periodic segment refresh
// ---------------------------------------------------------------------------

/// Re-evaluates one tenant's periodic segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RefreshSegments {}

impl JobKind for RefreshSegments {
    const KIND: &'static str = "audience.refresh_segments";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(1800);
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;

    fn unique_key(&self) -> Option<String> {
        Some("audience.refresh_segments".into())
    }
}

pub async fn run_refresh_segments(ctx: JobContext, _job: RefreshSegments) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("segment refresh needs a tenant")))?;
    let db = ctx.app.db.clone();
    let mut tx = db.tenant_read(tenant).await?;
    let periodic = segments::load(&mut tx, None, true).await?;
    tx.commit().await?;
    // One transaction per segment keeps write locks short.
    for s in periodic {
        let now = ctx.now().timestamp_millis();
        let mut tx = db.tenant_tx(tenant).await?;
        tx.serialize_tenant_writes().await?;
        let entered = segments::evaluate_many(&mut tx, std::slice::from_ref(&s), None, now).await?;
        audience::entered(&mut tx, &entered, now, None).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Hourly (and at start-up): enqueues [`RefreshSegments`] for every active
/// tenant that has periodic segments; in the same visit, ends `failed` the
/// uploads that stopped long ago without their deadline job having done it
/// (imports from before that job existed), off any request's path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RefreshAllSegments {}

impl JobKind for RefreshAllSegments {
    const KIND: &'static str = "audience.refresh_all";
    const LANE: Lane = Lane::Monitor;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_secs(60));
}

pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);

pub async fn run_refresh_all(ctx: JobContext, _job: RefreshAllSegments) -> Result<(), JobError> {
    let db = ctx.app.db.clone();
    let mut enqueued = 0usize;
    for t in tenants::list(&db).await? {
        if t.status != tenants::TenantStatus::Active {
            continue;
        }
        let now = ctx.now().timestamp_millis();
        let stale_before = now - upload_deadline(&ctx.app.config).as_millis() as i64;
        let mut tx = db.tenant_tx(t.id).await?;
        let swept =
            csv_imports::fail_stale_uploads(&mut tx, UPLOAD_INTERRUPTED, stale_before, now).await?;
        if swept > 0 {
            tracing::warn!(tenant = %t.id, imports = swept, "interrupted CSV uploads marked failed");
        }
        if segments::load(&mut tx, None, true).await?.is_empty() {
            tx.commit().await?;
            continue;
        }
        enqueue(&mut tx, &RefreshSegments::default(), ctx.now()).await?;
        tx.commit().await?;
        enqueued += 1;
    }
    if enqueued > 0 {
        tracing::info!(tenants = enqueued, "segment refresh enqueued");
    }
    Ok(())
}

/// The scheduler's entry for [`RefreshAllSegments`].
pub fn periodic_job(at: DateTime<Utc>) -> galantis_store::jobs::NewJob {
    crate::jobs::new_job(&RefreshAllSegments::default(), at).expect("empty payload serialises")
}

// ---------------------------------------------------------------------------
// Shopify write-back
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteBackField {
    Consent,
    Tags,
}

/// Writes the contact's *current* consent or tags to Shopify (read when the
/// job runs, so the latest value wins whatever order jobs run in).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShopifyWriteBack {
    pub contact_id: Uuid,
    pub field: WriteBackField,
}

impl JobKind for ShopifyWriteBack {
    const KIND: &'static str = "shopify.write_back";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// Enqueues a write-back in the transaction that made the change.
pub async fn enqueue_write_back(
    tx: &mut TenantTx,
    contact: Uuid,
    field: WriteBackField,
) -> Result<(), StoreError> {
    let now = tx.now();
    enqueue(
        tx,
        &ShopifyWriteBack {
            contact_id: contact,
            field,
        },
        now,
    )
    .await?;
    Ok(())
}

pub async fn run_write_back(ctx: JobContext, job: ShopifyWriteBack) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("write-backs belong to a tenant")))?;
    let mut tx = ctx.app.db.tenant_read(tenant).await?;
    let contact = contacts::get(&mut tx, job.contact_id).await?;
    let occurred_at = match (&contact, job.field) {
        (Some(c), WriteBackField::Consent) => contacts::consent_history(&mut tx, c.id)
            .await?
            .last()
            .map(|e| e.occurred_at.timestamp_millis()),
        _ => None,
    };
    tx.commit().await?;
    let Some(c) = contact.filter(|c| !c.deleted && !c.redacted) else {
        return Ok(());
    };
    let Some(customer_id) = c.shopify_customer_id else {
        return Ok(());
    };
    let change = match job.field {
        WriteBackField::Consent => WriteBack::Consent {
            customer_id,
            state: c.marketing_state,
            occurred_at_ms: occurred_at.unwrap_or_else(|| ctx.now().timestamp_millis()),
        },
        WriteBackField::Tags => WriteBack::Tags {
            customer_id,
            tags: c.tags.clone(),
        },
    };
    match ctx.app.shopify.write_back(tenant, &change).await {
        Ok(Written::Done) => Ok(()),
        Ok(Written::Skipped(why)) => {
            tracing::info!(contact = %c.id, reason = why, "Shopify write-back skipped");
            Ok(())
        }
        Err(ShopifyError::Retryable(e)) => Err(JobError::Retry(anyhow::anyhow!(e))),
        Err(ShopifyError::Permanent(e)) => Err(JobError::Permanent(anyhow::anyhow!(e))),
    }
}

/// The audience's kinds: imports, segment refreshes (and their periodic
/// sweep) and consent write-backs.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<CsvImport, _, _>(run_csv_import);
    r.register::<ImportUploadDeadline, _, _>(run_import_upload_deadline);
    r.register::<RefreshSegments, _, _>(run_refresh_segments);
    r.register::<RefreshAllSegments, _, _>(run_refresh_all);
    r.register::<ShopifyWriteBack, _, _>(run_write_back);
    r.periodic(|_| {
        Some(crate::jobs::scheduler::Periodic {
            name: RefreshAllSegments::KIND,
            every: REFRESH_EVERY,
            make: periodic_job,
        })
    });
}
