//! Message templates: drafts, submission and what Meta says about them.
//! Status changes from webhooks go through `messaging::apply_template_status`.

use galantis_core::templates::TemplateCategory;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::{StoreError, typed};
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct TemplateRecord {
    pub id: Uuid,
    pub name: String,
    pub language: String,
    pub category: TemplateCategory,
    /// As stored; read it through `galantis_core::templates::TemplateStatus::from_meta`
    /// (webhooks may have stored Meta's own names, e.g. `PENDING`).
    pub status: String,
    pub rejection_reason: Option<String>,
    pub meta_template_id: Option<String>,
    pub components: Value,
    pub parameter_format: String,
    pub format: Option<String>,
    pub submitted_at: Option<chrono::DateTime<chrono::Utc>>,
    pub synced_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

type Row = (
    Uuid,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Json<Value>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

const COLUMNS: &str = "id, name, language, category, status, rejection_reason, meta_template_id, components, parameter_format,
    format, submitted_at, synced_at, created_at, updated_at";

fn to_record(r: Row) -> Result<TemplateRecord, StoreError> {
    Ok(TemplateRecord {
        id: r.0,
        name: r.1,
        language: r.2,
        category: typed(r.3)?,
        status: r.4,
        rejection_reason: r.5,
        meta_template_id: r.6,
        components: r.7.0,
        parameter_format: r.8,
        format: r.9,
        submitted_at: r.10.map(from_ms),
        synced_at: r.11.map(from_ms),
        created_at: from_ms(r.12),
        updated_at: from_ms(r.13),
    })
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<TemplateRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM templates WHERE id = $1");
    let r: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    r.map(to_record).transpose()
}

pub async fn by_name(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
) -> Result<Option<TemplateRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM templates WHERE name = $1 AND language = $2");
    let r: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(name)
            .bind(language)
            .fetch_optional(&mut *c)
            .await?
    });
    r.map(to_record).transpose()
}

/// Templates, newest first; `statuses` filters by stored status names.
pub async fn list(
    tx: &mut TenantTx,
    statuses: Option<&[&str]>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<TemplateRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM templates WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    );
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(before)
            .bind(i64::from(if statuses.is_some() { 100_000 } else { limit }))
            .fetch_all(&mut *c)
            .await?
    });
    let mut out = rows
        .into_iter()
        .map(to_record)
        .collect::<Result<Vec<TemplateRecord>, _>>()?;
    if let Some(s) = statuses {
        out.retain(|t| s.contains(&t.status.as_str()));
        out.truncate(limit as usize);
    }
    Ok(out)
}

/// A template's editable content.
#[derive(Debug, Clone)]
pub struct TemplateContent<'a> {
    pub name: &'a str,
    pub language: &'a str,
    pub category: &'a str,
    pub components: &'a Value,
    pub parameter_format: &'a str,
    pub format: Option<&'a str>,
}

/// A new DRAFT; `template_exists` when the name and language are taken.
pub async fn insert_draft(
    tx: &mut TenantTx,
    t: &TemplateContent<'_>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO templates (id, name, language, category, status, components, parameter_format, format, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'DRAFT', $5, $6, $7, $8, $8)
             ON CONFLICT (name, language) DO NOTHING",
        )
        .bind(id).bind(t.name).bind(t.language).bind(t.category).bind(Json(t.components)).bind(t.parameter_format)
        .bind(t.format).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 0 {
        return Err(StoreError::Conflict("template_exists"));
    }
    Ok(id)
}

