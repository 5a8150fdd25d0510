//! `galantis bench queue`: how fast the durable queue moves jobs, beside
//! graphile-worker draining the same number of no-op jobs on the same
//! PostgreSQL in the same run (default mode, concurrency 10; batched mode as
//! a second row).
//!
//! Each row uses a fresh store: N probe jobs are enqueued (500 per
//! transaction and tenant), spread over T tenants, then W workers on one
//! lane run them; each probe writes its effect and completes in one tenant
//! transaction (the full enqueue → claim → effect → complete path), up to
//! `--batch` probes of one tenant per transaction (group commit, as the
//! batched kinds run; the middle size is drained at 1 as well). Rows:
//! 3 sizes on one tenant, then 10 and 100 tenants at the middle size, with
//! the cost per job. On the middle row, with workers idle afterwards,
//! single jobs are committed one at a time and the time from commit to
//! completion is recorded.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::future::LocalBoxFuture;
use galantis_core::{JobKind, ShopDomain, TenantId};
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::tenant::probes;
use tokio::sync::watch;

use super::peers::{self, NOT_INSTALLED};
use super::{Ctx, Figure, Scenario, quantile};
use crate::config::QueueConfig;
use crate::jobs::kinds::PROBE_BATCH;
use crate::jobs::kinds::probe::QueueProbe;
use crate::jobs::worker::Worker;
use crate::jobs::{Registry, enqueue};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Queue {
    /// Jobs of the single-size run (default: 2,000, 20,000 and 200,000, and
    /// the middle size over 10 and 100 tenants).
    #[arg(long)]
    pub jobs: Option<u32>,
    /// Job workers (lane concurrency); default 10, as graphile-worker's.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Jobs timed one at a time for pickup latency (default 500).
    #[arg(long)]
    pub latency_samples: Option<u32>,
    /// Most probes per transaction (default: the probe's batch size); the
    /// middle size is also drained at 1, one job per transaction.
    #[arg(long)]
    pub batch: Option<usize>,
}

/// Longest a drain may take before the row is reported as it stands.
const DRAIN_BOUND: Duration = Duration::from_secs(600);

struct Drain {
    enqueue_per_s: f64,
    drain_per_s: f64,
    done: i64,
    repeated: i64,
    latencies: Vec<f64>,
}

impl Scenario for Queue {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

impl Queue {
    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let workers = self.workers.unwrap_or(10);
        let (sizes, mid, tenant_counts): (Vec<u32>, u32, Vec<u32>) = match (self.jobs, ctx.small())
        {
            (Some(n), _) => (vec![n], n, vec![]),
            (None, true) => (vec![200, 600], 600, vec![3]),
            (None, false) => (vec![2_000, 20_000, 200_000], 20_000, vec![10, 100]),
        };
        let samples = self
            .latency_samples
            .unwrap_or(if ctx.small() { 10 } else { 500 });

        let batch = self.batch.unwrap_or(PROBE_BATCH).max(1);
        let mut figures = Vec::new();
        let mut headline = None;
        let mut repeated = 0;
        for &n in &sizes {
            let d = drain(
                ctx,
                n,
                1,
                workers,
                batch,
                if n == mid { samples } else { 0 },
            )
            .await?;
            repeated += d.repeated;
            let mut f = Figure::rate(format!("drain {n} jobs, 1 tenant"), d.drain_per_s);
            if d.done < i64::from(n) {
                f = f.note(format!("bounded: {} of {n} done", d.done));
            }
            figures.push(f);
            if n == mid {
                headline = Some(d);
            }
        }
        // The same drain with every job in its own transaction: what the
        // batches buy.
        let single = if batch > 1 {
            let d = drain(ctx, mid, 1, workers, 1, 0).await?;
            repeated += d.repeated;
            figures.push(Figure::rate(
                format!("drain {mid} jobs, 1 tenant, one job per transaction"),
                d.drain_per_s,
            ));
            Some(d.drain_per_s)
        } else {
            None
        };
        for &t in &tenant_counts {
            let d = drain(ctx, mid, t, workers, batch, 0).await?;
            repeated += d.repeated;
            figures.push(Figure::rate(
                format!("drain {mid} jobs, {t} tenants"),
                d.drain_per_s,
            ));
        }
        let h = headline.context("middle size")?;
        // The peer rows compare with the middle size on one tenant.
        let goal = if ctx.engine() == super::Engine::Sqlite {
            "≥ 3.0"
        } else {
            "≥ 2.0"
        };
        let base = Figure::rate(
            format!("drain {mid} jobs vs graphile-worker, default mode"),
            h.drain_per_s,
        )
        .goal(goal);
        let batched = Figure::rate(
            format!("drain {mid} jobs vs graphile-worker, batched mode"),
            h.drain_per_s,
        );
        let single = single.map(|v| {
            Figure::rate(
                format!(
                    "drain {mid} jobs, one job per transaction, vs graphile-worker, default mode"
                ),
                v,
            )
        });
        match (ctx.peers().graphile(), ctx.scratch_pg().await?) {
            (Some(script), Some(url)) => {
                ctx.phase("graphile-worker, default mode", 0);
                let d = peers::graphile_drain(&script, &url, mid, "default").await;
                if let (Some(f), Ok(v)) = (single, &d) {
                    figures.push(f.vs("graphile-worker 0.17 c=10", *v));
                }
                figures.push(base.vs_result("graphile-worker 0.17 c=10", d));
                ctx.phase("graphile-worker, batched mode", 0);
                let b = peers::graphile_drain(&script, &url, mid, "batched").await;
                figures.push(batched.vs_result("graphile-worker 0.17 batched", b));
            }
            (None, _) => {
                figures.push(base.note(NOT_INSTALLED));
                figures.push(batched.note(NOT_INSTALLED));
            }
            (Some(_), None) => {
                let why = "graphile-worker needs PostgreSQL: set DATABASE_URL";
                figures.push(base.note(why));
                figures.push(batched.note(why));
            }
        }
        figures.push(Figure::rate(
            "enqueue (500 per transaction)",
            h.enqueue_per_s,
        ));
        let mut lat = h.latencies;
        lat.sort_by(f64::total_cmp);
        if !lat.is_empty() {
            figures.push(Figure::new(
                "commit → completed, one job at a time, p50",
                quantile(&lat, 0.5),
                "ms",
            ));
            figures.push(Figure::new(
                "commit → completed, one job at a time, p99",
                quantile(&lat, 0.99),
                "ms",
            ));
        }
        figures.push(Figure::new("effects applied twice", repeated as f64, "").goal("0"));
        Ok(figures)
    }
}

