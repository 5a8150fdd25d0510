//! Galantis storage: all SQL, on SQLite and PostgreSQL through one code path.
//!
//! - [`db`]: the engine-neutral [`Db`], control and tenant transactions.
//! - [`migrate`]: control and per-tenant migrations.
//! - [`control`]: tenants, members, tokens, keyring (no customer data).
//! - [`tenant`]: tenant-scoped repositories; each takes `&mut TenantTx`.
//! - [`crypto`]: envelope encryption of tenant secrets.

pub mod control;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod jobs;
pub mod like;
pub mod migrate;
pub mod parsed_text;
mod pg_conns;
mod pg_notify;
pub mod secret_store;
pub mod tenant;

pub use db::{ControlTx, Db, DbConfig, Engine, TenantTx, Tx};
pub use error::StoreError;
pub use secret_store::SecretStore;
