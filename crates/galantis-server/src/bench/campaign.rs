//! `galantis bench campaign`: a campaign to N subscribed recipients at a
//! number's configured limit, end to end against the Meta sandbox, the way
//! a merchant runs it.
//!
//! For each (recipients, limit) pair — by default 100,000 at 1,000/s and
//! 10,000 at 80/s (small: 500 at 1,000/s and 200 at 80/s) — on a fresh
//! store: a server (`serve --role all`, workers included) on a loopback
//! port; the tenant connected to a sandbox number of that limit through
//! `PUT /api/v1/settings/whatsapp` and `POST /api/v1/templates/sync`; N
//! contacts written through the store (setup, not measured) and put in a
//! list through `POST /api/v1/lists/{id}/members`; a campaign created and
//! launched through `POST /api/v1/campaigns` and `…/launch`. Dispatch,
//! sends, the sandbox's status webhooks (sent, then delivered) and the
//! monitor then run as in production, until the campaign's final status.
//!
//! Figures: the rate Meta saw (first to last acceptance at the sandbox)
//! over the configured limit (goal ≥ 0.98), the 130429s the sandbox
//! returned (goal 0), recipients accepted more than once by the sandbox's
//! per-recipient counters (goal 0), recipients sent over N, and the time
//! from the last acceptance to the final status (named in the note).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::LocalBoxFuture;
use galantis_core::ShopDomain;
use galantis_sandbox::meta::{MetaSandbox, NumberConfig, SandboxConfig, TemplateSeed};
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::tenant::billing;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::api::TenantApi;
use super::{Ctx, Figure, Scenario, seed};
use crate::config::{Config, DEV_META_APP_SECRET};
use crate::http::ServeRole;
use crate::jobs::Registry;

const TOKEN: &str = "EAAG-bench-campaign-token";
/// Final statuses of a campaign.
const FINAL: [&str; 4] = ["SENT", "PARTIALLY_SENT", "FAILED", "CANCELLED"];

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Campaign {
    /// Runs as RECIPIENTS@LIMIT, comma-separated (default
    /// 100000@1000,10000@80; small: 500@1000,200@80).
    #[arg(long, value_delimiter = ',')]
    pub runs: Option<Vec<String>>,
    /// Message-lane workers sending (default: the `messages` lane's default concurrency).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run as part of `bench all`, which must finish within 15 minutes per
    /// engine: the default size is then 20000@1000,10000@80 (100,000 at
    /// 1,000/s alone takes 5–8 minutes at today's rate; `bench campaign`
    /// runs it).
    #[arg(skip)]
    pub within_all: bool,
}

impl Scenario for Campaign {
    fn name(&self) -> &'static str {
        "campaign"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

/// One run's outcome.
struct Outcome {
    recipients: u32,
    limit: u32,
    achieved_per_s: f64,
    e130429: u64,
    duplicates: u64,
    sent: u64,
    status: String,
    to_final_s: f64,
}

impl Campaign {
    fn runs(&self, small: bool) -> anyhow::Result<Vec<(u32, u32)>> {
        let Some(runs) = &self.runs else {
            return Ok(if small {
                vec![(500, 1000), (200, 80)]
            } else if self.within_all {
                vec![(20_000, 1000), (10_000, 80)]
            } else {
                vec![(100_000, 1000), (10_000, 80)]
            });
        };
        super::parse_runs(runs, "RECIPIENTS")
    }

    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let workers = self
            .workers
            .unwrap_or(galantis_core::Lane::Messages.default_concurrency());
        let mut figures = Vec::new();
        let (mut e130429, mut duplicates) = (0u64, 0u64);
        for (n, limit) in self.runs(ctx.small())? {
            let cfg = ctx.store().await?;
            let o = one(ctx, cfg, n, limit, workers).await?;
            e130429 += o.e130429;
            duplicates += o.duplicates;
            figures.push(
                Figure::rate(
                    format!(
                        "campaign sends at {}/s, {} recipients",
                        o.limit, o.recipients
                    ),
                    o.achieved_per_s,
                )
                .vs("configured limit", f64::from(o.limit))
                .goal("≥ 0.98"),
            );
            figures.push(
                Figure::new(
                    format!("recipients sent ({})", o.recipients),
                    o.sent as f64,
                    "",
                )
                .vs("recipients", f64::from(o.recipients))
                .goal("1.0")
                .note(format!("final status {}", o.status)),
            );
            figures.push(Figure::new("last send → final status", o.to_final_s, "s"));
        }
        figures.push(Figure::new("130429 from the sandbox", e130429 as f64, "").goal("0"));
        figures.push(
            Figure::new(
                "recipients sent twice (sandbox counters)",
                duplicates as f64,
                "",
            )
            .goal("0"),
        );
        Ok(figures)
    }
}

