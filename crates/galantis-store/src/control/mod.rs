//! Control tables: tenants, team members, API tokens, phone-number routing and
//! the master-key check. These are the only tables outside tenant scope, and
//! they hold no customer data.

pub mod auth_cache;
pub mod keyring;
pub mod members;
pub mod phone_numbers;
pub mod tenants;
pub mod tokens;
