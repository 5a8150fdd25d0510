//! `galantis bench flows` (a harness scenario, in `bench all`): durable flow
//! transitions per second, beside the goal of design.md §9 (5,000/s).
//!
//! N subscribed contacts each place an order (N `OrderCreated` events
//! recorded, 500 per transaction) into an ACTIVE automation ORDER_PLACED →
//! delay 1 minute → condition ORDER_VALUE > 100 → action (a template
//! queued through the real send path; the messages lane is off, so nothing
//! reaches the sandbox). The app runs on a fixed clock moved past the delay
//! once every run waits, so the minute costs nothing. W flow workers run
//! the trigger jobs (enrolment through the gate), the first steps and the
//! delay steps, each a transaction committed with its job's completion.
//! Figures: committed run steps per second (3 per contact: enrol, start,
//! wake) and activity transitions per second (9 per contact: each node
//! visit's PENDING → … → COMPLETED), over the whole run, each with its ratio
//! to the goal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use galantis_core::automation::{AutomationStatus, Flow, FrequencyCap};
use galantis_core::{Clock, DomainEvent, FixedClock, ShopDomain, TenantId};
use galantis_sandbox::meta::{MetaSandbox, NumberConfig, SandboxConfig, TemplateSeed};
use galantis_store::control::phone_numbers;
use galantis_store::control::tenants::{self, NewTenant, PhoneNumberLink};
use galantis_store::tenant::automations::{self, NewAutomation, runs};
use galantis_store::tenant::{billing, templates};
use serde_json::json;
use tokio::sync::watch;

use futures::future::LocalBoxFuture;

use super::{Ctx, Figure, Scenario, seed};
use crate::config::{Config, LaneConcurrency, QueueConfig};
use crate::jobs::Registry;
use crate::jobs::worker::Worker;

/// Per contact: enrol (trigger job), start step, delay step.
const STEPS_PER_RUN: f64 = 3.0;
/// Per contact: trigger 2, delay 3, condition 2, action 2.
const TRANSITIONS_PER_RUN: f64 = 9.0;
/// design.md §9: durable flow-step transitions per second.
const GOAL_TRANSITIONS_PER_S: f64 = 5000.0;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Flows {
    /// Contacts, one order each (default 10,000; small: 200).
    #[arg(long)]
    pub contacts: Option<u32>,
    /// Flow-lane job workers (default 8).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl Scenario for Flows {
    fn name(&self) -> &'static str {
        "flows"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(async move {
            let contacts = self
                .contacts
                .unwrap_or(if ctx.small() { 200 } else { 10_000 });
            let workers = self.workers.unwrap_or(8);
            let cfg = ctx.store().await?;
            measure(ctx, cfg, contacts, workers).await
        })
    }
}

