//! `galantis bench ingest`: signed Shopify webhooks persisted and
//! acknowledged per second, with the latency of each acknowledgement, beside
//! a verify-and-ack baseline (same HTTP stack and client, no storage)
//! measured in the same run. Workers do not run: this is the ingest path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use galantis_core::ShopDomain;
use galantis_store::control::tenants::{self, NewTenant};
use secrecy::SecretString;
use serde_json::json;

use super::{quantile, write_result};
use crate::config::{Config, DEV_SHOPIFY_APP_SECRET};
use crate::http::ServeRole;
use crate::webhooks::signature::{sign_shopify, verify_shopify};

struct Load {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: u32,
}

async fn load(
    url: String,
    shops: Arc<Vec<String>>,
    body: Bytes,
    sig: String,
    requests: u32,
    concurrency: usize,
    tag: &str,
) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, shops, body, sig, tag) = (
            client.clone(),
            next.clone(),
            url.clone(),
            shops.clone(),
            body.clone(),
            sig.clone(),
            tag.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0u32;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-shopify-topic", "customers/create")
                    .header("x-shopify-shop-domain", &shops[i as usize % shops.len()])
                    .header("x-shopify-webhook-id", format!("{tag}-{i}"))
                    .header("x-shopify-hmac-sha256", &sig)
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => failures += 1,
                }
            }
            (lat, failures)
        }));
    }
    let mut all = Vec::with_capacity(requests as usize);
    let mut failures = 0;
    for t in tasks {
        let (lat, f) = t.await.expect("load task");
        all.extend(lat);
        failures += f;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Load {
        per_sec: all.len() as f64 / secs,
        p50_ms: quantile(&all, 0.5),
        p99_ms: quantile(&all, 0.99),
        failures,
    }
}

pub async fn run(
    config: &Config,
    requests: u32,
    concurrency: usize,
    tenant_count: u32,
) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut cfg = config.clone();
    if cfg.is_embedded() {
        cfg.data_dir = scratch.path().to_path_buf();
    }
    let secret = cfg
        .shopify_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_SHOPIFY_APP_SECRET));
    let state = crate::app::build_state(cfg).await?;
    let engine = state.db.engine().as_str();
    let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();
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
    let body = Bytes::from(serde_json::to_vec(&json!({
        "id": 123456789, "email": "customer@example.com", "first_name": "Jane", "last_name": "Smith",
        "phone": "+521234567890", "tags": "vip, newsletter",
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "locale": "es", "created_at": "2025-01-15T10:00:00-05:00", "updated_at": "2025-01-15T10:00:00-05:00"
    }))?);
    let sig = sign_shopify(&body, &secret);

    // Baseline: verify the signature and acknowledge, nothing stored.
    let baseline_secret = secret.clone();
    let baseline = axum::Router::new().route(
        "/webhooks/shopify",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = baseline_secret.clone();
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
    let baseline_url = format!("http://{}/webhooks/shopify", l.local_addr()?);
    let baseline_server = tokio::spawn(async move { axum::serve(l, baseline).await });

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

    let warm = requests.min(2000);
    let _ = load(
        baseline_url.clone(),
        shops.clone(),
        body.clone(),
        sig.clone(),
        warm,
        concurrency,
        &format!("{tag}-bw"),
    )
    .await;
    let base = load(
        baseline_url,
        shops.clone(),
        body.clone(),
        sig.clone(),
        requests,
        concurrency,
        &format!("{tag}-b"),
    )
    .await;
    let _ = load(
        url.clone(),
        shops.clone(),
        body.clone(),
        sig.clone(),
        warm,
        concurrency,
        &format!("{tag}-w"),
    )
    .await;
    let real = load(
        url,
        shops.clone(),
        body.clone(),
        sig.clone(),
        requests,
        concurrency,
        &format!("{tag}-r"),
    )
    .await;
    baseline_server.abort();

    // Every acknowledged event is stored.
    let mut stored = 0usize;
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
        .len();
        tx.commit().await?;
    }
    let _ = stop.send(());
    let _ = server.await;

    let goal = if engine == "sqlite" {
        20_000.0
    } else {
        10_000.0
    };
    let result = json!({
        "scenario": "ingest", "engine": engine, "requests": requests, "concurrency": concurrency, "tenants": tenant_count,
        "persist_ack_per_s": real.per_sec, "persist_ack_p50_ms": real.p50_ms, "persist_ack_p99_ms": real.p99_ms,
        "baseline_verify_ack_per_s": base.per_sec, "baseline_p50_ms": base.p50_ms, "baseline_p99_ms": base.p99_ms,
        "failures": real.failures + base.failures, "stored_events": stored, "goal_per_s": goal, "goal_p99_ms": 10.0,
    });
    println!(
        "bench ingest on {engine}: {requests} signed webhooks, {concurrency} connections, {tenant_count} tenants"
    );
    println!("{:<44} {:>12} {:>12}", "figure", "value", "goal");
    println!(
        "{:<44} {:>12.0} {:>12}",
        "persisted + acknowledged (webhooks/s)", real.per_sec, goal
    );
    println!(
        "{:<44} {:>12.2} {:>12}",
        "persist + ack latency p50 (ms)", real.p50_ms, ""
    );
    println!(
        "{:<44} {:>12.2} {:>12}",
        "persist + ack latency p99 (ms)", real.p99_ms, "10"
    );
    println!(
        "{:<44} {:>12.0} {:>12}",
        "baseline verify + ack (webhooks/s)", base.per_sec, ""
    );
    println!(
        "{:<44} {:>12.2} {:>12}",
        "baseline p99 (ms)", base.p99_ms, ""
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "failed requests",
        real.failures + base.failures,
        "0"
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "events stored (≥ requests + warm-up)", stored, ""
    );
    write_result(config, &format!("ingest-{engine}"), &result)?;
    Ok(())
}
