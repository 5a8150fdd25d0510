//! `GET /api/v1/webhook-events`, `POST /api/v1/webhook-events/{id}/replay`,
//! `GET /api/v1/events` (domain events).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use galantis_store::tenant::domain_events::{self, StoredEvent};
use galantis_store::tenant::webhook_events::{self, Filter, WebhookEvent};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Path;
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;
use crate::webhooks::process::ProcessWebhook;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(value_type = Option<crate::http::openapi::WebhookStatus>)]
    status: Option<String>,
    #[param(value_type = Option<crate::http::openapi::WebhookSource>)]
    source: Option<String>,
    topic: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/webhook-events",
    tag = "webhooks",
    summary = "Received webhooks",
    params(ListQuery),
    responses((status = 200, description = "a page of webhook events", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::WebhooksRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<WebhookEvent>>, AppError> {
    if let Some(s) = &q.status
        && !["received", "processed", "ignored", "failed"].contains(&s.as_str())
    {
        return Err(AppError::bad_request(
            "invalid_query",
            "status must be received, processed, ignored or failed",
        ));
    }
    if let Some(s) = &q.source
        && !["shopify", "meta"].contains(&s.as_str())
    {
        return Err(AppError::bad_request(
            "invalid_query",
            "source must be shopify or meta",
        ));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = webhook_events::list(
        &mut tx,
        &Filter {
            status: q.status,
            source: q.source,
            topic: q.topic,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |e| e.id)))
}

/// Processes a stored event again (e.g. after fixing what made it fail).
#[utoipa::path(
    post,
    path = "/webhook-events/{id}/replay",
    tag = "webhooks",
    summary = "Process a stored webhook again",
    params(("id" = uuid::Uuid, Path, description = "webhook event id")),
    responses((status = 202, description = "queued for processing", body = Object))
)]
pub async fn replay(
    State(state): State<AppState>,
    auth: Authed<perm::WebhooksReplay>,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let event = webhook_events::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("webhook event"))?;
    if event.status == "ignored"
        && event
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("unknown"))
    {
        return Err(AppError::conflict(
            "not_replayable",
            "events of unknown topics are stored only and cannot be processed",
        ));
    }
    let job = crate::jobs::enqueue(
        &mut tx,
        &ProcessWebhook {
            event_id: id,
            replay: Some(Uuid::now_v7()),
        },
        state.clock.now(),
    )
    .await?
    .id();
    tx.commit().await?;
    tracing::info!(event = %id, job = %job, "webhook event replay requested");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "event_id": id, "job_id": job })),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    kind: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    summary = "Domain events",
    params(EventsQuery),
    responses((status = 200, description = "a page of events", body = crate::http::openapi::PageBody))
)]
pub async fn events(
    State(state): State<AppState>,
    auth: Authed<perm::EventsRead>,
    Query(q): Query<EventsQuery>,
) -> Result<axum::Json<Page<StoredEvent>>, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = domain_events::list(&mut tx, q.kind.as_deref(), before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |e| e.id)))
}
