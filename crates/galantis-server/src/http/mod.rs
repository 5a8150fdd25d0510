//! The HTTP surface: routes and the middleware stack.

pub mod audience;
pub mod auth;
pub mod automations;
pub mod back_in_stock;
pub mod billing;
pub mod campaigns;
pub mod commerce;
pub mod contacts_write;
pub mod conversations;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod members;
pub mod messages;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod realtime;
pub mod request_id;
pub mod templates;
pub mod tenant;
pub mod webhook_events;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::config::Config;
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
fn sending_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(messages::list, messages::send))
        .routes(routes!(messages::get))
        .routes(routes!(
            messages::get_whatsapp,
            messages::put_whatsapp,
            messages::delete_whatsapp
        ))
        .routes(routes!(templates::list, templates::create))
        .routes(routes!(templates::sync))
        .routes(routes!(
            templates::get,
            templates::update,
            templates::delete
        ))
        .routes(routes!(templates::submit))
        .routes(routes!(billing::get))
        .routes(routes!(billing::ledger))
        .routes(routes!(billing::purchases, billing::purchase))
}

/// Every `/api/v1` route but the CSV upload (its own body limit). Registered
/// only through `routes!`, which reads each handler's `#[utoipa::path]`: what
/// is served is what `/openapi.json` documents.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(sending_routes())
        .routes(routes!(tenant::get_tenant))
        .routes(routes!(realtime::connect))
        .routes(routes!(members::list_members, members::add_member))
        .routes(routes!(members::change_role, members::remove_member))
        .routes(routes!(members::create_member_token))
        .routes(routes!(members::list_own_tokens, members::create_own_token))
        .routes(routes!(members::revoke_token))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::stats))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::retry))
        .routes(routes!(webhook_events::list))
        .routes(routes!(webhook_events::replay))
        .routes(routes!(webhook_events::events))
        .routes(routes!(commerce::list_contacts))
        .routes(routes!(
            commerce::get_contact,
            contacts_write::update_contact
        ))
        .routes(routes!(commerce::list_orders))
        .routes(routes!(commerce::list_products))
        .routes(routes!(commerce::list_collections))
        .merge(audience_routes())
        .merge(campaign_routes())
        .merge(conversations::routes())
        .merge(back_in_stock_routes())
        .merge(automations::routes())
}

fn back_in_stock_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            back_in_stock::get_settings,
            back_in_stock::put_settings
        ))
        .routes(routes!(back_in_stock::list))
        .routes(routes!(back_in_stock::export))
        .routes(routes!(back_in_stock::cancel))
        .routes(routes!(back_in_stock::analytics))
}

fn campaign_routes() -> OpenApiRouter<AppState> {
    use campaigns::control;
    OpenApiRouter::new()
        .routes(routes!(campaigns::list, campaigns::create))
        .routes(routes!(
            campaigns::get,
            campaigns::update,
            campaigns::delete
        ))
        .routes(routes!(campaigns::duplicate))
        .routes(routes!(campaigns::estimate))
        .routes(routes!(control::launch))
        .routes(routes!(control::cancel))
        .routes(routes!(control::pause))
        .routes(routes!(control::resume))
        .routes(routes!(control::test_send))
        .routes(routes!(campaigns::analytics::stats))
        .routes(routes!(campaigns::analytics::list_recipients))
        .routes(routes!(campaigns::analytics::recipients_csv))
}

fn audience_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audience::list_lists, audience::create_list))
        .routes(routes!(
            audience::get_list,
            audience::update_list,
            audience::delete_list
        ))
        .routes(routes!(
            audience::list_members,
            audience::add_members,
            audience::remove_members
        ))
        .routes(routes!(audience::list_imports))
        .routes(routes!(audience::get_import))
        .routes(routes!(audience::import_report))
        .routes(routes!(audience::list_segments, audience::create_segment))
        .routes(routes!(audience::preview))
        .routes(routes!(
            audience::get_segment,
            audience::update_segment,
            audience::delete_segment
        ))
        .routes(routes!(audience::segment_members))
        .routes(routes!(audience::refresh_segment))
        .routes(routes!(audience::estimate))
}

/// The documented routes: health, and (unless `worker`) the webhooks in and
/// `/api/v1`, with their body limits. `router` serves them; `openapi` describes them.
fn documented_routes(config: &Config, role: ServeRole) -> OpenApiRouter<AppState> {
    let mut app = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz));
    if role != ServeRole::Worker {
        let api = api_routes()
            .layer(RequestBodyLimitLayer::new(config.api_body_limit_bytes))
            // CSV uploads stream in under their own, larger limit.
            .routes(
                routes!(audience::upload_import)
                    .layer(RequestBodyLimitLayer::new(config.imports.max_bytes)),
            );
        app = app
            .merge(crate::webhooks::routes(config.webhook_body_limit_bytes))
            .merge(crate::storefront::routes())
            .nest("/api/v1", api);
    }
    app
}

/// The OpenAPI document of an `all` node (what `GET /openapi.json` serves).
pub fn openapi(config: &Config) -> utoipa::openapi::OpenApi {
    let (_, paths) = documented_routes(config, ServeRole::All).split_for_parts();
    openapi::document(paths)
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
    let (mut app, paths) = documented_routes(&config, role).split_for_parts();
    let doc = openapi::document(paths);
    app = app.route("/openapi.json", get(openapi::handler(&doc)));
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