/// Replaces a template's content and makes it a DRAFT again (editing a
/// rejected template). The caller checks that it is editable.
pub async fn update_content(
    tx: &mut TenantTx,
    id: Uuid,
    t: &TemplateContent<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let r = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE templates SET name = $1, language = $2, category = $3, components = $4, parameter_format = $5,
                 format = $6, status = 'DRAFT', rejection_reason = NULL, updated_at = $7 WHERE id = $8",
        )
        .bind(t.name).bind(t.language).bind(t.category).bind(Json(t.components)).bind(t.parameter_format)
        .bind(t.format).bind(now_ms).bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected())
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) if StoreError::is_unique_violation(&e) => {
            Err(StoreError::Conflict("template_exists"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM templates WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n > 0)
}

/// Meta took the submission.
pub async fn mark_submitted(
    tx: &mut TenantTx,
    id: Uuid,
    meta_template_id: &str,
    status: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE templates SET status = $1, meta_template_id = $2, submitted_at = $3, rejection_reason = NULL,
                 updated_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(meta_template_id)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// A template as Meta lists it.
#[derive(Debug, Clone)]
pub struct SyncedTemplate<'a> {
    pub meta_template_id: &'a str,
    pub name: &'a str,
    pub language: &'a str,
    pub category: &'a str,
    pub status: &'a str,
    pub rejection_reason: Option<&'a str>,
    pub components: &'a Value,
    pub parameter_format: &'a str,
}

/// Creates or refreshes a template from Meta's list. Returns the id and
/// the previous status (none if it was new).
pub async fn upsert_synced(
    tx: &mut TenantTx,
    t: &SyncedTemplate<'_>,
    now_ms: i64,
) -> Result<(Uuid, Option<String>), StoreError> {
    let existing: Option<(Uuid, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, status FROM templates WHERE name = $1 AND language = $2")
            .bind(t.name)
            .bind(t.language)
            .fetch_optional(&mut *c)
            .await?
    });
    let id = existing.as_ref().map_or_else(Uuid::now_v7, |e| e.0);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO templates (id, name, language, category, status, rejection_reason, meta_template_id, components,
                                    parameter_format, synced_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)
             ON CONFLICT (name, language) DO UPDATE SET category = excluded.category, status = excluded.status,
                 rejection_reason = excluded.rejection_reason, meta_template_id = excluded.meta_template_id,
                 components = excluded.components, parameter_format = excluded.parameter_format,
                 synced_at = excluded.synced_at, updated_at = excluded.updated_at",
        )
        .bind(id).bind(t.name).bind(t.language).bind(t.category).bind(t.status).bind(t.rejection_reason)
        .bind(t.meta_template_id).bind(Json(t.components)).bind(t.parameter_format).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok((id, existing.map(|e| e.1)))
}

/// What Meta's template webhooks say beyond status (issue 13): quality,
/// category changes, edited components and a rejection's details.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TemplateMetaFacts {
    pub quality_score: Option<String>,
    pub rejection_info: Option<Value>,
    pub previous_category: Option<String>,
    pub upcoming_category: Option<String>,
    pub upcoming_category_at: Option<i64>,
    pub meta_components: Option<Value>,
}

/// The template Meta names: by its id when known (a template may be
/// renamed locally), else by name and language.
pub async fn find_for_meta(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
    meta_template_id: Option<&str>,
) -> Result<Option<(Uuid, String)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, category FROM templates WHERE ($3 IS NOT NULL AND meta_template_id = $3)
                 OR (name = $1 AND language = $2)
             ORDER BY CASE WHEN meta_template_id = $3 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(name)
        .bind(language)
        .bind(meta_template_id)
        .fetch_optional(&mut *c)
        .await?
    }))
}

pub async fn meta_facts(tx: &mut TenantTx, id: Uuid) -> Result<TemplateMetaFacts, StoreError> {
    type R = (
        Option<String>,
        Option<Json<Value>>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<Json<Value>>,
    );
    let r: Option<R> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT quality_score, rejection_info, previous_category, upcoming_category, upcoming_category_at, meta_components
             FROM templates WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(r.map(|r| TemplateMetaFacts {
        quality_score: r.0,
        rejection_info: r.1.map(|j| j.0),
        previous_category: r.2,
        upcoming_category: r.3,
        upcoming_category_at: r.4,
        meta_components: r.5.map(|j| j.0),
    })
    .unwrap_or_default())
}

pub async fn set_quality(
    tx: &mut TenantTx,
    id: Uuid,
    score: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE templates SET quality_score = $1, updated_at = $2 WHERE id = $3")
            .bind(score)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Meta recategorised the template: the new category applies from now on
/// (the send path derives marketing or not from it), the old one is kept.
pub async fn set_category(
    tx: &mut TenantTx,
    id: Uuid,
    category: TemplateCategory,
    previous: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE templates SET category = $1, previous_category = $2, upcoming_category = NULL,
                 upcoming_category_at = NULL, updated_at = $3 WHERE id = $4",
        )
        .bind(category.as_str())
        .bind(previous)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Meta will recategorise the template at `at_ms`.
pub async fn set_upcoming_category(
    tx: &mut TenantTx,
    id: Uuid,
    category: TemplateCategory,
    at_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE templates SET upcoming_category = $1, upcoming_category_at = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(category.as_str())
        .bind(at_ms)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The template as Meta now has it after an edit (Meta's own shape).
pub async fn set_meta_components(
    tx: &mut TenantTx,
    id: Uuid,
    components: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE templates SET meta_components = $1, updated_at = $2 WHERE id = $3")
            .bind(Json(components))
            .bind(now_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A rejection's details (`rejection_info`); cleared with `None` when the
/// template leaves the rejected state.
pub async fn set_rejection_info(
    tx: &mut TenantTx,
    id: Uuid,
    info: Option<&Value>,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE templates SET rejection_info = $1 WHERE id = $2")
            .bind(info.map(Json))
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}
