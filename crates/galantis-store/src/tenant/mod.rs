//! Tenant-scoped repositories. Every function takes `&mut TenantTx` first.

// Row tuples mirror their SELECT lists column by column; naming each one
// would only repeat the query.
#![allow(clippy::type_complexity)]

pub mod audience;
pub mod audience_seed;
pub mod automations;
pub mod back_in_stock;
pub mod billing;
pub mod campaigns;
pub mod catalog;
pub mod checkouts;
pub mod compliance;
pub mod contacts;
pub mod conversations;
pub mod csv_imports;
pub mod domain_events;
pub mod lists;
pub mod messaging;
pub mod orders;
pub mod probes;
mod redaction;
pub mod secrets;
mod segment_sql;
pub mod segments;
pub mod sending;
pub mod settings;
pub mod short_links;
pub mod templates;
pub mod webhook_events;
