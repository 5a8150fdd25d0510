//! `galantis bench …`: the benchmark harness whose figures go in
//! docs/performance.md (ADR 0028).
//!
//! `galantis bench all` runs every registered scenario; `galantis bench
//! SCENARIO` runs one. Common options: `--engine sqlite|postgres` (PostgreSQL
//! at `DATABASE_URL`, where the harness creates a scratch database per store
//! and drops it afterwards), `--size small|default` (small is a smoke run)
//! and `--json FILE` (every figure, machine-readable). Each scenario prints a
//! table: figure, value, cost per item, the peer or limit measured in the
//! same run, their ratio, and the goal. Everything runs over loopback and is
//! bounded in count and time.
//!
//! ## Adding a scenario
//!
//! One small module under `src/bench/` with a type implementing
//! [`Scenario`]:
//!
//! 1. `name()` is the scenario's name in tables and JSON;
//! 2. `run(ctx)` measures and returns its [`Figure`]s. It gets a fresh,
//!    empty store on the chosen engine from [`Ctx::store`] (as many as it
//!    needs; they are removed after the scenario), reads [`Ctx::size`] for its
//!    counts (`Size::Small` must finish in seconds: the smoke test runs it),
//!    reports progress with [`Ctx::phase`] / [`Ctx::advance`], and finds
//!    external peers through [`Ctx::peers`] (a missing peer is a figure
//!    noted [`peers::NOT_INSTALLED`], never an error);
//! 3. register it in [`scenarios`] (that is what `bench all` and the smoke
//!    test run) and give it a variant of [`BenchCommand`].
//!
//! Scenarios may use the wall clock (`Instant`, `Utc::now()`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use futures::future::LocalBoxFuture;
use serde::Serialize;

use crate::config::Config;

mod api;
mod audience;
mod campaign;
mod ctx;
mod flows;
mod inbox;
mod ingest;
mod load;
pub mod peers;
mod queue;
mod restock;
mod seed;
mod send;
mod table;
mod tenants;

pub use ctx::Ctx;

/// A benchmark scenario: see the module documentation.
pub trait Scenario: Send + Sync {
    /// The scenario's name (`queue`, `ingest`, …).
    fn name(&self) -> &'static str;
    /// Measures; returns the figures to print and record.
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>>;
}

/// Every scenario `bench all` runs, with its default options.
pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(queue::Queue::default()),
        Box::new(ingest::Ingest::default()),
        Box::new(send::Send::default()),
        Box::new(inbox::Inbox::default()),
        Box::new(flows::Flows::default()),
        Box::new(campaign::Campaign {
            within_all: true,
            ..Default::default()
        }),
        Box::new(restock::Restock::default()),
    ]
}

