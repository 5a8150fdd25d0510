//! `galantis bench send`: sustained sends per second against the Meta
//! sandbox at a number's configured limit. For each limit, `limit ×
//! seconds` template messages to distinct recipients are validated and
//! queued (the checks of `POST /api/v1/messages`, 500 per transaction so
//! that setup stays short), then W workers send
//! them: pair and number pacing, the `sending` record, the Cloud API call
//! over HTTP, the outcome and the credit charge. The rate is measured at the
//! sandbox (first to last acceptance); 130429s and duplicates are counted.

use std::time::{Duration, Instant};

use anyhow::Context;
use galantis_core::{ShopDomain, TenantId};
use galantis_sandbox::meta::{MetaSandbox, NumberConfig, SandboxConfig, TemplateSeed};
use galantis_store::control::phone_numbers;
use galantis_store::control::tenants::{self, NewTenant, PhoneNumberLink};
use galantis_store::tenant::billing;
use galantis_store::tenant::sending as store;
use serde_json::json;
use tokio::sync::watch;

use futures::future::LocalBoxFuture;

use super::{Ctx, Figure, Scenario, seed};
use crate::config::Config;
use crate::jobs::Registry;
use crate::jobs::worker::Worker;
use crate::sending::connection;
use crate::sending::queue::{NewSend, TemplateSend, queue_many};

