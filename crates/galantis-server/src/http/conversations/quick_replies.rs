//! Quick replies: the team's saved snippets.

use axum::extract::State;
use axum::http::StatusCode;
use galantis_store::tenant::conversations::{self as store, QuickReply};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/quick-replies",
    tag = "inbox",
    summary = "The team's quick replies, by shortcut",
    responses((status = 200, description = "quick replies", body = Object))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::InboxRead>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let all = store::quick_replies(&mut tx).await?;
    tx.commit().await?;
    Ok(axum::Json(serde_json::json!({ "data": all })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuickReply {
    /// What an agent types to pick it, e.g. `shipping`.
    shortcut: String,
    body: String,
}

#[utoipa::path(
    post,
    path = "/quick-replies",
    tag = "inbox",
    summary = "Save a quick reply",
    request_body = NewQuickReply,
    responses((status = 201, description = "the quick reply", body = Object), (status = 409, description = "the shortcut is taken", body = Object))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authed<perm::InboxReply>,
    Json(req): Json<NewQuickReply>,
) -> Result<(StatusCode, axum::Json<QuickReply>), AppError> {
    let shortcut = req.shortcut.trim().to_lowercase();
    let ok = !shortcut.is_empty()
        && shortcut.len() <= 40
        && shortcut
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(AppError::unprocessable(
            "invalid_field",
            "shortcut must have 1 to 40 letters, digits, - or _",
        ));
    }
    let body = super::reply::text_field("body", &req.body)?;
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let Some(q) =
        store::add_quick_reply(&mut tx, &shortcut, body, auth.member_id.as_uuid(), now).await?
    else {
        return Err(AppError::Conflict {
            code: "shortcut_taken",
            message: format!("a quick reply `{shortcut}` exists"),
        });
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(q)))
}

#[utoipa::path(
    delete,
    path = "/quick-replies/{id}",
    tag = "inbox",
    summary = "Delete a quick reply",
    params(("id" = uuid::Uuid, Path, description = "quick reply id")),
    responses((status = 204, description = "deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed<perm::InboxReply>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    if !store::delete_quick_reply(&mut tx, id).await? {
        return Err(AppError::NotFound("quick reply"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
