//! `galantis bench ingest`: signed Shopify webhooks persisted and
//! acknowledged per second, with the latency of each acknowledgement.
//! Workers do not run: this is the ingest path.
//!
//! The client is wrk (`bench/peers/wrk/ingest.lua`: one pre-signed body, a
//! distinct webhook id per request) so it does not share the server's
//! runtime; without wrk, an in-process client (noted in the table). In the
//! same run and with the same client: a verify-and-ack server (HMAC check,
//! nothing stored), and on PostgreSQL pgbench's one-row JSONB insert at 32
//! clients on the same server. Rows: 3 sizes over 10 tenants, then 1 and 100
//! tenants at the middle size, each on a fresh store; every acknowledged
//! webhook is looked up in the store afterwards.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures::future::LocalBoxFuture;
use galantis_core::ShopDomain;
use galantis_store::control::tenants::{self, NewTenant};
use secrecy::SecretString;
use serde_json::json;

use super::peers::{self, NOT_INSTALLED, WrkLoad};
use super::{Ctx, Engine, Figure, Scenario};
use crate::config::DEV_SHOPIFY_APP_SECRET;
use crate::http::ServeRole;
use crate::webhooks::signature::{sign_shopify, verify_shopify};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Ingest {
    /// Webhooks of the single-size run (default: 2,000, 20,000, 200,000).
    #[arg(long)]
    pub requests: Option<u32>,
    /// Connections (requests in flight); default 64.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Tenants of the single-size run (default: 10, and 1 and 100 at the
    /// middle size).
    #[arg(long)]
    pub tenants: Option<u32>,
    /// Use the in-process client even when wrk is installed.
    #[arg(long)]
    pub in_process: bool,
}

/// One load run's result, whichever client made it.
#[derive(Clone, Copy)]
struct Shot {
    ok: u64,
    failures: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

struct Load<'a> {
    wrk: Option<(std::path::PathBuf, std::path::PathBuf)>,
    body: Bytes,
    body_file: &'a Path,
    sig: String,
    concurrency: usize,
}

impl Load<'_> {
    async fn fire(
        &self,
        url: &str,
        shops: &Arc<Vec<String>>,
        requests: u32,
        tag: &str,
    ) -> anyhow::Result<Shot> {
        if let Some((bin, script)) = &self.wrk {
            let r = peers::wrk_ingest(
                bin,
                script,
                WrkLoad {
                    url,
                    body_file: self.body_file,
                    sig: &self.sig,
                    shops,
                    tag,
                    requests,
                    connections: self.concurrency,
                },
            )
            .await?;
            return Ok(Shot {
                ok: r.ok,
                failures: r.failures,
                per_sec: r.per_sec,
                p50_ms: r.p50_ms,
                p99_ms: r.p99_ms,
            });
        }
        let r = super::load::load(
            url.to_owned(),
            shops.clone(),
            self.body.clone(),
            self.sig.clone(),
            requests,
            self.concurrency,
            tag,
        )
        .await;
        Ok(Shot {
            ok: u64::from(r.ok),
            failures: u64::from(r.failures),
            per_sec: r.per_sec,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
        })
    }
}

impl Scenario for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

fn body() -> anyhow::Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(&json!({
        "id": 123456789, "email": "customer@example.com", "first_name": "Jane", "last_name": "Smith",
        "phone": "+521234567890", "tags": "vip, newsletter",
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "locale": "es", "created_at": "2025-01-15T10:00:00-05:00", "updated_at": "2025-01-15T10:00:00-05:00"
    }))?))
}

