//! `galantis simulate shopify TOPIC --shop … --file payload.json`: signs and
//! posts a webhook to a running server exactly as Shopify would.

use anyhow::Context;
use clap::{Args, Subcommand};
use galantis_core::ShopDomain;
use secrecy::SecretString;
use serde_json::Value;

use crate::config::{Config, DEV_SHOPIFY_APP_SECRET};

#[derive(Subcommand, Debug)]
pub enum SimulateCommand {
    /// Post a signed Shopify webhook.
    Shopify(ShopifyArgs),
}

#[derive(Args, Debug)]
pub struct ShopifyArgs {
    /// The topic, e.g. customers/create or products/update.
    pub topic: String,
    /// The shop the webhook comes from, e.g. acme.myshopify.com.
    #[arg(long)]
    pub shop: String,
    /// JSON payload file.
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// Server base URL (default: http://<bind>).
    #[arg(long)]
    pub url: Option<String>,
    /// Webhook id (default: a fresh one; repeat it to test redelivery).
    #[arg(long)]
    pub webhook_id: Option<String>,
}

pub async fn run(config: &Config, cmd: SimulateCommand) -> anyhow::Result<()> {
    let SimulateCommand::Shopify(a) = cmd;
    let shop = ShopDomain::parse(&a.shop)?;
    let raw = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    serde_json::from_slice::<Value>(&raw)
        .with_context(|| format!("{} is not valid JSON", a.file.display()))?;
    let secret = config
        .shopify_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_SHOPIFY_APP_SECRET));
    let base = a.url.unwrap_or_else(|| format!("http://{}", config.bind));
    let id = a
        .webhook_id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let resp = reqwest::Client::new()
        .post(format!("{}/webhooks/shopify", base.trim_end_matches('/')))
        .header("content-type", "application/json")
        .header("x-shopify-topic", &a.topic)
        .header("x-shopify-shop-domain", shop.as_str())
        .header("x-shopify-webhook-id", &id)
        .header(
            "x-shopify-triggered-at",
            galantis_core::Clock::now(&galantis_core::SystemClock).to_rfc3339(),
        )
        .header(
            "x-shopify-hmac-sha256",
            super::signature::sign_shopify(&raw, &secret),
        )
        .body(raw)
        .send()
        .await
        .with_context(|| format!("posting to {base}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({ "status": status.as_u16(), "webhook_id": id, "response": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)) })
    );
    if !status.is_success() {
        anyhow::bail!("the server answered {status}");
    }
    Ok(())
}
