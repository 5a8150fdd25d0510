//! `galantis bench queue`: how fast the durable queue moves jobs.
//!
//! Throughput: N probe jobs are enqueued (500 per transaction), then W
//! workers run them; each probe writes its effect and completes in one
//! tenant transaction, so this is the full enqueue → claim → effect →
//! complete path. Latency: with workers idle, single jobs are committed one
//! at a time and the time from commit to the handler's effect is recorded.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use galantis_core::{Lane, ShopDomain};
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::tenant::probes;
use serde_json::json;
use tokio::sync::watch;

use super::{quantile, write_result};
use crate::config::{Config, QueueConfig};
use crate::jobs::kinds::probe::QueueProbe;
use crate::jobs::worker::Worker;
use crate::jobs::{Registry, enqueue};

pub async fn run(config: &Config, jobs: u32, workers: usize, samples: u32) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut cfg = config.clone();
    if cfg.is_embedded() {
        cfg.data_dir = scratch.path().to_path_buf();
    }
    cfg.migrate_on_start = true;
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let engine = db.engine().as_str();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let shop = ShopDomain::parse(&format!("bench-queue-{}.myshopify.com", &tag[24..]))?;
    let tenant = tenants::create(
        &db,
        &state.master_key,
        NewTenant {
            shop,
            owner_email: None,
            phone: None,
        },
    )
    .await
    .context("creating the bench tenant")?
    .tenant
    .id;

    // Enqueue.
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(500);
        let mut tx = db.tenant_tx(tenant).await?;
        for _ in 0..n {
            enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now()).await?;
        }
        tx.commit().await?;
        left -= n;
    }
    let enqueue_secs = started.elapsed().as_secs_f64();

    // Drain with W workers.
    let q = QueueConfig {
        concurrency: crate::config::LaneConcurrency {
            ingest: 0,
            messages: 0,
            flows: 0,
            campaigns: 0,
            sync: 0,
            monitor: workers,
            compliance: 0,
        },
        poll_interval_ms: 20,
        ..QueueConfig::default()
    };
    let (stop, rx) = watch::channel(false);
    let worker = tokio::spawn(
        Worker::new(state.clone(), Registry::builtin())
            .with_config(q)
            .run(rx),
    );
    let started = Instant::now();
    loop {
        let mut tx = db.tenant_read(tenant).await?;
        let done = probes::summary(&mut tx).await?.jobs;
        tx.commit().await?;
        if done >= i64::from(jobs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();

    // Pickup latency, one job at a time.
    let mut latencies = Vec::with_capacity(samples as usize);
    for _ in 0..samples {
        let mut tx = db.tenant_tx(tenant).await?;
        let id = enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
            .await?
            .id();
        tx.commit().await?;
        let committed = Instant::now();
        loop {
            let job = galantis_store::jobs::admin::get(&db, Some(tenant), id).await?;
            if job.is_some_and(|j| j.state == "completed") {
                latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let _ = stop.send(true);
    let _ = worker.await;
    latencies.sort_by(f64::total_cmp);
    let mut tx = db.tenant_read(tenant).await?;
    let summary = probes::summary(&mut tx).await?;
    tx.commit().await?;

    let result = json!({
        "scenario": "queue",
        "engine": engine,
        "jobs": jobs,
        "workers": workers,
        "lane": Lane::Monitor.as_str(),
        "enqueue_per_s": f64::from(jobs) / enqueue_secs,
        "complete_per_s": f64::from(jobs) / drain_secs,
        "pickup_to_done_ms_p50": quantile(&latencies, 0.5),
        "pickup_to_done_ms_p99": quantile(&latencies, 0.99),
        "repeated_effects": summary.repeated,
    });
    println!("bench queue on {engine}: {jobs} jobs, {workers} workers");
    println!("{:<40} {:>12}", "figure", "value");
    println!(
        "{:<40} {:>12.0}",
        "enqueue (jobs/s, 500 per tx)",
        f64::from(jobs) / enqueue_secs
    );
    println!(
        "{:<40} {:>12.0}",
        "claim+run+complete (jobs/s)",
        f64::from(jobs) / drain_secs
    );
    println!(
        "{:<40} {:>12.2}",
        "commit to completed, p50 (ms)",
        quantile(&latencies, 0.5)
    );
    println!(
        "{:<40} {:>12.2}",
        "commit to completed, p99 (ms)",
        quantile(&latencies, 0.99)
    );
    println!(
        "{:<40} {:>12}",
        "effects applied twice (must be 0)", summary.repeated
    );
    write_result(config, &format!("queue-{engine}"), &result)?;
    db.close().await;
    Ok(())
}
