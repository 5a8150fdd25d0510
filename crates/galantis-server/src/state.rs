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
}