/// Messages queued per transaction during setup.
const QUEUE_CHUNK: usize = 500;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Send {
    /// The number's messages-per-second limits, one run each (default
    /// 80,1000; small: 50).
    #[arg(long, value_delimiter = ',')]
    pub limits: Option<Vec<u32>>,
    /// How long each run sends (default 20 s; small: 1 s).
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Job workers sending (default: the `messages` lane's default concurrency).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl Scenario for Send {
    fn name(&self) -> &'static str {
        "send"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

impl Send {
    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let small = ctx.small();
        let limits = self
            .limits
            .clone()
            .unwrap_or_else(|| if small { vec![50] } else { vec![80, 1000] });
        let seconds = self.seconds.unwrap_or(if small { 1 } else { 20 });
        let workers = self
            .workers
            .unwrap_or(galantis_core::Lane::Messages.default_concurrency());
        let mut figures = Vec::new();
        let (mut e130429, mut duplicates) = (0u64, 0u64);
        for limit in limits {
            ctx.phase(
                &format!("{limit}/s for {seconds} s, {workers} workers"),
                u64::from(limit * seconds),
            );
            let cfg = ctx.store().await?;
            let r = one(ctx, cfg, limit, seconds, workers).await?;
            e130429 += r["errors_130429"].as_u64().unwrap_or(0);
            duplicates += r["duplicates"].as_u64().unwrap_or(0);
            let mut f = Figure::rate(
                format!("sends at {limit}/s per number, {} messages", r["messages"]),
                r["achieved_per_s"].as_f64().unwrap_or(0.0),
            )
            .vs("configured limit", f64::from(limit))
            .goal("≥ 0.98");
            let mut note = format!(
                "setup: contacts {:.1} s, queueing {:.1} s",
                r["seed_s"].as_f64().unwrap_or(0.0),
                r["queue_s"].as_f64().unwrap_or(0.0)
            );
            let unsent = r["unsent"].as_i64().unwrap_or(0);
            if unsent > 0 {
                note += &format!("; {unsent} credits still reserved (unsent) at the bound");
            }
            f = f.note(note);
            figures.push(f);
        }
        figures.push(Figure::new("130429 from the sandbox", e130429 as f64, "").goal("0"));
        figures.push(Figure::new("messages sent twice", duplicates as f64, "").goal("0"));
        Ok(figures)
    }
}

async fn one(
    ctx: &Ctx,
    mut cfg: Config,
    limit: u32,
    seconds: u32,
    workers: usize,
) -> anyhow::Result<serde_json::Value> {
    let messages = (limit * seconds).max(1) as usize;
    // A number per run: on PostgreSQL runs share one database, and a number
    // belongs to one tenant.
    let run = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let number = format!(
        "1{}",
        u64::from_str_radix(run, 16).unwrap_or(1) % 10_000_000_000_000
    );
    let waba = format!("2{}", &number[1..]);
    let (number, waba) = (number.as_str(), waba.as_str());
    let mut sc = SandboxConfig {
        numbers: vec![NumberConfig::new(number, waba).messages_per_second(limit)],
        ..SandboxConfig::default()
    };
    sc.settings.log_capacity = messages + 10;
    sc.webhooks.url = None;
    let sb = MetaSandbox::spawn(
        sc.with_template(TemplateSeed::approved("bench_update", "en", "Hi {{1}}").waba(waba)),
    )
    .await?;

    cfg.meta_base_url = Some(sb.base_url.clone());
    cfg.sending.default_messages_per_second = limit;
    cfg.sending.pair_interval_ms = 10;
    cfg.queue.concurrency.messages = workers;
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let shop = ShopDomain::parse(&format!("bench-send-{}.myshopify.com", &tag[24..]))?;
    let tenant: TenantId = tenants::create(
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
    let mut ctl = db.control_tx().await?;
    phone_numbers::replace_for_tenant(
        &mut ctl,
        tenant,
        &[PhoneNumberLink {
            phone_number_id: number.into(),
            waba_id: waba.into(),
        }],
        number,
    )
    .await?;
    ctl.commit().await?;
    crate::sending::templates::sync(&state, tenant)
        .await
        .map_err(|e| anyhow::anyhow!("template sync: {e}"))?;
    // Credits for every message, contacts with distinct phones.
    let mut tx = db.tenant_tx(tenant).await?;
    billing::operator_grant(
        &mut tx,
        messages as i64,
        "bench: credits for every message",
        "bench",
        state.clock.now(),
    )
    .await?;
    tx.commit().await?;
    let seeded = Instant::now();
    let ids = seed::customers(ctx, &db, tenant, 0..messages as u32, |i| {
        seed::subscribed(i, format!("+1666{i:07}"))
    })
    .await?;
    let seed_s = seeded.elapsed().as_secs_f64();
    let queued = Instant::now();
    let conn = connection::resolve(&state, tenant).await?;
    for chunk in ids.chunks(QUEUE_CHUNK) {
        let sends = chunk
            .iter()
            .map(|id| {
                NewSend {
                    contact_id: *id,
                    template: Some(TemplateSend {
                        name: "bench_update".into(),
                        language: "en".into(),
                        components: json!([{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]),
                    }),
                    ..Default::default()
                }
                .validate()
                .map_err(|e| anyhow::anyhow!("validating: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut tx = db.tenant_tx(tenant).await?;
        for outcome in queue_many(&mut tx, &conn, state.clock.now(), &sends).await? {
            outcome.map_err(|r| anyhow::anyhow!("queueing refused: {r}"))?;
        }
        tx.commit().await?;
    }
    let queue_s = queued.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = Worker::new(state.clone(), Registry::builtin());
    let handle = tokio::spawn(worker.run(stop_rx));
    let started = Instant::now();
    let deadline = Duration::from_secs(u64::from(seconds) * 4 + 60);
    while sb.counters().accepted < messages as u64 && started.elapsed() < deadline {
        ctx.advance(sb.counters().accepted);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let _ = handle.await;
    let c = sb.counters();
    let log = sb.messages();
    let first = log.iter().map(|m| m.accepted_at).min();
    let last = log.iter().map(|m| m.accepted_at).max();
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => 0.0,
    };
    let achieved = if elapsed > 0.0 {
        (c.accepted.saturating_sub(1)) as f64 / elapsed
    } else {
        0.0
    };
    let mut tx = db.tenant_read(tenant).await?;
    let left = store::reserved_credits(&mut tx).await?;
    tx.commit().await?;
    db.close().await;
    Ok(json!({
        "limit": limit,
        "messages": messages,
        "accepted": c.accepted,
        "seed_s": seed_s,
        "queue_s": queue_s,
        "elapsed_s": elapsed,
        "achieved_per_s": achieved,
        "ratio": achieved / f64::from(limit),
        "errors_130429": c.errors_by_code.get(&130429).copied().unwrap_or(0),
        "errors": c.errors_by_code,
        "duplicates": c.duplicate_callback_data,
        "unsent": left,
    }))
}
