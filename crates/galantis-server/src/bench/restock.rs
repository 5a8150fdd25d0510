//! `galantis bench restock`: a sold-out variant comes back and its
//! subscribers hear on WhatsApp, end to end against the Meta sandbox (issue
//! 16, ADR 0031).
//!
//! For each (subscribers, limit) run — by default 10,000 at 1,000/s and
//! 10,000 at 80/s (small: 40 at 1,000/s and 20 at 80/s) — on a fresh store:
//! a server (`serve --role all`, workers included) on a loopback port; the
//! tenant connected to a sandbox number of that limit with an `APPROVED`
//! `back_in_stock_notice` template (`PUT /api/v1/settings/whatsapp`,
//! `POST /api/v1/templates/sync`); sold-out products and `ACTIVE`
//! subscriptions of subscribed contacts written through the store (setup,
//! not measured). Each restock is a real signed `products/update` webhook
//! taking one variant 0 → 5, posted to `/webhooks/shopify`; the clock starts
//! when its 200 arrives. A warm-up restock first (it creates the automation
//! from its recipe), then `--rounds` small restocks (`--round-size`
//! subscribers each, one product each) for the first-send distribution,
//! then the full restock.
//!
//! Figures: acknowledgement → first send accepted by the sandbox (p50 and
//! p95 over the rounds; goal p50 ≤ 50 ms), and for the full restock the
//! first send, the last send beside the floor the rate limit sets
//! (N / limit; goal within 1 s), the rate Meta saw over the limit, and over
//! everything the 130429s and recipients accepted twice (goal 0).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use galantis_core::back_in_stock::SubscriptionStatus;
use galantis_core::{ShopDomain, TenantId};
use galantis_sandbox::meta::{
    MetaSandbox, NumberConfig, SandboxConfig, SandboxHandle, TemplateSeed,
};
use galantis_store::Db;
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::tenant::back_in_stock::{self as bis, NewSubscription};
use galantis_store::tenant::billing;
use galantis_store::tenant::catalog::{self, ProductFields, VariantFields};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::api::TenantApi;
use super::{Ctx, Figure, Scenario, quantile, seed};
use crate::config::{Config, DEV_META_APP_SECRET, DEV_SHOPIFY_APP_SECRET};
use crate::http::ServeRole;
use crate::jobs::Registry;
use crate::webhooks::signature::sign_shopify;

const TOKEN: &str = "EAAG-bench-restock-token";
/// Products of the bench: the warm-up is `PRODUCT`, round `r` is
/// `PRODUCT + r`, the full restock `PRODUCT + FULL`; each has one variant,
/// `VARIANT + same offset`.
const PRODUCT: i64 = 7_000_000;
const VARIANT: i64 = 8_000_000;
const FULL: i64 = 100_000;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Restock {
    /// Full restocks as SUBSCRIBERS@LIMIT, comma-separated (default
    /// 10000@1000,10000@80; small: 40@1000,20@80).
    #[arg(long, value_delimiter = ',')]
    pub runs: Option<Vec<String>>,
    /// Small restocks per run for the first-send distribution (default 20;
    /// small: 3).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Subscribers of each small restock (default 5).
    #[arg(long)]
    pub round_size: Option<u32>,
    /// Message-lane workers sending (default: the `messages` lane's default concurrency).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl Scenario for Restock {
    fn name(&self) -> &'static str {
        "restock"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Figure>>> {
        Box::pin(self.measure(ctx))
    }
}

/// One restock's timings, from the webhook's acknowledgement.
struct Timed {
    first_ms: f64,
    last_ms: f64,
    accepted: u64,
}

struct Outcome {
    n: u32,
    limit: u32,
    rounds_first_ms: Vec<f64>,
    full: Timed,
    e130429: u64,
    duplicates: u64,
}

impl Restock {
    fn runs(&self, small: bool) -> anyhow::Result<Vec<(u32, u32)>> {
        let Some(runs) = &self.runs else {
            return Ok(if small {
                vec![(40, 1000), (20, 80)]
            } else {
                vec![(10_000, 1000), (10_000, 80)]
            });
        };
        super::parse_runs(runs, "SUBSCRIBERS")
    }

