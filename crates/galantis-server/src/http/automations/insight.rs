//! What automations did: the activity log (one row per node visit, and
//! blocked enrolments) and the numbers.

use axum::extract::{Query, State};
use galantis_core::automation::ActivityStatus;
use galantis_store::tenant::automations::activity::{self, Activity, ActivityFilter};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::load;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Path;
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

/// `?contact_id=&status=&node_id=&cursor=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    contact_id: Option<Uuid>,
    /// `PENDING`, `SCHEDULED`, `COMPLETED`, `FAILED` or `SKIPPED`.
    status: Option<String>,
    node_id: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/automations/{id}/activity",
    tag = "automations",
    summary = "An automation's activity: node visits and blocked enrolments, newest first",
    params(("id" = uuid::Uuid, Path, description = "automation id"), ActivityQuery),
    responses((status = 200, description = "a page of activity", body = crate::http::openapi::PageBody))
)]
pub async fn activity(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<ActivityQuery>,
) -> Result<axum::Json<Page<Activity>>, AppError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            ActivityStatus::parse(s).ok_or_else(|| {
                AppError::unprocessable(
                    "invalid_field",
                    "status: expected PENDING, SCHEDULED, COMPLETED, FAILED or SKIPPED",
                )
            })
        })
        .transpose()?;
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    load(&mut tx, id).await?;
    let rows = activity::list(
        &mut tx,
        &ActivityFilter {
            automation_id: Some(id),
            contact_id: q.contact_id,
            status,
            node_id: q.node_id.as_deref(),
            before,
            limit: limit + 1,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |a| a.id)))
}

fn by_reason(v: Vec<(String, i64)>) -> Value {
    Value::Object(
        v.into_iter()
            .map(|(r, n)| (r, Value::from(n)))
            .collect::<Map<String, Value>>(),
    )
}

#[utoipa::path(
    get,
    path = "/automations/{id}/stats",
    tag = "automations",
    summary = "An automation's numbers: runs, skips and failures by reason, messages",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses((status = 200, description = "the numbers", body = Object))
)]
pub async fn stats(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    load(&mut tx, id).await?;
    let s = activity::stats(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(json!({
        "enrolled": s.enrolled,
        "in_progress": s.in_progress,
        "completed": s.completed,
        "failed": s.failed,
        "skipped": s.skipped,
        "blocked_by_reason": by_reason(s.blocked_by_reason),
        "skipped_by_reason": by_reason(s.skipped_by_reason),
        "failed_by_reason": by_reason(s.failed_by_reason),
        "messages": {
            "sent": s.messages_sent,
            "delivered": s.messages_delivered,
            "read": s.messages_read,
            "failed": s.messages_failed,
        },
    })))
}

/// A contact's automation activity (newest first), for the contact page.
pub async fn of_contact(
    tx: &mut galantis_store::TenantTx,
    contact_id: Uuid,
    limit: u32,
) -> Result<Vec<Activity>, AppError> {
    Ok(activity::list(
        tx,
        &ActivityFilter {
            contact_id: Some(contact_id),
            limit,
            ..Default::default()
        },
    )
    .await?)
}
