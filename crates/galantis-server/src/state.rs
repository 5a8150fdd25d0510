//! Shared state handed to every handler and worker.

use std::sync::Arc;

use galantis_core::Clock;
use galantis_store::crypto::MasterKey;
use galantis_store::{Db, SecretStore};

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub master_key: Arc<MasterKey>,
    pub secrets: SecretStore,
    pub clock: Arc<dyn Clock>,
    /// Shop domain → tenant, for webhook ingress (tenants are never re-keyed).
    pub shop_cache: Arc<dashmap::DashMap<galantis_core::ShopDomain, galantis_core::TenantId>>,
    /// Group commit of incoming webhooks, one writer per tenant.
    pub ingest: crate::webhooks::batcher::IngestBatcher,
    /// Group commit of Meta deliveries, one writer per tenant.
    pub meta_ingest: crate::webhooks::meta_ingest::MetaIngest,
    /// Domain events, published in-process after they are committed (the
    /// store's feed, `db.events().sender()`; realtime only, lossy).
    pub events: tokio::sync::broadcast::Sender<PublishedEvent>,
    /// Shopify Admin API (write-backs); a recording fake in tests.
    pub shopify: Arc<dyn crate::shopify_client::ShopifyClient>,
    /// Group commit of the send jobs' writes, one writer per tenant.
    pub send_recorder: crate::sending::recorder::SendRecorder,
    /// The send path: Cloud API client, rate limiter, connections.
    pub sending: crate::sending::Sending,
    /// This node's realtime WebSocket clients.
    pub realtime: crate::realtime::hub::Hub,
    /// Per-IP pacing of back-in-stock widget submissions.
    pub storefront_limiter: crate::storefront::limit::SubmissionLimiter,
}

impl AppState {
    /// Replaces the clock of the application and of its store together, so
    /// every time (handlers, workers, store bookkeeping) comes from one clock.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.db.set_clock(clock.clone());
        self.clock = clock;
    }
}

pub use galantis_store::events::PublishedEvent;