    async fn measure(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<Figure>> {
        let workers = self
            .workers
            .unwrap_or(galantis_core::Lane::Messages.default_concurrency());
        let rounds = self.rounds.unwrap_or(if ctx.small() { 3 } else { 20 });
        let round_size = self.round_size.unwrap_or(5).max(1);
        let mut figures = Vec::new();
        let (mut e130429, mut duplicates) = (0u64, 0u64);
        for (n, limit) in self.runs(ctx.small())? {
            let cfg = ctx.store().await?;
            let o = one(ctx, cfg, n, limit, rounds, round_size, workers).await?;
            e130429 += o.e130429;
            duplicates += o.duplicates;
            let mut firsts = o.rounds_first_ms.clone();
            firsts.sort_by(f64::total_cmp);
            if !firsts.is_empty() {
                figures.push(
                    Figure::new(
                        format!(
                            "ack → first send p50 at {}/s ({} restocks of {round_size})",
                            o.limit,
                            firsts.len()
                        ),
                        quantile(&firsts, 0.5).max(0.001),
                        "ms",
                    )
                    .vs_lower("goal", 50.0)
                    .goal("≤ 50 ms")
                    .note(format!(
                        "p95 {:.1} ms, max {:.1} ms",
                        quantile(&firsts, 0.95),
                        firsts.last().copied().unwrap_or(0.0)
                    )),
                );
            }
            let floor_s = f64::from(o.n) / f64::from(o.limit.max(1));
            figures.push(
                Figure::new(
                    format!("ack → first send, {} at {}/s", o.n, o.limit),
                    o.full.first_ms.max(0.001),
                    "ms",
                )
                .goal("≤ 50 ms"),
            );
            let last_s = o.full.last_ms / 1000.0;
            figures.push(
                Figure::new(
                    format!("ack → last send, {} at {}/s", o.n, o.limit),
                    last_s,
                    "s",
                )
                .vs_lower("floor N / limit", floor_s)
                .goal("≤ floor + 1 s")
                .note(format!(
                    "last − floor {:+.2} s; {} of {} accepted",
                    last_s - floor_s,
                    o.full.accepted,
                    o.n
                )),
            );
            let span_s = (o.full.last_ms - o.full.first_ms) / 1000.0;
            let achieved = if span_s > 0.0 {
                o.full.accepted.saturating_sub(1) as f64 / span_s
            } else {
                0.0
            };
            figures.push(
                Figure::rate(format!("restock sends at {}/s, {}", o.limit, o.n), achieved)
                    .vs("configured limit", f64::from(o.limit))
                    .goal("≥ 0.98"),
            );
        }
        figures.push(Figure::new("130429 from the sandbox", e130429 as f64, "").goal("0"));
        figures.push(
            Figure::new(
                "subscribers sent twice (sandbox counters)",
                duplicates as f64,
                "",
            )
            .goal("0"),
        );
        Ok(figures)
    }
}

#[allow(clippy::too_many_arguments)]
async fn one(
    ctx: &Ctx,
    mut cfg: Config,
    n: u32,
    limit: u32,
    rounds: u32,
    round_size: u32,
    workers: usize,
) -> anyhow::Result<Outcome> {
    ctx.phase(&format!("{n} subscribers @ {limit}/s: setup"), 0);
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
    let total = n + round_size * (rounds + 1);
    let mut sc = SandboxConfig::default().with_app_secret(secret.expose_secret());
    sc.settings.tokens = vec![TOKEN.to_owned()];
    sc.settings.log_capacity = total as usize + 10;
    sc.numbers = vec![NumberConfig::new(&number, &waba).messages_per_second(limit)];
    sc.webhooks.sent_after_ms = 0;
    sc.webhooks.delivered_after_ms = Some(5);
    sc.webhooks.read_after_ms = None;
    sc.webhooks.retry_base_ms = 100;
    let sb = MetaSandbox::spawn(
        sc.with_template(
            TemplateSeed::approved(
                "back_in_stock_notice",
                "en",
                "Hi {{1}}, {{2}} ({{3}}) is back: {{4}}",
            )
            .waba(&waba),
        ),
    )
    .await?;

    cfg.meta_base_url = Some(sb.base_url.clone());
    cfg.sending.default_messages_per_second = limit;
    cfg.sending.pair_interval_ms = 10;
    cfg.queue.concurrency.messages = workers;
    let shopify_secret = cfg
        .shopify_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_SHOPIFY_APP_SECRET));
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let shop = ShopDomain::parse(&format!("bench-restock-{run}.myshopify.com"))?;
    let created = tenants::create(
        &db,
        &state.master_key,
        NewTenant {
            shop: shop.clone(),
            owner_email: None,
            phone: None,
        },
    )
    .await
    .context("creating the bench tenant")?;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = TenantApi {
        client: reqwest::Client::new(),
        base: format!("http://{}", l.local_addr()?),
        token: created.token.secret.expose_secret().to_owned(),
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
    let setup = Setup {
        ctx,
        api: &api,
        shop: shop.as_str(),
        shopify_secret: &shopify_secret,
        sb: &sb,
        db: &db,
        tenant: created.tenant.id,
        state: &state,
    };
    let outcome = setup
        .drive(&waba, &number, n, limit, rounds, round_size)
        .await;
    let _ = stop.send(());
    let _ = server.await;
    db.close().await;
    outcome
}

