//! CSV imports into a list. The upload is validated row by row as it
//! streams in and staged in batches (with the row report of rejects) in one
//! transaction; the import job then applies one batch per transaction,
//! advancing `next_batch` and the counters in that same transaction — so a
//! crash resumes where it stopped and no row is ever applied twice or half.

use galantis_core::audience::ImportRow;
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub id: Uuid,
    pub list_id: Uuid,
    /// `uploading`, `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub filename: Option<String>,
    /// Data rows in the file (header excluded, blank lines skipped).
    pub total_rows: i64,
    /// Rows with a final outcome (applied or rejected).
    pub processed_rows: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub added_to_list: i64,
    pub rejected: i64,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip)]
    pub batch_count: i64,
    #[serde(skip)]
    pub next_batch: i64,
}

#[derive(sqlx::FromRow)]
struct Flat {
    id: Uuid,
    list_id: Uuid,
    status: String,
    filename: Option<String>,
    total_rows: i64,
    processed_rows: i64,
    created_count: i64,
    updated_count: i64,
    unchanged_count: i64,
    added_to_list_count: i64,
    rejected_count: i64,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    batch_count: i64,
    next_batch: i64,
}

macro_rules! columns {
    () => {
        "id, list_id, status, filename, total_rows, processed_rows, created_count, updated_count, unchanged_count,
         added_to_list_count, rejected_count, error, created_at, started_at, finished_at, batch_count, next_batch"
    };
}

fn to_import(r: Flat) -> Import {
    Import {
        id: r.id,
        list_id: r.list_id,
        status: r.status,
        filename: r.filename,
        total_rows: r.total_rows,
        processed_rows: r.processed_rows,
        created: r.created_count,
        updated: r.updated_count,
        unchanged: r.unchanged_count,
        added_to_list: r.added_to_list_count,
        rejected: r.rejected_count,
        error: r.error,
        created_at: from_ms(r.created_at),
        started_at: r.started_at.map(from_ms),
        finished_at: r.finished_at.map(from_ms),
        batch_count: r.batch_count,
        next_batch: r.next_batch,
    }
}

pub async fn create(
    tx: &mut TenantTx,
    list: Uuid,
    filename: Option<&str>,
    created_by: Option<Uuid>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO csv_imports (id, list_id, status, filename, created_by, created_at, updated_at)
             VALUES ($1, $2, 'queued', $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(list)
        .bind(filename)
        .bind(created_by)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(id)
}

/// Stages a batch of valid rows.
pub async fn add_batch(
    tx: &mut TenantTx,
    import: Uuid,
    seq: i64,
    rows: &[ImportRow],
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("INSERT INTO csv_import_batches (import_id, seq, rows) VALUES ($1, $2, $3)")
            .bind(import)
            .bind(seq)
            .bind(Json(rows))
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// One line of the row report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reject {
    pub line: i64,
    pub code: String,
    pub reason: String,
}

/// Adds lines to the row report.
pub async fn add_rejects(
    tx: &mut TenantTx,
    import: Uuid,
    rejects: &[Reject],
) -> Result<(), StoreError> {
    for r in rejects {
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "INSERT INTO csv_import_rejects (import_id, line, code, reason) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(import)
            .bind(r.line)
            .bind(&r.code)
            .bind(&r.reason)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    Ok(())
}

/// The upload is complete: totals, and the rows rejected while validating.
pub async fn finish_upload(
    tx: &mut TenantTx,
    import: Uuid,
    total_rows: i64,
    batch_count: i64,
    rejected: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE csv_imports SET total_rows = $1, batch_count = $2, rejected_count = $3, processed_rows = $3
             WHERE id = $4",
        )
        .bind(total_rows)
        .bind(batch_count)
        .bind(rejected)
        .bind(import)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Import>, StoreError> {
    let row: Option<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM csv_imports WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_import))
}

pub async fn list_for(
    tx: &mut TenantTx,
    list: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Import>, StoreError> {
    let rows: Vec<Flat> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM csv_imports WHERE list_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(list)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_import).collect())
}

/// The staged rows of batch `seq` (None once applied).
pub async fn batch(
    tx: &mut TenantTx,
    import: Uuid,
    seq: i64,
) -> Result<Option<Vec<ImportRow>>, StoreError> {
    let row: Option<Json<Vec<ImportRow>>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT rows FROM csv_import_batches WHERE import_id = $1 AND seq = $2")
            .bind(import)
            .bind(seq)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(|r| r.0))
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub added_to_list: i64,
    pub rejected: i64,
}