impl Ingest {
    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let small = ctx.small();
        let concurrency = self.concurrency.unwrap_or(if small { 8 } else { 64 });
        let (mid, rows): (u32, Vec<(u32, u32)>) = match (self.requests, self.tenants, small) {
            (r, t, _) if r.is_some() || t.is_some() => {
                let n = r.unwrap_or(if small { 300 } else { 20_000 });
                (n, vec![(n, t.unwrap_or(10))])
            }
            (_, _, true) => (300, vec![(100, 3), (300, 3), (300, 1)]),
            _ => (
                20_000,
                vec![
                    (2_000, 10),
                    (20_000, 10),
                    (200_000, 10),
                    (20_000, 1),
                    (20_000, 100),
                ],
            ),
        };
        let headline_tenants = rows.iter().find(|r| r.0 == mid).map_or(10, |r| r.1);
        let warm = if small { 50 } else { 2_000 };
        let scratch = tempfile::tempdir()?;
        let body = body()?;
        let body_file = scratch.path().join("body.json");
        std::fs::write(&body_file, &body)?;
        let wrk = if self.in_process {
            None
        } else {
            ctx.peers().wrk()
        };
        let client_note = match (&wrk, self.in_process) {
            (Some(_), _) => None,
            (None, true) => Some("in-process client (--in-process)".to_owned()),
            (None, false) => Some(format!("in-process client; wrk {NOT_INSTALLED}")),
        };
        let first = ctx.store().await?;
        let secret = first
            .shopify_app_secret
            .clone()
            .unwrap_or_else(|| SecretString::from(DEV_SHOPIFY_APP_SECRET));
        let load = Load {
            wrk,
            sig: sign_shopify(&body, &secret),
            body,
            body_file: &body_file,
            concurrency,
        };
        let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();

        // Baseline: verify the signature and acknowledge, nothing stored.
        ctx.phase("verify-and-ack baseline", 0);
        let baseline = baseline(&load, &secret, mid, warm, &tag).await?;

        let mut figures = Vec::new();
        let (mut lost, mut failures) = (0u64, baseline.failures);
        let mut headline = None;
        for (i, &(n, t)) in rows.iter().enumerate() {
            ctx.phase(&format!("{n} webhooks over {t} tenants"), 0);
            let cfg = if i == 0 {
                first.clone()
            } else {
                ctx.store().await?
            };
            let (shot, stored, acked) =
                one_row(&load, cfg, n, t, warm, &format!("{tag}-{i}")).await?;
            lost += acked.saturating_sub(stored);
            failures += shot.failures;
            figures.push(
                Figure::rate(
                    format!(
                        "persisted + acked, {n} webhooks, {t} tenant{}",
                        if t == 1 { "" } else { "s" }
                    ),
                    shot.per_sec,
                )
                .note(format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    shot.p50_ms, shot.p99_ms
                )),
            );
            if n == mid && t == headline_tenants && headline.is_none() {
                headline = Some(shot);
            }
        }
        let h = headline.context("headline row")?;
        figures.push(
            Figure::rate("verify + ack baseline, nothing stored", baseline.per_sec)
                .note(format!("p99 {:.2} ms", baseline.p99_ms)),
        );
        let name =
            format!("persisted + acked vs peer ({mid} webhooks, {headline_tenants} tenants)");
        match ctx.engine() {
            Engine::Sqlite => figures.push(
                Figure::rate(name, h.per_sec)
                    .vs("verify + ack baseline", baseline.per_sec)
                    .goal("≥ 0.5"),
            ),
            Engine::Postgres => {
                let f = Figure::rate(name, h.per_sec).goal("≥ 0.7");
                figures.push(match (ctx.peers().pgbench(), ctx.scratch_pg().await?) {
                    (Some((bin, script)), Some(url)) => {
                        ctx.phase("pgbench, 32 clients, one-row JSONB insert", 0);
                        let secs = if small { 2 } else { 10 };
                        let tps = peers::pgbench_insert(&bin, &script, &url, 32, secs).await;
                        f.vs_result("pgbench 32 clients, 1-row JSONB insert", tps)
                    }
                    _ => f.note(NOT_INSTALLED),
                });
                figures.push(
                    Figure::rate("persisted + acked vs the baseline", h.per_sec)
                        .vs("verify + ack baseline", baseline.per_sec),
                );
            }
        }
        figures.push(Figure::new("persist + ack latency p50", h.p50_ms, "ms"));
        figures.push(
            Figure::new("persist + ack latency p99", h.p99_ms, "ms")
                .vs_lower("goal", 10.0)
                .goal("≤ 10 ms"),
        );
        figures.push(Figure::new("failed requests", failures as f64, "").goal("0"));
        figures.push(Figure::new("acknowledged, not stored", lost as f64, "").goal("0"));
        if let (Some(note), Some(f)) = (client_note, figures.first_mut()) {
            f.note = Some(format!("{}; {note}", f.note.take().unwrap_or_default()));
        }
        Ok(figures)
    }
}