async fn one(
    ctx: &Ctx,
    mut cfg: Config,
    n: u32,
    limit: u32,
    workers: usize,
) -> anyhow::Result<Outcome> {
    ctx.phase(&format!("{n} recipients @ {limit}/s: setup"), 0);
    let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let number = format!(
        "1{}",
        u64::from_str_radix(&run, 16).unwrap_or(1) % 10_000_000_000_000
    );
    let waba = format!("2{}", &number[1..]);
    let secret = cfg
        .meta_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_META_APP_SECRET));
    let mut sc = SandboxConfig::default().with_app_secret(secret.expose_secret());
    sc.settings.tokens = vec![TOKEN.to_owned()];
    sc.settings.log_capacity = n as usize + 10;
    sc.numbers = vec![NumberConfig::new(&number, &waba).messages_per_second(limit)];
    sc.webhooks.sent_after_ms = 0;
    sc.webhooks.delivered_after_ms = Some(5);
    sc.webhooks.read_after_ms = None;
    sc.webhooks.retry_base_ms = 100;
    let sb = MetaSandbox::spawn(
        sc.with_template(
            TemplateSeed::approved("bench_promo", "en", "Sale for {{1}}!")
                .waba(&waba)
                .category("MARKETING"),
        ),
    )
    .await?;

    cfg.meta_base_url = Some(sb.base_url.clone());
    cfg.sending.default_messages_per_second = limit;
    cfg.sending.pair_interval_ms = 10;
    cfg.queue.concurrency.messages = workers;
    cfg.campaigns.monitor_interval_secs = 1;
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let created = tenants::create(
        &db,
        &state.master_key,
        NewTenant {
            shop: ShopDomain::parse(&format!("bench-campaign-{run}.myshopify.com"))?,
            owner_email: None,
            phone: None,
        },
    )
    .await
    .context("creating the bench tenant")?;
    let tenant = created.tenant.id;
    let api = TenantApi {
        client: reqwest::Client::new(),
        base: String::new(),
        token: created.token.secret.expose_secret().to_owned(),
    };

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = TenantApi {
        base: format!("http://{}", l.local_addr()?),
        ..api
    };
    sb.update_webhooks(|w| w.url = Some(format!("{}/webhooks/meta", api.base)));
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
    let outcome = drive(
        ctx, &api, &sb, &db, tenant, &state, &waba, &number, n, limit,
    )
    .await;
    let _ = stop.send(());
    let _ = server.await;
    db.close().await;
    outcome
}