/// One measured figure, with what it is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// Wall-clock cost of one item (µs), for throughput figures.
    pub per_item_us: Option<f64>,
    /// The peer or limit measured (or configured) in the same run.
    pub peer: Option<Peer>,
    /// value / peer (throughput) or peer / value (latency).
    pub ratio: Option<f64>,
    pub goal: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub name: String,
    pub value: f64,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            value,
            unit,
            per_item_us: None,
            peer: None,
            ratio: None,
            goal: None,
            note: None,
        }
    }

    /// A throughput figure (items per second) with its cost per item.
    pub fn rate(name: impl Into<String>, per_s: f64) -> Self {
        let mut f = Self::new(name, per_s, "/s");
        if per_s > 0.0 {
            f.per_item_us = Some(1e6 / per_s);
        }
        f
    }

    /// Compares with a peer where more is better: ratio = value / peer.
    pub fn vs(mut self, peer: impl Into<String>, value: f64) -> Self {
        if value > 0.0 {
            self.ratio = Some(self.value / value);
        }
        self.peer = Some(Peer {
            name: peer.into(),
            value,
        });
        self
    }

    /// Compares with a peer where less is better: ratio = peer / value.
    pub fn vs_lower(mut self, peer: impl Into<String>, value: f64) -> Self {
        if self.value > 0.0 {
            self.ratio = Some(value / self.value);
        }
        self.peer = Some(Peer {
            name: peer.into(),
            value,
        });
        self
    }

    /// A comparison whose peer could not run: the reason goes in the note.
    pub fn vs_result(self, peer: impl Into<String>, value: anyhow::Result<f64>) -> Self {
        match value {
            Ok(v) => self.vs(peer, v),
            Err(e) => self.note(format!("{}: {e:#}", peer.into())),
        }
    }

    pub fn goal(mut self, goal: impl Into<String>) -> Self {
        self.goal = Some(goal.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Tiny counts: a smoke run of every path, in seconds.
    Small,
    /// The counts docs/performance.md reports.
    #[default]
    Default,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Store engine: sqlite (a temporary data directory) or postgres (scratch
    /// databases at DATABASE_URL). Default: postgres when DATABASE_URL is set.
    #[arg(long, global = true, value_enum)]
    pub engine: Option<Engine>,
    /// Write every figure to this file as JSON.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Counts: small (smoke) or default (the documented figures).
    #[arg(long, global = true, value_enum, default_value_t = Size::Default)]
    pub size: Size,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Every scenario (queue, ingest, send, inbox, flows, campaign,
    /// restock), peers included.
    All,
    /// Queue drain with graphile-worker in the same run; scaling over job
    /// counts and tenants; enqueue rate and pickup latency.
    Queue(queue::Queue),
    /// Signed Shopify webhooks persisted and acknowledged per second (wrk as
    /// the client when installed), beside pgbench and a verify-and-ack
    /// baseline; scaling over counts and tenants.
    Ingest(ingest::Ingest),
    /// Sustained template sends per second against the Meta sandbox at each
    /// number limit, achieved/configured ratio.
    Send(send::Send),
    /// Inbound WhatsApp webhook → WebSocket frame latency with N clients.
    Inbox(inbox::Inbox),
    /// Segment preview and full re-evaluation over a synthetic store
    /// (standalone: writes JSON under `<data dir>/bench/`).
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
    /// Durable flow transitions per second: N contacts through trigger →
    /// delay → condition → action, beside the goal (5,000/s).
    Flows(flows::Flows),
    /// A campaign launched over HTTP to N recipients at each number limit
    /// against the Meta sandbox: achieved/configured rate, 130429s,
    /// duplicates (the sandbox's per-recipient counters), final status.
    Campaign(campaign::Campaign),
    /// Back in stock: a signed `products/update` restocking a variant with
    /// N ACTIVE subscribers; webhook acknowledgement → first and last send
    /// accepted by the Meta sandbox, beside the floor N / limit.
    Restock(restock::Restock),
    /// Create N tenants, then `migrate` over all of them twice (standalone;
    /// on PostgreSQL point DATABASE_URL at a scratch database).
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

pub async fn run(config: &Config, args: BenchArgs) -> anyhow::Result<()> {
    let list: Vec<Box<dyn Scenario>> = match args.command {
        BenchCommand::All => scenarios(),
        BenchCommand::Queue(s) => vec![Box::new(s)],
        BenchCommand::Ingest(s) => vec![Box::new(s)],
        BenchCommand::Send(s) => vec![Box::new(s)],
        BenchCommand::Inbox(s) => vec![Box::new(s)],
        BenchCommand::Flows(s) => vec![Box::new(s)],
        BenchCommand::Campaign(s) => vec![Box::new(s)],
        BenchCommand::Restock(s) => vec![Box::new(s)],
        BenchCommand::Audience {
            contacts,
            orders,
            repeat,
        } => return audience::run(config, contacts, orders, repeat).await,
        BenchCommand::Tenants { count, in_place } => {
            return tenants::run(config, count, in_place).await;
        }
    };
    let engine = args.engine.unwrap_or(if config.is_embedded() {
        Engine::Sqlite
    } else {
        Engine::Postgres
    });
    let mut ctx = Ctx::new(config, engine, args.size, peers::Peers::locate(), true)?;
    let report = run_all(&mut ctx, &list).await;
    ctx.finish();
    let report = report?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("written: {}", path.display());
    }
    Ok(())
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
pub struct Report {
    pub engine: Engine,
    pub size: Size,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub seconds: f64,
    pub figures: Vec<Figure>,
}

/// Runs scenarios in order, printing each table as it completes; the
/// scenario's scratch stores are removed even when it fails.
pub async fn run_all(ctx: &mut Ctx, list: &[Box<dyn Scenario>]) -> anyhow::Result<Report> {
    let mut report = Report {
        engine: ctx.engine(),
        size: ctx.size(),
        started_at: chrono::Utc::now(),
        scenarios: Vec::new(),
    };
    for s in list {
        ctx.begin(s.name());
        let started = Instant::now();
        let figures = s.run(ctx).await;
        ctx.cleanup().await;
        let figures = figures.map_err(|e| e.context(format!("bench {}", s.name())))?;
        let seconds = started.elapsed().as_secs_f64();
        ctx.print(&table::render(s.name(), ctx.engine(), seconds, &figures));
        // The scenarios share this process: work a finished one left
        // running would be charged to the next one's figures.
        if let Some(busy) = residual_cpu(Duration::from_secs(2)).await
            && busy > 0.05
        {
            ctx.print(&format!(
                "  note: after {}, this process still used {:.0} % of a core over 2 s of idle",
                s.name(),
                busy * 100.0
            ));
        }
        report.scenarios.push(ScenarioReport {
            scenario: s.name(),
            seconds,
            figures,
        });
    }
    Ok(report)
}

/// The share of one core this process used while idle for `over` (Linux:
/// `/proc/self/stat`, in the kernel's 100 ticks per second; `None`
/// elsewhere).
async fn residual_cpu(over: Duration) -> Option<f64> {
    fn ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces): state is
        // the first, utime the 12th, stime the 13th.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }
    let before = ticks()?;
    tokio::time::sleep(over).await;
    let after = ticks()?;
    Some((after - before) as f64 / 100.0 / over.as_secs_f64())
}

/// Writes a standalone benchmark's JSON under `<data dir>/bench/`.
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

/// `--runs COUNT@LIMIT,…` (campaign and restock): `what` names COUNT in errors.
pub(crate) fn parse_runs(runs: &[String], what: &str) -> anyhow::Result<Vec<(u32, u32)>> {
    use anyhow::Context as _;
    runs.iter()
        .map(|r| {
            let (n, l) = r
                .split_once('@')
                .with_context(|| format!("--runs {r}: expected {what}@LIMIT"))?;
            Ok((n.trim().parse()?, l.trim().parse()?))
        })
        .collect()
}
