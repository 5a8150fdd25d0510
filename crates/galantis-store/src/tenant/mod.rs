//! Tenant-scoped repositories. Every function takes `&mut TenantTx` first.

pub mod probes;
pub mod secrets;
pub mod settings;
