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

use axum::Router;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;

use crate::state::AppState;

/// `/webhooks/…`, with the webhook body limit (3 MB by default).
pub fn routes(limit: usize) -> Router<AppState> {
    Router::new()
        .route("/webhooks/shopify", post(ingress::shopify))
        .route(
            "/webhooks/meta",
            get(ingress::meta_verify).post(ingress::meta),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
}

/// Webhook processing's kind.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register::<process::ProcessWebhook, _, _>(process::run);
}