struct Setup<'a> {
    ctx: &'a Ctx,
    api: &'a TenantApi,
    /// The shop whose signed webhooks the bench posts.
    shop: &'a str,
    shopify_secret: &'a SecretString,
    sb: &'a SandboxHandle,
    db: &'a Db,
    tenant: TenantId,
    state: &'a crate::state::AppState,
}

impl Setup<'_> {
    async fn drive(
        &self,
        waba: &str,
        number: &str,
        n: u32,
        limit: u32,
        rounds: u32,
        round_size: u32,
    ) -> anyhow::Result<Outcome> {
        let api = self.api;
        api.call(
            Method::PUT,
            "/api/v1/settings/whatsapp",
            Some(json!({"access_token": TOKEN, "waba_id": waba,
                "phone_numbers": [{"phone_number_id": number, "messages_per_second": limit, "default": true}]})),
        )
        .await?;
        api.call(Method::POST, "/api/v1/templates/sync", Some(json!({})))
            .await?;
        let total = n + round_size * (rounds + 1);
        let mut tx = self.db.tenant_tx(self.tenant).await?;
        let plan = "ENTERPRISE"
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        let now = self.state.clock.now();
        billing::set_plan(&mut tx, plan, 0, now).await?;
        billing::operator_grant(
            &mut tx,
            i64::from(total),
            "bench: credits for every subscriber",
            "bench",
            now,
        )
        .await?;
        tx.commit().await?;

        // The warm-up, the rounds and the full restock: a sold-out product
        // each, and their subscribers.
        self.ctx.phase(
            &format!("{n} subscribers @ {limit}/s: subscribers"),
            u64::from(total),
        );
        let mut next = 0u32;
        let mut offsets: Vec<(i64, u32)> =
            (0..=i64::from(rounds)).map(|r| (r, round_size)).collect();
        offsets.push((FULL, n));
        for &(offset, count) in &offsets {
            self.seed(offset, next, count).await?;
            next += count;
            self.ctx.advance(u64::from(next));
        }

        self.ctx
            .phase(&format!("{n} subscribers @ {limit}/s: restocks"), 0);
        let mut done = 0u64;
        // Warm-up: the automation is created from its recipe here.
        self.restock(0, round_size, &mut done).await?;
        let mut rounds_first_ms = Vec::new();
        for r in 1..=i64::from(rounds) {
            // Let the number's budget refill: each round starts afresh.
            tokio::time::sleep(Duration::from_millis(
                (u64::from(round_size) * 1000).div_ceil(u64::from(limit.max(1))) + 100,
            ))
            .await;
            let t = self.restock(r, round_size, &mut done).await?;
            rounds_first_ms.push(t.first_ms);
        }
        tokio::time::sleep(Duration::from_millis(
            (u64::from(round_size) * 1000).div_ceil(u64::from(limit.max(1))) + 100,
        ))
        .await;
        self.ctx.phase(
            &format!("{n} subscribers @ {limit}/s: full restock"),
            u64::from(n),
        );
        let full = self.restock(FULL, n, &mut done).await?;
        let c = self.sb.counters();
        Ok(Outcome {
            n,
            limit,
            rounds_first_ms,
            full,
            e130429: c.errors_by_code.get(&130429).copied().unwrap_or(0),
            duplicates: c
                .accepted_by_recipient
                .values()
                .map(|k| k.saturating_sub(1))
                .sum::<u64>()
                .max(c.duplicate_callback_data),
        })
    }

    /// Product `PRODUCT + offset` sold out, with `count` subscribers from
    /// contact `from` on.
    async fn seed(&self, offset: i64, from: u32, count: u32) -> anyhow::Result<()> {
        let now_ms = self.state.clock.now().timestamp_millis();
        let mut tx = self.db.tenant_tx(self.tenant).await?;
        catalog::upsert_product(&mut tx, &product_fields(offset), now_ms).await?;
        tx.commit().await?;
        // Valid Spanish mobiles, +34 612 xxx xxx.
        let ids = seed::customers(self.ctx, self.db, self.tenant, from..from + count, |k| {
            seed::subscribed(k, format!("+34612{k:06}"))
        })
        .await?;
        let options = json!({"Size": "M"});
        for chunk in ids.chunks(1000) {
            let mut tx = self.db.tenant_tx(self.tenant).await?;
            for &contact in chunk {
                bis::subscribe(
                    &mut tx,
                    NewSubscription {
                        contact_id: contact,
                        variant_id: VARIANT + offset,
                        product_id: Some(PRODUCT + offset),
                        options: &options,
                        status: SubscriptionStatus::Active,
                        source: "back_in_stock_widget",
                    },
                    now_ms,
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Restocks product `PRODUCT + offset` with a signed webhook and waits
    /// for its `count` sends; `done` is the sandbox's acceptances so far.
    async fn restock(&self, offset: i64, count: u32, done: &mut u64) -> anyhow::Result<Timed> {
        let body = serde_json::to_vec(&json!({
            "id": PRODUCT + offset, "title": format!("Bench tee {offset}"),
            "handle": format!("bench-tee-{offset}"), "status": "active",
            "updated_at": "2026-03-01T10:00:00Z",
            "variants": [{"id": VARIANT + offset, "title": "M", "price": "24.00",
                          "inventory_quantity": 5, "option1": "M"}],
        }))?;
        let r = self
            .api
            .client
            .post(format!("{}/webhooks/shopify", self.api.base))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "products/update")
            .header("x-shopify-shop-domain", self.shop)
            .header("x-shopify-webhook-id", format!("bench-restock-{offset}"))
            .header(
                "x-shopify-hmac-sha256",
                sign_shopify(&body, self.shopify_secret),
            )
            .body(body)
            .send()
            .await?;
        let acked: DateTime<Utc> = Utc::now();
        anyhow::ensure!(r.status().is_success(), "products/update: {}", r.status());
        let want = *done + u64::from(count);
        // Bounded: four times the ideal duration at 80/s, plus a minute.
        let bound = Instant::now() + Duration::from_secs(u64::from(count) / 20 + 60);
        loop {
            let accepted = self.sb.counters().accepted;
            if offset == FULL {
                self.ctx.advance(accepted.saturating_sub(*done));
            }
            if accepted >= want || Instant::now() > bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(if count > 100 { 50 } else { 1 })).await;
        }
        let log = self.sb.messages();
        let mine: Vec<DateTime<Utc>> = log
            .iter()
            .skip(usize::try_from(*done).unwrap_or(usize::MAX))
            .map(|m| m.accepted_at)
            .collect();
        *done = log.len() as u64;
        let ms = |t: Option<&DateTime<Utc>>| {
            t.map_or(f64::NAN, |t| {
                (*t - acked).num_microseconds().unwrap_or(0) as f64 / 1000.0
            })
        };
        Ok(Timed {
            first_ms: ms(mine.iter().min()),
            last_ms: ms(mine.iter().max()),
            accepted: mine.len() as u64,
        })
    }
}

fn product_fields(offset: i64) -> ProductFields {
    ProductFields {
        shopify_product_id: PRODUCT + offset,
        title: Some(format!("Bench tee {offset}")),
        handle: Some(format!("bench-tee-{offset}")),
        status: Some("active".into()),
        options: json!([{"name": "Size"}]),
        payload: json!({"id": PRODUCT + offset}),
        version: 1,
        variants: vec![VariantFields {
            shopify_variant_id: VARIANT + offset,
            title: Some("M".into()),
            price: Some("24.00".into()),
            inventory_quantity: Some(0),
            option1: Some("M".into()),
            position: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    }
}