/// Sets up the tenant, launches the campaign and waits for its final status.
#[allow(clippy::too_many_arguments)]
async fn drive(
    ctx: &Ctx,
    api: &TenantApi,
    sb: &galantis_sandbox::meta::SandboxHandle,
    db: &galantis_store::Db,
    tenant: galantis_core::TenantId,
    state: &crate::state::AppState,
    waba: &str,
    number: &str,
    n: u32,
    limit: u32,
) -> anyhow::Result<Outcome> {
    api.call(
        Method::PUT,
        "/api/v1/settings/whatsapp",
        Some(json!({"access_token": TOKEN, "waba_id": waba,
            "phone_numbers": [{"phone_number_id": number, "messages_per_second": limit, "default": true}]})),
    )
    .await?;
    api.call(Method::POST, "/api/v1/templates/sync", Some(json!({})))
        .await?;
    let tpl = api
        .call(Method::GET, "/api/v1/templates?limit=100", None)
        .await?["data"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "bench_promo"))
        .and_then(|t| t["id"].as_str().map(str::to_owned))
        .context("the synced template")?;

    // Plan and credits (operator grants have no HTTP route), contacts.
    let mut tx = db.tenant_tx(tenant).await?;
    let plan = "ENTERPRISE"
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    billing::set_plan(&mut tx, plan, 0, state.clock.now()).await?;
    billing::operator_grant(
        &mut tx,
        i64::from(n),
        "bench: credits for every recipient",
        "bench",
        state.clock.now(),
    )
    .await?;
    tx.commit().await?;
    ctx.phase(
        &format!("{n} recipients @ {limit}/s: contacts"),
        u64::from(n),
    );
    // Valid Spanish mobiles, +34 612 xxx xxx; every other one without a
    // first name (the variable's fallback).
    let ids = seed::customers(ctx, db, tenant, 0..n, |i| {
        let mut f = seed::subscribed(i, format!("+34612{i:06}"));
        if i % 2 == 1 {
            f.first_name = None;
        }
        f
    })
    .await?;
    let list = api
        .call(
            Method::POST,
            "/api/v1/lists",
            Some(json!({"name": "everyone"})),
        )
        .await?["id"]
        .as_str()
        .context("list id")?
        .to_owned();
    for chunk in ids.chunks(5000) {
        api.call(
            Method::POST,
            &format!("/api/v1/lists/{list}/members"),
            Some(json!({"contact_ids": chunk})),
        )
        .await?;
    }
    let campaign = api
        .call(
            Method::POST,
            "/api/v1/campaigns",
            Some(json!({
                "name": format!("bench {n} @ {limit}/s"),
                "template_id": tpl,
                "variables_mapping": {"1": {"field": "customer.first_name", "fallback": "friend"}},
                "audience": {"include": [{"type": "list", "id": list}], "exclude": []},
            })),
        )
        .await?["id"]
        .as_str()
        .context("campaign id")?
        .to_owned();

    ctx.phase(
        &format!("{n} recipients @ {limit}/s: sending"),
        u64::from(n),
    );
    api.call(
        Method::POST,
        &format!("/api/v1/campaigns/{campaign}/launch"),
        None,
    )
    .await?;
    // Bounded: four times the ideal duration plus two minutes.
    let deadline = Instant::now() + Duration::from_secs(u64::from(n / limit.max(1)) * 4 + 120);
    let mut last_accepted: Option<Instant> = None;
    let status = loop {
        let accepted = sb.counters().accepted;
        ctx.advance(accepted);
        if accepted >= u64::from(n) && last_accepted.is_none() {
            last_accepted = Some(Instant::now());
        }
        let c = api
            .call(Method::GET, &format!("/api/v1/campaigns/{campaign}"), None)
            .await?;
        let status = c["status"].as_str().unwrap_or_default().to_owned();
        if FINAL.contains(&status.as_str()) {
            break status;
        }
        if Instant::now() > deadline {
            break format!("{status} (bound reached)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let to_final_s = last_accepted.map_or(0.0, |t| t.elapsed().as_secs_f64());

    let c = sb.counters();
    let log = sb.messages();
    let first = log.iter().map(|m| m.accepted_at).min();
    let last = log.iter().map(|m| m.accepted_at).max();
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => 0.0,
    };
    let achieved_per_s = if elapsed > 0.0 {
        c.accepted.saturating_sub(1) as f64 / elapsed
    } else {
        0.0
    };
    // Extra acceptances per recipient (a duplicate idempotency key would
    // show here too, as the same recipient twice).
    let duplicates = c
        .accepted_by_recipient
        .values()
        .map(|k| k.saturating_sub(1))
        .sum::<u64>()
        .max(c.duplicate_callback_data);
    let sent = c.accepted_by_recipient.len() as u64;
    Ok(Outcome {
        recipients: n,
        limit,
        achieved_per_s,
        e130429: c.errors_by_code.get(&130429).copied().unwrap_or(0),
        duplicates,
        sent,
        status,
        to_final_s,
    })
}
