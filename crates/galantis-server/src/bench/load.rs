//! The in-process load generator of `bench ingest`, used when wrk is not
//! installed: signed webhooks from a reqwest client sharing the server's
//! runtime (and cores).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::StatusCode;

use super::quantile;

pub struct Load {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failures: u32,
    pub ok: u32,
}

pub async fn load(
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
        ok: all.len() as u32,
        per_sec: all.len() as f64 / secs,
        p50_ms: quantile(&all, 0.5),
        p99_ms: quantile(&all, 0.99),
        failures,
    }
}