async fn measure(
    ctx: &Ctx,
    mut cfg: Config,
    contacts_n: u32,
    workers: usize,
) -> anyhow::Result<Vec<Figure>> {
    let run_tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let number = format!(
        "1{}",
        u64::from_str_radix(run_tag, 16).unwrap_or(1) % 10_000_000_000_000
    );
    let waba = format!("2{}", &number[1..]);
    let mut sc = SandboxConfig {
        numbers: vec![NumberConfig::new(&number, &waba).messages_per_second(1000)],
        ..SandboxConfig::default()
    };
    sc.webhooks.url = None;
    let sb = MetaSandbox::spawn(
        sc.with_template(TemplateSeed::approved("bench_flow", "en", "Hi {{1}}").waba(&waba)),
    )
    .await?;
    cfg.meta_base_url = Some(sb.base_url.clone());
    let mut state = crate::app::build_state(cfg).await?;
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    state.set_clock(clock.clone());
    let db = state.db.clone();
    let shop = ShopDomain::parse(&format!("bench-flows-{run_tag}.myshopify.com"))?;
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
            phone_number_id: number.clone(),
            waba_id: waba.clone(),
        }],
        &number,
    )
    .await?;
    ctl.commit().await?;
    crate::sending::templates::sync(&state, tenant)
        .await
        .map_err(|e| anyhow::anyhow!("template sync: {e}"))?;

    // The automation, credits, contacts.
    let mut tx = db.tenant_tx(tenant).await?;
    let tpl = templates::by_name(&mut tx, "bench_flow", "en")
        .await?
        .context("the synced template")?
        .id;
    let flow = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
            {"id": "d", "type": "delay", "amount": 1, "unit": "minutes"},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [
                {"condition": "ORDER_VALUE", "operator": ">", "value": 100}]}},
            {"id": "vip", "type": "action", "template_id": tpl,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "std", "type": "action", "template_id": tpl,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "c"},
                  {"from": "c", "to": "vip", "branch": "yes"}, {"from": "c", "to": "std", "branch": "no"}]
    });
    let parsed = Flow::parse(&flow).map_err(|e| anyhow::anyhow!("bench flow: {e}"))?;
    let now_ms = clock.now().timestamp_millis();
    let a = automations::create(
        &mut tx,
        &NewAutomation {
            name: "bench",
            flow: (&flow, &parsed),
            frequency_cap: Some(FrequencyCap::Hours24),
            exclusions: &[],
            include_existing_users: false,
        },
        now_ms,
    )
    .await?;
    automations::set_status(&mut tx, a.id, AutomationStatus::Active, now_ms).await?;
    billing::operator_grant(
        &mut tx,
        i64::from(contacts_n),
        "bench: credits for every message",
        "bench",
        clock.now(),
    )
    .await?;
    tx.commit().await?;
    let ids = seed::customers(ctx, &db, tenant, 0..contacts_n, |i| {
        seed::subscribed(i, format!("+1666{i:07}"))
    })
    .await?;
    clock.advance(chrono::Duration::seconds(1));

    let q = QueueConfig {
        concurrency: LaneConcurrency {
            ingest: 0,
            messages: 0,
            flows: workers,
            campaigns: 0,
            sync: 0,
            monitor: 0,
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

    // Triggers: one order per contact, half of them over 100.
    let started = Instant::now();
    for (chunk_no, chunk) in ids.chunks(500).enumerate() {
        let mut tx = db.tenant_tx(tenant).await?;
        for (i, c) in chunk.iter().enumerate() {
            let total = if (chunk_no * 500 + i) % 2 == 0 {
                "150.00"
            } else {
                "50.00"
            };
            let ev = DomainEvent::OrderCreated {
                order_id: uuid::Uuid::now_v7(),
                shopify_order_id: (chunk_no * 500 + i) as i64 + 1,
                contact_id: Some(*c),
                total_price: Some(total.into()),
            };
            galantis_store::events::record(&mut tx, &ev, clock.now()).await?;
        }
        tx.commit().await?;
    }
    let recorded_s = started.elapsed().as_secs_f64();
    ctx.phase("runs enrolled and waiting", u64::from(contacts_n));
    wait_for(ctx, &db, tenant, a.id, "WAITING", contacts_n).await?;
    let enrolled_s = started.elapsed().as_secs_f64();
    // Past the delay: every run wakes, branches and queues its message.
    clock.advance(chrono::Duration::minutes(1));
    ctx.phase("runs completed", u64::from(contacts_n));
    wait_for(ctx, &db, tenant, a.id, "COMPLETED", contacts_n).await?;
    let total_s = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = worker.await;
    let mut tx = db.tenant_read(tenant).await?;
    let statuses = runs::count_by_status(&mut tx, a.id).await?;
    tx.commit().await?;

    let n = f64::from(contacts_n);
    let steps_per_s = n * STEPS_PER_RUN / total_s;
    let transitions_per_s = n * TRANSITIONS_PER_RUN / total_s;
    db.close().await;
    let runs = statuses
        .iter()
        .map(|(s, c)| format!("{s} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![
        Figure::rate(
            format!("durable activity transitions, {contacts_n} contacts, {workers} workers"),
            transitions_per_s,
        )
        .vs("goal", GOAL_TRANSITIONS_PER_S)
        .goal("≥ 1.0 (5,000/s)")
        .note(format!("runs: {runs}")),
        Figure::rate("committed run steps (enrol, start, wake)", steps_per_s).vs(
            "goal / 3 transitions per step",
            GOAL_TRANSITIONS_PER_S / 3.0,
        ),
        Figure::new("events recorded", recorded_s, "s"),
        Figure::new("all enrolled and waiting", enrolled_s, "s"),
        Figure::new("all completed", total_s, "s"),
    ])
}

/// Waits until `n` runs of the automation are in `status`.
async fn wait_for(
    ctx: &Ctx,
    db: &galantis_store::Db,
    tenant: TenantId,
    automation: uuid::Uuid,
    status: &str,
    n: u32,
) -> anyhow::Result<()> {
    loop {
        let mut tx = db.tenant_read(tenant).await?;
        let by = runs::count_by_status(&mut tx, automation).await?;
        tx.commit().await?;
        let have = by.iter().find(|(s, _)| s == status).map_or(0, |x| x.1);
        ctx.advance(u64::try_from(have).unwrap_or(0));
        if have >= i64::from(n) {
            return Ok(());
        }
        if by
            .iter()
            .any(|(s, c)| (s == "FAILED" || s == "SKIPPED") && *c > 0)
        {
            anyhow::bail!("runs failed: {by:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
