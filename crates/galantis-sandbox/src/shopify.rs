//! The Shopify Admin API stand-in (not written yet).
//!
//! It will serve the GraphQL Admin API the server's Shopify client calls
//! (`/admin/api/{version}/graphql.json`: collections and their products,
//! one-time purchases, the app subscription), with a control API to seed
//! shops and script failures, and send signed Shopify webhooks the way
//! [`crate::meta`] does for Meta. Until then the integration tests use a
//! scripted GraphQL endpoint local to the test that needs it
//! (`tests/it/audience_collections.rs`) and a recording client
//! (`RecordingShopifyClient`).
