//! The HTTP surface: routes and the middleware stack.

pub mod audience;
pub mod auth;
pub mod billing;
pub mod commerce;
pub mod contacts_write;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod members;
pub mod messages;
pub mod middleware;
pub mod pagination;
pub mod request_id;
pub mod templates;
pub mod tenant;
pub mod webhook_events;

use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::error::AppError;
use crate::state::AppState;

/// Which parts of the server a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeRole {
    /// HTTP API, webhooks, workers and scheduler.
    All,
    /// HTTP only.
    Api,
    /// Workers and scheduler; HTTP only for health and metrics.
    Worker,
}

async fn not_found() -> AppError {
    AppError::NotFound("route")
}

/// Sending: messages, the WhatsApp connection, templates, billing.
fn sending_routes() -> Router<AppState> {
    Router::new()
        .route("/messages", get(messages::list).post(messages::send))
        .route("/messages/{id}", get(messages::get))
        .route(
            "/settings/whatsapp",
            get(messages::get_whatsapp)
                .put(messages::put_whatsapp)
                .delete(messages::delete_whatsapp),
        )
        .route("/templates", get(templates::list).post(templates::create))
        .route("/templates/sync", post(templates::sync))
        .route(
            "/templates/{id}",
            get(templates::get)
                .put(templates::update)
                .patch(templates::update)
                .delete(templates::delete),
        )
        .route("/templates/{id}/submit", post(templates::submit))
        .route("/billing", get(billing::get))
        .route("/billing/ledger", get(billing::ledger))
        .route(
            "/billing/purchases",
            get(billing::purchases).post(billing::purchase),
        )
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(sending_routes())
        .route("/tenant", get(tenant::get_tenant))
        .route(
            "/members",
            get(members::list_members).post(members::add_member),
        )
        .route(
            "/members/{id}",
            patch(members::change_role).delete(members::remove_member),
        )
        .route("/members/{id}/tokens", post(members::create_member_token))
        .route(
            "/tokens",
            get(members::list_own_tokens).post(members::create_own_token),
        )
        .route("/tokens/{id}", delete(members::revoke_token))
        .route("/jobs", get(jobs::list))
        .route("/jobs/stats", get(jobs::stats))
        .route("/jobs/{id}", get(jobs::get))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/webhook-events", get(webhook_events::list))
        .route("/webhook-events/{id}/replay", post(webhook_events::replay))
        .route("/events", get(webhook_events::events))
        .route("/contacts", get(commerce::list_contacts))
        .route(
            "/contacts/{id}",
            get(commerce::get_contact).patch(contacts_write::update_contact),
        )
        .route("/orders", get(commerce::list_orders))
        .route("/products", get(commerce::list_products))
        .route("/collections", get(commerce::list_collections))
        .merge(audience_routes())
}

fn audience_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/lists",
            get(audience::list_lists).post(audience::create_list),
        )
        .route(
            "/lists/{id}",
            get(audience::get_list)
                .patch(audience::update_list)
                .delete(audience::delete_list),
        )
        .route(
            "/lists/{id}/members",
            get(audience::list_members)
                .post(audience::add_members)
                .delete(audience::remove_members),
        )
        .route("/imports", get(audience::list_imports))
        .route("/imports/{id}", get(audience::get_import))
        .route("/imports/{id}/report", get(audience::import_report))
        .route(
            "/segments",
            get(audience::list_segments).post(audience::create_segment),
        )
        .route("/segments/preview", post(audience::preview))
        .route(
            "/segments/{id}",
            get(audience::get_segment)
                .patch(audience::update_segment)
                .delete(audience::delete_segment),
        )
        .route("/segments/{id}/members", get(audience::segment_members))
        .route("/segments/{id}/refresh", post(audience::refresh_segment))
        .route("/audiences/estimate", post(audience::estimate))
}

/// The router of the separate metrics listener (`[metrics] bind`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn(request_id::assign))
}

/// Builds the router for `role`, with its middleware.
pub fn router(state: AppState, role: ServeRole) -> Router {
    let config = state.config.clone();
    let mut app = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    // With its own address, /metrics is not on this listener at all.
    if config.metrics.bind.is_none() {
        app = app.route("/metrics", get(health::metrics));
    }
    // The embedded Meta sandbox, when `Config::sandbox_mounted` (development
    // mode or explicitly enabled; ADR 0007): on every role, since workers
    // send to it (status webhooks go to GALANTIS_PUBLIC_URL when set, else
    // back to this listener). Its control routes check the operator token.
    if let Some(sb) = state.sending.embedded_sandbox() {
        app = app.nest_service("/sandbox-meta", galantis_sandbox::meta::router(sb.clone()));
    }
    if role != ServeRole::Worker {
        app = app.merge(crate::webhooks::routes(config.webhook_body_limit_bytes));
        app = app.nest(
            "/api/v1",
            api_routes().layer(RequestBodyLimitLayer::new(config.api_body_limit_bytes)),
        );
        // CSV uploads stream in under their own, larger limit.
        app = app.route(
            "/api/v1/lists/{id}/imports",
            post(audience::upload_import)
                .layer(RequestBodyLimitLayer::new(config.imports.max_bytes)),
        );
    }
    app.fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(middleware::http_metrics))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            middleware::Timeouts {
                request: Duration::from_secs(config.request_timeout_secs),
                body_read: Duration::from_secs(config.listener.body_read_timeout_secs),
            },
            middleware::timeouts,
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(request_id::assign))
}
