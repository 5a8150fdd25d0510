//! `galantis bench …`: benchmarks whose figures go in docs/performance.md.
//! Each prints a table (figure beside its goal) and writes JSON under
//! `<data dir>/bench/`.

use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use galantis_core::ShopDomain;
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::migrate;
use serde_json::json;

use crate::config::Config;

mod audience;
mod flows;
mod inbox;
mod ingest;
mod queue;
mod send;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Sustained template sends per second against the Meta sandbox at
    /// each number limit (e.g. 80 and 1,000), achieved/configured ratio.
    Send {
        /// The number's messages-per-second limits to run at, one run each.
        #[arg(long, value_delimiter = ',', default_value = "80,1000")]
        limits: Vec<u32>,
        /// How long each run sends.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
        /// Job workers sending.
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Segment preview and full re-evaluation over a synthetic store
    /// (contacts with orders), plus one contact's incremental re-evaluation.
    Audience {
        /// Synthetic contacts.
        #[arg(long, default_value_t = 100_000)]
        contacts: u32,
        /// Synthetic orders, spread over the contacts.
        #[arg(long, default_value_t = 300_000)]
        orders: u32,
        /// Times each measurement is repeated.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
    },
    /// Signed Shopify webhooks persisted and acknowledged per second, p50/p99,
    /// beside a verify-and-ack baseline without storage, in one run.
    Ingest {
        /// Webhooks posted in total.
        #[arg(long, default_value_t = 50_000)]
        requests: u32,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Tenants the webhooks are spread over.
        #[arg(long, default_value_t = 10)]
        tenants: u32,
    },
    /// Queue throughput (enqueue, then complete N probe jobs with W workers)
    /// and pickup latency (commit to handler start, one job at a time).
    Queue {
        /// Probe jobs enqueued, then completed.
        #[arg(long, default_value_t = 20_000)]
        jobs: u32,
        /// Job workers completing them.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Jobs timed one at a time for pickup latency.
        #[arg(long, default_value_t = 500)]
        latency_samples: u32,
    },
    /// Durable flow transitions per second: N contacts through trigger →
    /// delay → condition → action (goal >= 5,000/s).
    Flows {
        /// Contacts, one order each.
        #[arg(long, default_value_t = 10_000)]
        contacts: u32,
        /// Flow-lane job workers.
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Inbound WhatsApp webhook → WebSocket frame latency, p50/p99, with N
    /// clients of the tenant connected to one node (workers included).
    Inbox {
        /// WebSocket clients connected.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Inbound messages, posted one at a time.
        #[arg(long, default_value_t = 200)]
        messages: u32,
    },
    /// Create N tenants (storage + migrations + owner + token), then run
    /// `migrate` over all of them twice (the second run must be a no-op).
    /// On SQLite a fresh temporary data directory is used unless --in-place;
    /// on PostgreSQL point DATABASE_URL at a scratch database.
    Tenants {
        /// Tenants to create.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// On SQLite, use the configured data directory instead of a
        /// temporary one.
        #[arg(long)]
        in_place: bool,
    },
}

pub async fn run(config: &Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Send {
            limits,
            seconds,
            workers,
        } => send::run(config, limits, seconds, workers).await,
        BenchCommand::Audience {
            contacts,
            orders,
            repeat,
        } => audience::run(config, contacts, orders, repeat).await,
        BenchCommand::Tenants { count, in_place } => tenants_bench(config, count, in_place).await,
        BenchCommand::Ingest {
            requests,
            concurrency,
            tenants,
        } => ingest::run(config, requests, concurrency, tenants).await,
        BenchCommand::Flows { contacts, workers } => flows::run(config, contacts, workers).await,
        BenchCommand::Inbox { clients, messages } => inbox::run(config, clients, messages).await,
        BenchCommand::Queue {
            jobs,
            workers,
            latency_samples,
        } => queue::run(config, jobs, workers, latency_samples).await,
    }
}

async fn tenants_bench(config: &Config, count: u32, in_place: bool) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut cfg = config.clone();
    if cfg.is_embedded() && !in_place {
        cfg.data_dir = scratch.path().to_path_buf();
    }
    let (db, master, _) = crate::app::open(&cfg).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let run_tag = &run_id[run_id.len() - 8..];
    let started = Instant::now();
    let mut per_tenant = Vec::with_capacity(count as usize);
    for i in 0..count {
        let shop = ShopDomain::parse(&format!("bench-{run_tag}-{i}.myshopify.com"))?;
        let t = Instant::now();
        tenants::create(
            &db,
            &master,
            NewTenant {
                shop,
                owner_email: None,
                phone: None,
            },
        )
        .await
        .context("creating a tenant")?;
        per_tenant.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let create_secs = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let first = migrate::migrate_all(&db, 100, 4).await?;
    let migrate_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let second = migrate::migrate_all(&db, 100, 4).await?;
    let remigrate_secs = t.elapsed().as_secs_f64();
    per_tenant.sort_by(f64::total_cmp);
    let pct = |p: f64| quantile(&per_tenant, p);
    let engine = db.engine().as_str();
    let result = json!({
        "scenario": "tenants",
        "engine": engine,
        "count": count,
        "create_total_s": create_secs,
        "create_per_tenant_ms_p50": pct(0.5),
        "create_per_tenant_ms_p99": pct(0.99),
        "migrate_all_s": migrate_secs,
        "migrate_all_again_s": remigrate_secs,
        "second_run_upgraded": second.tenants_upgraded,
        "tenants_seen": first.tenants_total,
    });
    println!("bench tenants on {engine}: {count} tenants");
    println!("{:<38} {:>12}", "figure", "value");
    println!("{:<38} {:>12.2}", "create all (s)", create_secs);
    println!("{:<38} {:>12.2}", "create one, p50 (ms)", pct(0.5));
    println!("{:<38} {:>12.2}", "create one, p99 (ms)", pct(0.99));
    println!("{:<38} {:>12.2}", "migrate all tenants (s)", migrate_secs);
    println!(
        "{:<38} {:>12.2}",
        "migrate again, no-op (s)", remigrate_secs
    );
    println!(
        "{:<38} {:>12}",
        "tenants upgraded on second run", second.tenants_upgraded
    );
    write_result(config, &format!("tenants-{engine}"), &result)?;
    db.close().await;
    Ok(())
}

/// Writes a benchmark's JSON under `<data dir>/bench/`.
pub(crate) fn write_result(
    config: &Config,
    name: &str,
    result: &serde_json::Value,
) -> anyhow::Result<()> {
    let out_dir = config.data_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("{name}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(result)?)?;
    println!("written: {}", out.display());
    Ok(())
}

/// The `p`-quantile of sorted values.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
