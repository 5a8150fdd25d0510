//! The `galantis` server: HTTP API, webhooks, workers, clients and CLI.

pub mod abandoned_checkout;
pub mod app;
pub mod audience;
pub mod automations;
pub mod bench;
pub mod billing;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod error;
pub mod group_commit;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod realtime;
pub mod sandbox;
pub mod sending;
pub mod shopify_client;
pub mod state;
pub mod storefront;
pub mod telemetry;
pub mod webhooks;
