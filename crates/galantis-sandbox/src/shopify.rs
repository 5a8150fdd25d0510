//! The Shopify Admin API stand-in (not written yet).
//!
//! Design §7: a fake Shopify Admin API that plays for Shopify the role
//! [`crate::meta`] plays for Meta — the OAuth token exchange, webhook
//! registration and the GraphQL reads the server's Shopify client makes
//! (inventory, collections and their products, purchases), with a control
//! API to seed shops and script failures, and signed Shopify webhooks out.
//! Until then the integration tests use a recording client
//! (`RecordingShopifyClient`) and, for the real client, a GraphQL endpoint
//! scripted for the one test that needs it (`tests/it/audience_collections.rs`).
