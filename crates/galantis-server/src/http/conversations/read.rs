//! `GET /conversations` and `GET /conversations/{id}`.

use axum::extract::{Query, State};
use galantis_store::tenant::conversations::{self as store, Assignee, ListFilter};
use galantis_store::tenant::{contacts, orders};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::load;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Path;
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

pub const STATUSES: [&str; 3] = ["OPEN", "PENDING", "RESOLVED"];

/// A status as the API accepts it (any case).
pub fn parse_status(s: &str) -> Result<String, AppError> {
    let up = s.trim().to_ascii_uppercase();
    if STATUSES.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(AppError::unprocessable(
            "invalid_status",
            "status must be OPEN, PENDING or RESOLVED",
        ))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `OPEN`, `PENDING` or `RESOLVED`.
    status: Option<String>,
    /// `me`, `unassigned` or a member id.
    assignee: Option<String>,
    /// Only conversations with unread inbound messages.
    unread: Option<bool>,
    /// Contact name or phone, matched literally.
    q: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/conversations",
    tag = "inbox",
    summary = "Conversations, most recent activity first",
    params(ListQuery),
    responses((status = 200, description = "a page of conversations", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::InboxRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<store::Conversation>>, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let status = q.status.as_deref().map(parse_status).transpose()?;
    let assignee = match q.assignee.as_deref().map(str::trim) {
        None | Some("") => Assignee::Anyone,
        Some("me") => Assignee::Member(auth.member_id.as_uuid()),
        Some("unassigned") => Assignee::Unassigned,
        Some(other) => Assignee::Member(other.parse().map_err(|_| {
            AppError::unprocessable(
                "invalid_assignee",
                "assignee must be me, unassigned or a member id",
            )
        })?),
    };
    if q.q.as_ref().is_some_and(|s| {
        s.chars().count() > 200 || s.chars().any(galantis_core::text::is_forbidden)
    }) {
        return Err(AppError::unprocessable(
            "invalid_field",
            "q must have at most 200 characters and no control characters",
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            let text: String = Cursor::decode(c)?;
            text.split_once(':')
                .and_then(|(a, id)| Some((a.parse::<i64>().ok()?, id.parse::<Uuid>().ok()?)))
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_cursor",
                        "the cursor is not one this API returned",
                    )
                })
        })
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list(
        &mut tx,
        &ListFilter {
            status,
            assignee,
            unread_only: q.unread.unwrap_or(false),
            q: q.q,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| {
        format!("{}:{}", c.activity_ms, c.id)
    })))
}

#[utoipa::path(
    get,
    path = "/conversations/{id}",
    tag = "inbox",
    summary = "A conversation: its messages in order, notes, the contact's context and the service window",
    params(("id" = uuid::Uuid, Path, description = "conversation id")),
    responses((status = 200, description = "the conversation", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::InboxRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let conv = load(&mut tx, id).await?;
    let messages = store::messages(&mut tx, &conv, 500).await?;
    let notes = store::notes(&mut tx, conv.id).await?;
    let contact = contacts::get(&mut tx, conv.contact_id)
        .await?
        .ok_or(AppError::NotFound("conversation"))?;
    let recent_orders = orders::list(&mut tx, Some(conv.contact_id), None, 5).await?;
    tx.commit().await?;
    let now_ms = state.clock.now().timestamp_millis();
    let open = conv.window_expires_ms.is_some_and(|w| w > now_ms);
    Ok(axum::Json(json!({
        "conversation": conv,
        "messages": messages,
        "notes": notes,
        "service_window": {
            "open": open,
            "expires_at": conv.window_expires_at,
        },
        "contact": {
            "id": contact.id,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "phone": contact.phone,
            "email": contact.email,
            "locale": contact.locale,
            "marketing_state": contact.marketing_state,
            "tags": contact.tags,
            "orders_count": contact.orders_count,
            "total_spent_cents": contact.total_spent_cents,
            "recent_orders": recent_orders,
        },
    })))
}
