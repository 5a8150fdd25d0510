//! Stand-ins for the platforms Galantis talks to, faithful enough to run the
//! server against them in tests, benchmarks and the embedded demo (design §7).
//!
//! - [`meta`]: the WhatsApp Cloud API (Graph routes, control API, signed
//!   webhooks out). `galantis serve` mounts it at `/sandbox-meta` (ADR 0007);
//!   `galantis sandbox meta` runs it on its own.
//! - [`shopify`]: the Shopify Admin API, to come.
//!
//! This crate depends on `galantis-core` and ordinary crates only, never on
//! `galantis-store` or `galantis-server` (`.ci/run` checks it): a stand-in
//! must not share code with what it stands in front of, or a bug on one side
//! would be mirrored on the other and pass unnoticed. What the server needs
//! to configure one (secrets, tokens, where webhooks go) is passed in.

pub mod meta;
pub mod shopify;
