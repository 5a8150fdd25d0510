//! Integration tests: the real router over real HTTP, and the real binary,
//! on SQLite — and on PostgreSQL when TEST_DATABASE_URL is set.

mod app_subscription;
mod audience;
mod audience_collections;
mod auth;
mod bench_smoke;
mod billing_purchases;
mod bounded;
mod cli;
mod consent;
mod domain_events;
mod http_basics;
mod inbound_messages;
mod inbox;
mod isolation;
mod jobs_api;
mod listener;
mod members;
mod meta_fields;
mod migrate;
mod openapi;
mod phones;
mod queue;
mod queue_crash;
mod realtime;
mod sandbox;
mod sandbox_mount;
mod search;
mod secrets;
mod sending;
mod shopify_shapes;
mod webhooks;
mod webhooks_dump;
mod webhooks_identity;