/// Enqueues `jobs` probes over `tenant_count` tenants of a fresh store and
/// drains them with `workers` workers; then times `samples` single jobs.
async fn drain(
    ctx: &mut Ctx,
    jobs: u32,
    tenant_count: u32,
    workers: usize,
    batch: usize,
    samples: u32,
) -> anyhow::Result<Drain> {
    let cfg = ctx.store().await?;
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let tag = &uuid::Uuid::now_v7().simple().to_string()[24..];
    let mut ids: Vec<TenantId> = Vec::new();
    ctx.phase(&format!("creating {tenant_count} tenants"), 0);
    for i in 0..tenant_count {
        let shop = ShopDomain::parse(&format!("bench-queue-{tag}-{i}.myshopify.com"))?;
        let created = tenants::create(
            &db,
            &state.master_key,
            NewTenant {
                shop,
                owner_email: None,
                phone: None,
            },
        )
        .await
        .context("creating a bench tenant")?;
        ids.push(created.tenant.id);
    }

    ctx.phase(
        &format!("enqueue {jobs} jobs, {tenant_count} tenants"),
        u64::from(jobs),
    );
    let started = Instant::now();
    let per_tenant = jobs.div_ceil(tenant_count);
    let mut queued = 0u32;
    for &tenant in &ids {
        let mut left = per_tenant.min(jobs - queued);
        while left > 0 {
            let n = left.min(500);
            let mut tx = db.tenant_tx(tenant).await?;
            for _ in 0..n {
                enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now()).await?;
            }
            tx.commit().await?;
            left -= n;
            queued += n;
            ctx.advance(u64::from(queued));
        }
    }
    let enqueue_per_s = f64::from(jobs) / started.elapsed().as_secs_f64();

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
    let mut registry = Registry::builtin();
    registry.set_batch(QueueProbe::KIND, batch);
    let (stop, rx) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(state.clone(), registry).with_config(q).run(rx));
    ctx.phase(
        &format!("drain {jobs} jobs, {tenant_count} tenants, {workers} workers"),
        u64::from(jobs),
    );
    let started = Instant::now();
    let poll = Duration::from_millis(if tenant_count > 1 { 100 } else { 10 });
    let (mut done, mut repeated);
    loop {
        (done, repeated) = (0, 0);
        for &tenant in &ids {
            let mut tx = db.tenant_read(tenant).await?;
            let s = probes::summary(&mut tx).await?;
            tx.commit().await?;
            done += s.jobs;
            repeated += s.repeated;
        }
        ctx.advance(done as u64);
        if done >= i64::from(jobs) || started.elapsed() > DRAIN_BOUND {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let drain_per_s = done as f64 / started.elapsed().as_secs_f64();

    ctx.phase("commit → completed, one job at a time", u64::from(samples));
    let mut latencies = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        let mut tx = db.tenant_tx(ids[0]).await?;
        let id = enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
            .await?
            .id();
        tx.commit().await?;
        let committed = Instant::now();
        while committed.elapsed() < Duration::from_secs(10) {
            let job = galantis_store::jobs::admin::get(&db, Some(ids[0]), id).await?;
            if job.is_some_and(|j| j.state == "completed") {
                latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        ctx.advance(u64::from(i + 1));
    }
    let _ = stop.send(true);
    let _ = worker.await;
    db.close().await;
    Ok(Drain {
        enqueue_per_s,
        drain_per_s,
        done,
        repeated,
        latencies,
    })
}
