//! The storefront surface (no API token; outside `/api/v1`): the
//! back-in-stock widget script, widget submissions through the Shopify App
//! Proxy, tracked-link redirects, and the sandbox demo page.

pub mod demo;
pub mod limit;
pub mod links;
pub mod proxy;
pub mod subscribe;
pub mod widget;

use tower_http::limit::RequestBodyLimitLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::state::AppState;

/// A widget submission is a few hundred bytes.
const SUBMISSION_BODY_LIMIT: usize = 16 * 1024;

/// Registered through `routes!`, so `/openapi.json` documents them.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(widget::script))
        .routes(
            routes!(subscribe::subscribe).layer(RequestBodyLimitLayer::new(SUBMISSION_BODY_LIMIT)),
        )
        .routes(routes!(demo::page))
        .routes(routes!(links::redirect))
}