async fn baseline(
    load: &Load<'_>,
    secret: &SecretString,
    requests: u32,
    warm: u32,
    tag: &str,
) -> anyhow::Result<Shot> {
    let secret = secret.clone();
    let app = axum::Router::new().route(
        "/webhooks/shopify",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = secret.clone();
            async move {
                let h = headers
                    .get("x-shopify-hmac-sha256")
                    .and_then(|v| v.to_str().ok());
                if verify_shopify(h, &body, &[&s]) {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/shopify", l.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(l, app).await });
    let shops = Arc::new(vec!["bench-baseline.myshopify.com".to_owned()]);
    let r = async {
        load.fire(&url, &shops, warm, &format!("{tag}-bw")).await?;
        load.fire(&url, &shops, requests, &format!("{tag}-b")).await
    }
    .await;
    server.abort();
    r
}

/// One row on a fresh store: returns the measured shot, the events stored
/// and the webhooks acknowledged (warm-up included).
async fn one_row(
    load: &Load<'_>,
    cfg: crate::config::Config,
    requests: u32,
    tenant_count: u32,
    warm: u32,
    tag: &str,
) -> anyhow::Result<(Shot, u64, u64)> {
    let state = crate::app::build_state(cfg).await?;
    let mut shops = Vec::new();
    for i in 0..tenant_count {
        let shop = ShopDomain::parse(&format!("bench-ingest-{tag}-{i}.myshopify.com"))?;
        tenants::create(
            &state.db,
            &state.master_key,
            NewTenant {
                shop: shop.clone(),
                owner_email: None,
                phone: None,
            },
        )
        .await
        .context("creating bench tenants")?;
        shops.push(shop.as_str().to_owned());
    }
    let shops = Arc::new(shops);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/shopify", l.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::app::serve(
        state.clone(),
        l,
        ServeRole::Api,
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let shot = async {
        let w = load.fire(&url, &shops, warm, &format!("{tag}-w")).await?;
        let r = load
            .fire(&url, &shops, requests, &format!("{tag}-r"))
            .await?;
        anyhow::Ok((w.ok, r))
    }
    .await;
    // Count before stopping: shutdown closes the store.
    let stored = count_stored(&state, &shops).await;
    let _ = stop.send(());
    let _ = server.await;
    let (warm_ok, shot) = shot?;
    let stored = stored?;
    Ok((shot, stored, warm_ok + shot.ok))
}

async fn count_stored(state: &crate::state::AppState, shops: &[String]) -> anyhow::Result<u64> {
    let mut stored = 0u64;
    for shop in shops.iter() {
        let t = tenants::find_by_shop(&state.db, &ShopDomain::parse(shop)?)
            .await?
            .context("tenant")?;
        let mut tx = state.db.tenant_read(t.id).await?;
        stored += galantis_store::tenant::webhook_events::list(
            &mut tx,
            &galantis_store::tenant::webhook_events::Filter {
                limit: u32::MAX / 2,
                ..Default::default()
            },
        )
        .await?
        .len() as u64;
        tx.commit().await?;
    }
    Ok(stored)
}
