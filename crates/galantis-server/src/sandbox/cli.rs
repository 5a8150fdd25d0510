//! `galantis sandbox meta`: the Meta Cloud API sandbox
//! (`galantis_sandbox::meta`) as its own process. The arguments and the
//! defaults taken from the server's configuration are read here; the sandbox
//! crate only gets the resulting `SandboxConfig`.

use std::net::SocketAddr;

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use galantis_sandbox::meta::{
    DEV_DISPLAY_PHONE_NUMBER, DEV_PHONE_NUMBER_ID, DEV_WABA_ID, MetaSandbox, NumberConfig,
    SandboxConfig,
};

use crate::config::{Config, DEV_META_APP_SECRET};

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Run the Meta Cloud API simulator (Graph routes under /{version}/…,
    /// control API under /sandbox/…) until Ctrl-C or SIGTERM.
    Meta(MetaArgs),
}

#[derive(Args, Debug)]
pub struct MetaArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub bind: SocketAddr,
    /// Where status and inbound webhooks go (default: GALANTIS_PUBLIC_URL,
    /// or http://<GALANTIS_BIND>, followed by /webhooks/meta).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Do not send webhooks at all.
    #[arg(long, conflicts_with = "webhook_url")]
    pub no_webhooks: bool,
    /// Secret signing webhooks (default: GALANTIS_META_APP_SECRET, else the
    /// embedded development secret, so it matches `galantis serve`).
    #[arg(long, value_name = "SECRET")]
    pub app_secret: Option<String>,
    /// An accepted access token (repeatable; none given: any token).
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// Operator token required by the /sandbox/… control routes (default:
    /// GALANTIS_SANDBOX_TOKEN). Without one the control API is open, which
    /// is allowed only on a loopback --bind.
    #[arg(long, value_name = "TOKEN")]
    pub control_token: Option<String>,
    /// Meta's id of the simulated WhatsApp number.
    #[arg(long, default_value = DEV_PHONE_NUMBER_ID)]
    pub phone_number_id: String,
    /// Meta's id of the WhatsApp Business Account owning it.
    #[arg(long, default_value = DEV_WABA_ID)]
    pub waba_id: String,
    /// The number as customers see it (digits, no +).
    #[arg(long, default_value = DEV_DISPLAY_PHONE_NUMBER)]
    pub display_phone_number: String,
    /// Throughput of the number.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub messages_per_second: u32,
    /// Pair rate: one message per this many ms to one recipient…
    #[arg(long, default_value_t = 6_000)]
    pub pair_interval_ms: u64,
    /// …with this burst.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub pair_burst: u32,
    /// Submitted templates are reviewed after this long.
    #[arg(long, default_value_t = 2_000)]
    pub template_review_ms: u64,
    /// Chance (0–1) that a webhook is sent twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_probability: f64,
    /// Chance (0–1) that a message's statuses arrive in reverse order.
    #[arg(long, default_value_t = 0.0)]
    pub reorder_probability: f64,
}

pub async fn run(config: &Config, cmd: SandboxCommand) -> anyhow::Result<()> {
    let SandboxCommand::Meta(a) = cmd;
    for (name, p) in [
        ("--duplicate-probability", a.duplicate_probability),
        ("--reorder-probability", a.reorder_probability),
    ] {
        if !(0.0..=1.0).contains(&p) {
            anyhow::bail!("{name} must be between 0 and 1");
        }
    }
    let control_token = a.control_token.clone().or_else(|| {
        config
            .sandbox
            .token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
    });
    if control_token.is_none() && !a.bind.ip().is_loopback() {
        anyhow::bail!(
            "--control-token (or GALANTIS_SANDBOX_TOKEN) is required when the sandbox listens beyond loopback ({})",
            a.bind
        );
    }
    let mut sc = SandboxConfig {
        control_token,
        bind: a.bind,
        numbers: vec![
            NumberConfig::new(&a.phone_number_id, &a.waba_id)
                .display(&a.display_phone_number)
                .messages_per_second(a.messages_per_second),
        ],
        ..SandboxConfig::default()
    };
    let from_config = config
        .meta_app_secret
        .as_ref()
        .map(|s| s.expose_secret().to_owned());
    if a.app_secret.is_none() && from_config.is_none() {
        tracing::warn!("signing sandbox webhooks with the development Meta app secret");
    }
    sc.settings.app_secret = a
        .app_secret
        .or(from_config)
        .unwrap_or_else(|| DEV_META_APP_SECRET.to_owned());
    sc.settings.tokens = a.tokens;
    sc.settings.pair_interval_ms = a.pair_interval_ms;
    sc.settings.pair_burst = a.pair_burst;
    sc.settings.template_review_ms = a.template_review_ms;
    sc.webhooks.url = if a.no_webhooks {
        None
    } else {
        Some(
            a.webhook_url
                .unwrap_or_else(|| format!("{}/webhooks/meta", config.public_url())),
        )
    };
    sc.webhooks.duplicate_probability = a.duplicate_probability;
    sc.webhooks.reorder_probability = a.reorder_probability;
    let webhook_url = sc.webhooks.url.clone();
    let handle = MetaSandbox::spawn(sc).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "base_url": handle.base_url,
            "phone_number_id": a.phone_number_id,
            "waba_id": a.waba_id,
            "webhook_url": webhook_url,
            "sandbox": true,
        }))?
    );
    crate::app::shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}
