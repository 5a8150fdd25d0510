//! Webhooks in: Shopify and Meta ingress ([`ingress`]), and their processing
//! into the tenant's data and domain events ([`process`], [`shopify`],
//! [`meta`], [`compliance`]).

pub mod batcher;
pub mod compliance;
pub mod ingress;
pub mod job;
pub mod meta;
pub mod meta_ingest;
pub mod meta_status;
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

/// Most webhook events of one tenant applied in one transaction. Events
/// of a tenant apply one at a time anyway (the tenant's write lock), so a
/// batch trades nothing in parallelism; it is kept small because the lock
/// is held for the whole batch and sends of the tenant wait for it.
pub const PROCESS_BATCH: usize = 16;

/// Webhook processing's kind.
pub fn register(r: &mut crate::jobs::Registry) {
    r.batched::<process::ProcessWebhook, _, _>(PROCESS_BATCH, process::run, process::run_in);
}
