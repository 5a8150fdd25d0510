//! Webhooks in: Shopify and Meta ingress ([`ingress`]), and their processing
//! into the tenant's data and domain events ([`process`], [`shopify`],
//! [`meta`], [`compliance`]).

pub mod batcher;
pub mod compliance;
pub mod ingress;
pub mod job;
pub mod meta;
pub mod outcome;
pub mod parse;
pub mod process;
pub mod shopify;
pub mod signature;
pub mod simulate;
pub mod topics;

use tower_http::limit::RequestBodyLimitLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// `/webhooks/…`, with the webhook body limit (3 MB by default).
/// Registered through `routes!` like the API, so `/openapi.json` documents
/// them (ADR 0015).
pub fn routes(limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingress::shopify))
        .routes(routes!(ingress::meta_verify, ingress::meta))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
}

/// Webhook processing's kind.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<process::ProcessWebhook, _, _>(process::run);
}
