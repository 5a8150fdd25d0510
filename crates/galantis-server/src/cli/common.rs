//! Helpers shared by the commands. They live here, apart from the command
//! tree in `cli/mod.rs`, so that feature modules with their own commands
//! (`jobs/cli.rs`) use them without importing the module that dispatches to
//! them: the dependency points one way only.

use anyhow::Context;
use galantis_core::ShopDomain;
use galantis_store::control::tenants;
use galantis_store::{Db, StoreError};

/// Commands print one JSON value on stdout.
pub(crate) fn print(value: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

pub(crate) fn parse_shop(s: &str) -> anyhow::Result<ShopDomain> {
    ShopDomain::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn tenant_by_shop(db: &Db, shop: &ShopDomain) -> anyhow::Result<tenants::Tenant> {
    tenants::find_by_shop(db, shop)
        .await?
        .with_context(|| format!("no tenant for shop {shop}"))
}

/// Store conflicts carry the same sentence as the API's 409s.
pub(crate) fn store_err(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Conflict(code) => anyhow::anyhow!("{}", crate::error::conflict_message(code)),
        other => other.into(),
    }
}