/// Records batch `seq` as applied (in the transaction that applied it).
pub async fn record_batch(
    tx: &mut TenantTx,
    import: Uuid,
    seq: i64,
    p: &Progress,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE csv_imports SET processed_rows = processed_rows + $1, created_count = created_count + $2,
                    updated_count = updated_count + $3, unchanged_count = unchanged_count + $4,
                    added_to_list_count = added_to_list_count + $5, rejected_count = rejected_count + $6,
                    next_batch = $7, updated_at = $8
             WHERE id = $9",
        )
        .bind(p.processed)
        .bind(p.created)
        .bind(p.updated)
        .bind(p.unchanged)
        .bind(p.added_to_list)
        .bind(p.rejected)
        .bind(seq + 1)
        .bind(now_ms)
        .bind(import)
        .execute(&mut *c)
        .await?;
        sqlx::query("DELETE FROM csv_import_batches WHERE import_id = $1 AND seq = $2")
            .bind(import)
            .bind(seq)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Moves the import to `status` (`running`, `completed`, `failed`).
pub async fn set_status(
    tx: &mut TenantTx,
    import: Uuid,
    status: &str,
    error: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE csv_imports SET status = $1, error = COALESCE($2, error), updated_at = $3,
                    started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $3) ELSE started_at END,
                    finished_at = CASE WHEN $1 IN ('completed', 'failed') THEN $3 ELSE finished_at END
             WHERE id = $4",
        )
        .bind(status)
        .bind(error)
        .bind(now_ms)
        .bind(import)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Records that an upload is still streaming (its deadline check leaves a
/// live upload alone).
pub async fn touch_upload(tx: &mut TenantTx, import: Uuid, now_ms: i64) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE csv_imports SET updated_at = $1 WHERE id = $2 AND status = 'uploading'")
            .bind(now_ms)
            .bind(import)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Ends an upload that did not complete as `failed` with `reason`, and drops
/// its staged rows so nothing of it can be applied. Only an import still
/// `uploading` and not touched since `stale_before_ms` changes (pass
/// `i64::MAX` for "whatever its age"); returns whether it did.
pub async fn fail_upload(
    tx: &mut TenantTx,
    import: Uuid,
    reason: &str,
    stale_before_ms: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let failed = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE csv_imports SET status = 'failed', error = $1, updated_at = $2, finished_at = $2
             WHERE id = $3 AND status = 'uploading' AND updated_at < $4",
        )
        .bind(reason)
        .bind(now_ms)
        .bind(import)
        .bind(stale_before_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }) > 0;
    if failed {
        on_tx!(tx.tx(), |c| {
            sqlx::query("DELETE FROM csv_import_batches WHERE import_id = $1")
                .bind(import)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(failed)
}

/// [`fail_upload`] for every upload of the tenant not touched since
/// `stale_before_ms` (a sweep for uploads whose deadline job never ran, e.g.
/// left by an older version); returns how many ended.
pub async fn fail_stale_uploads(
    tx: &mut TenantTx,
    reason: &str,
    stale_before_ms: i64,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "DELETE FROM csv_import_batches WHERE import_id IN
                 (SELECT id FROM csv_imports WHERE status = 'uploading' AND updated_at < $1)",
        )
        .bind(stale_before_ms)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "UPDATE csv_imports SET status = 'failed', error = $1, updated_at = $2, finished_at = $2
             WHERE status = 'uploading' AND updated_at < $3",
        )
        .bind(reason)
        .bind(now_ms)
        .bind(stale_before_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n)
}

/// Removes an import with its staged rows and report (a failed upload).
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM csv_import_batches WHERE import_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM csv_import_rejects WHERE import_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM csv_imports WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// The row report, by line, one page (`after_line` excluded).
pub async fn rejects(
    tx: &mut TenantTx,
    import: Uuid,
    after_line: Option<i64>,
    limit: u32,
) -> Result<Vec<Reject>, StoreError> {
    let rows: Vec<(i64, String, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT line, code, reason FROM csv_import_rejects
             WHERE import_id = $1 AND line > $2 ORDER BY line LIMIT $3",
        )
        .bind(import)
        .bind(after_line.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(line, code, reason)| Reject { line, code, reason })
        .collect())
}
