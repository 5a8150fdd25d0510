//! `galantis bench inbox`: latency from an inbound WhatsApp message webhook
//! (signed, posted over HTTP) to its `conversation.message_created` frame on
//! each of N WebSocket clients of the tenant, on one node with its workers.
//! Messages go one at a time: each is timed on every client before the next.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use galantis_core::ShopDomain;
use galantis_store::control::tenants::{self, NewTenant, PhoneNumberLink};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use futures::future::LocalBoxFuture;

use super::{Ctx, Figure, Scenario, quantile};
use crate::config::{Config, DEV_META_APP_SECRET};
use crate::http::ServeRole;
use crate::jobs::Registry;
use crate::webhooks::signature::sign_meta;

/// A frame not seen by every client within this long counts as missed.
const DELIVERY_BOUND: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Inbox {
    /// WebSocket clients connected (default 1,000; small: 5).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Inbound messages, posted one at a time (default 200; small: 3).
    #[arg(long)]
    pub messages: Option<u32>,
}

impl Scenario for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

impl Inbox {
    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let small = ctx.small();
        let clients = self.clients.unwrap_or(if small { 5 } else { 1000 });
        let messages = self.messages.unwrap_or(if small { 3 } else { 200 });
        let cfg = ctx.store().await?;
        measure(ctx, cfg, clients, messages).await
    }
}

async fn measure(
    ctx: &Ctx,
    mut cfg: Config,
    clients: usize,
    messages: u32,
) -> anyhow::Result<Vec<Figure>> {
    cfg.listener.max_connections = cfg.listener.max_connections.max(clients + 100);
    let secret = cfg
        .meta_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_META_APP_SECRET));
    let state = crate::app::build_state(cfg).await?;
    ctx.phase(
        &format!("{clients} WebSocket clients, {messages} messages"),
        u64::from(messages),
    );
    let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();
    let pnid = format!("bench-inbox-{tag}");
    let created = tenants::create(
        &state.db,
        &state.master_key,
        NewTenant {
            shop: ShopDomain::parse(&format!("bench-inbox-{tag}.myshopify.com"))?,
            owner_email: None,
            phone: Some(PhoneNumberLink {
                phone_number_id: pnid.clone(),
                waba_id: format!("waba-{tag}"),
            }),
        },
    )
    .await
    .context("creating the bench tenant")?;
    let token = created.token.secret.expose_secret().to_owned();

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::app::serve(
        state.clone(),
        l,
        ServeRole::All,
        Some(Registry::builtin()),
        async {
            let _ = stopped.await;
        },
    ));

    // When each message was posted; clients report (message, elapsed).
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; messages as usize]));
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<(usize, f64)>();
    let ws_url = format!("ws://{addr}/api/v1/realtime?token={token}");
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .context("connecting a WebSocket client")?;
        let (sent_at, lat_tx) = (sent_at.clone(), lat_tx.clone());
        tasks.push(tokio::spawn(async move {
            let (_, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(text) = msg else { continue };
                let now = Instant::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let Some(i) = v["data"]["wamid"]
                    .as_str()
                    .and_then(|w| w.rsplit('-').next())
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                let t0 = sent_at.lock().unwrap_or_else(|e| e.into_inner())[i];
                if let Some(t0) = t0 {
                    let _ = lat_tx.send((i, (now - t0).as_secs_f64() * 1000.0));
                }
            }
        }));
    }
    drop(lat_tx);

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/webhooks/meta");
    let mut lat = Vec::with_capacity(clients * messages as usize);
    let mut last_client = Vec::with_capacity(messages as usize);
    let mut missed = 0usize;
    for i in 0..messages as usize {
        let body = serde_json::to_vec(
            &json!({"object": "whatsapp_business_account", "entry": [{"id": format!("waba-{tag}"),
            "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": pnid},
                "contacts": [{"profile": {"name": "Bench Customer"}, "wa_id": "15551234567"}],
                "messages": [{"from": "15551234567", "id": format!("wamid.bench-{tag}-{i}"),
                    "timestamp": "1767225600", "type": "text", "text": {"body": "hola"}}],
            }}]}]}),
        )?;
        let sig = sign_meta(&body, &secret);
        sent_at.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Instant::now());
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "webhook refused: {}", r.status());
        let mut got = 0usize;
        let mut slowest = 0f64;
        let deadline = tokio::time::Instant::now() + DELIVERY_BOUND;
        while got < clients {
            match tokio::time::timeout_at(deadline, lat_rx.recv()).await {
                Ok(Some((m, ms))) if m == i => {
                    got += 1;
                    slowest = slowest.max(ms);
                    lat.push(ms);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missed += clients - got;
        last_client.push(slowest);
        ctx.advance(i as u64 + 1);
    }
    for t in tasks {
        t.abort();
    }
    let _ = stop.send(());
    let _ = server.await;

    lat.sort_by(f64::total_cmp);
    last_client.sort_by(f64::total_cmp);
    let (p50, p99) = (quantile(&lat, 0.5), quantile(&lat, 0.99));
    let (all50, all99) = (quantile(&last_client, 0.5), quantile(&last_client, 0.99));
    Ok(vec![
        Figure::new("webhook → frame, every client, p50", p50, "ms"),
        Figure::new("webhook → frame, every client, p99", p99, "ms")
            .vs_lower("goal", 50.0)
            .goal("≤ 50 ms"),
        Figure::new("webhook → frame on the last client, p50", all50, "ms"),
        Figure::new("webhook → frame on the last client, p99", all99, "ms"),
        Figure::new("deliveries missed", missed as f64, "").goal("0"),
    ])
}
