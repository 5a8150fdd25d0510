//! `PATCH /conversations/{id}` (status, assignee) and `POST …/read`.

use axum::extract::State;
use galantis_core::MemberId;
use galantis_store::control::members;
use galantis_store::tenant::conversations as store;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::read::parse_status;
use super::{load, record_updated};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// `OPEN`, `PENDING` or `RESOLVED`.
    #[serde(default)]
    status: Option<String>,
    /// A member id, or null to unassign.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee_id: Option<Value>,
}

/// A field given as `null` is `Some(Value::Null)`, not absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/conversations/{id}",
    tag = "inbox",
    summary = "Change a conversation's status or assignee",
    params(("id" = uuid::Uuid, Path, description = "conversation id")),
    request_body = UpdateConversation,
    responses((status = 200, description = "the conversation", body = Object))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authed<perm::InboxAssign>,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateConversation>,
) -> Result<axum::Json<store::Conversation>, AppError> {
    if req.status.is_none() && req.assignee_id.is_none() {
        return Err(AppError::unprocessable(
            "invalid_field",
            "give status, assignee_id or both",
        ));
    }
    let status = req.status.as_deref().map(parse_status).transpose()?;
    // Outer `Some`: the field was given; inner `None`: unassign.
    let assignee: Option<Option<Uuid>> = match &req.assignee_id {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            let unknown = || {
                AppError::unprocessable(
                    "unknown_member",
                    "assignee_id is not a member of this team",
                )
            };
            let m: MemberId = s.parse().map_err(|_| unknown())?;
            members::get(&state.db, auth.tenant_id, m)
                .await?
                .ok_or_else(unknown)?;
            Some(Some(m.as_uuid()))
        }
        Some(_) => {
            return Err(AppError::unprocessable(
                "invalid_field",
                "assignee_id must be a member id or null",
            ));
        }
    };
    let member = auth.member_id.as_uuid();
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let conv = load(&mut tx, id).await?;
    let mut changes = Vec::new();
    if let Some(s) = &status
        && store::set_status(&mut tx, &conv, s, member, now).await?
    {
        changes.push("status");
    }
    if let Some(a) = assignee
        && store::set_assignee(&mut tx, &conv, a, member, now).await?
    {
        changes.push("assignment");
    }
    let out = if changes.is_empty() {
        conv
    } else {
        record_updated(&state, &mut tx, id, &changes.join(","), Some(member)).await?
    };
    tx.commit().await?;
    Ok(axum::Json(out))
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/read",
    tag = "inbox",
    summary = "Mark a conversation read",
    params(("id" = uuid::Uuid, Path, description = "conversation id")),
    responses((status = 200, description = "the conversation", body = Object))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    // Read state is the team's, not the reader's: only those who answer
    // the inbox change it.
    auth: Authed<perm::InboxReply>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<store::Conversation>, AppError> {
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let conv = load(&mut tx, id).await?;
    let out = if store::mark_read(&mut tx, &conv, now).await? {
        record_updated(&state, &mut tx, id, "read", Some(auth.member_id.as_uuid())).await?
    } else {
        load(&mut tx, id).await?
    };
    tx.commit().await?;
    Ok(axum::Json(out))
}
