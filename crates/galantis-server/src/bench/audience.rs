//! `galantis bench audience`: segment preview and full re-evaluation over a
//! synthetic store (default 100,000 contacts with 300,000 orders), plus the
//! incremental re-evaluation a webhook triggers for one contact.
//!
//! The data is deterministic (a fixed pseudo-random sequence): countries,
//! languages, tags, consent states, 0–6 orders per contact over two years
//! with vendors and products in `line_items` (and `order_lines`), one
//! collection of 100 of the 500 products.

use std::time::Instant;

use anyhow::Context;
use galantis_core::ShopDomain;
use galantis_core::segment::{DAY_MS, SegmentRules};
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::tenant::audience_seed::{self, SeedContact, SeedOrder};
use galantis_store::tenant::segments;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{quantile, write_result};
use crate::config::Config;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const COUNTRIES: &[&str] = &["MX", "MX", "MX", "US", "ES", "BR", "CO", "AR"];
const LOCALES: &[&str] = &["es", "es-MX", "en", "en-US", "pt-BR", "es-ES"];
const TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "wholesale",
    "loyalty-gold",
    "returning",
];
const STATES: &[&str] = &[
    "SUBSCRIBED",
    "SUBSCRIBED",
    "SUBSCRIBED",
    "NOT_SUBSCRIBED",
    "UNSUBSCRIBED",
    "PENDING",
    "UNKNOWN",
];
const VENDORS: &[&str] = &["NikeMX", "Adidas", "Puma", "Acme", "Reebok", "Vans"];
/// Products 1000–1499 are sold; this collection holds 1000–1099.
const COLLECTION: i64 = 1;
const COLLECTION_PRODUCTS: std::ops::Range<i64> = 1000..1100;

fn rules() -> Vec<(&'static str, Value)> {
    let one = |f: &str, op: &str, v: Value| json!({"groups": [{"conditions": [{"field": f, "operator": op, "value": v}]}]});
    vec![
        (
            "(spent > 500 AND MX) OR (orders >= 3 AND yes)",
            json!({"groups": [
                {"conditions": [{"field": "total_spent", "operator": ">", "value": 500},
                                {"field": "country", "operator": "=", "value": "MX"}]},
                {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3},
                                {"field": "consent", "operator": "=", "value": "yes"}]}
            ]}),
        ),
        (
            "days since last order > 90",
            one("days_since_last_order", ">", json!(90)),
        ),
        (
            "tag in [vip, loyalty-gold]",
            one("customer_tag", "in", json!(["vip", "loyalty-gold"])),
        ),
        (
            "language = es AND AOV >= 100",
            json!({"groups": [{"conditions": [
                {"field": "language", "operator": "=", "value": "es"},
                {"field": "average_order_value", "operator": ">=", "value": 100}]}]}),
        ),
        (
            "purchased brand = NikeMX (order lines)",
            one("purchased_brand", "=", json!("NikeMX")),
        ),
        (
            "purchased collection 1 (100 of 500 products)",
            one("purchased_collection", "in", json!([COLLECTION])),
        ),
    ]
}

pub async fn run(config: &Config, contacts: u32, orders: u32, repeat: u32) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut cfg = config.clone();
    if cfg.is_embedded() {
        cfg.data_dir = scratch.path().to_path_buf();
    }
    cfg.migrate_on_start = true;
    let state = crate::app::build_state(cfg).await?;
    let db = state.db.clone();
    let engine = db.engine().as_str();
    let tag = Uuid::now_v7().simple().to_string();
    let shop = ShopDomain::parse(&format!("bench-audience-{}.myshopify.com", &tag[24..]))?;
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
    let now = chrono::Utc::now().timestamp_millis();

    // Seed.
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let per_contact_max = ((orders as u64 * 2) / contacts.max(1) as u64).max(1);
    let mut orders_left = orders as u64;
    let mut order_no = 0i64;
    let mut batch_c = Vec::with_capacity(5000);
    let mut batch_o = Vec::with_capacity(15000);
    for i in 0..contacts as i64 {
        let id = Uuid::now_v7();
        let remaining_contacts = contacts as u64 - i as u64;
        let n = if remaining_contacts == 1 {
            orders_left
        } else {
            rng.below(per_contact_max + 1).min(orders_left)
        };
        orders_left -= n;
        let (mut total, mut first, mut last) = (0i64, None::<i64>, None::<i64>);
        for _ in 0..n {
            order_no += 1;
            let cents = 1_000 + rng.below(60_000) as i64;
            let at = now - rng.below(730) as i64 * DAY_MS - rng.below(DAY_MS as u64) as i64;
            total += cents;
            first = Some(first.map_or(at, |f: i64| f.min(at)));
            last = Some(last.map_or(at, |l: i64| l.max(at)));
            batch_o.push(SeedOrder {
                id: Uuid::now_v7(),
                shopify_order_id: order_no,
                contact_id: id,
                shopify_customer_id: i + 1,
                total_price_cents: cents,
                line_items: json!([{"id": order_no * 10, "quantity": 1, "price": format!("{}.{:02}", cents / 100, cents % 100),
                                    "product_id": 1000 + rng.below(500), "vendor": rng.pick(VENDORS)}]),
                created_at: at,
            });
        }
        let ntags = rng.below(3) as usize;
        let tags: Vec<String> = (0..ntags).map(|_| rng.pick(TAGS).to_string()).collect();
        let has_phone = rng.below(20) != 0;
        batch_c.push(SeedContact {
            id,
            shopify_customer_id: i + 1,
            first_name: format!("Contact {i}"),
            phone: has_phone.then(|| format!("+52155{:08}", i)),
            phone_status: has_phone.then_some("valid"),
            locale: Some(rng.pick(LOCALES).to_string()),
            country: Some(rng.pick(COUNTRIES).to_string()),
            tags,
            marketing_state: STATES[rng.below(STATES.len() as u64) as usize],
            orders_count: n as i64,
            total_spent_cents: total,
            first_order_at: first,
            last_order_at: last,
        });
        if batch_c.len() >= 5000 || i + 1 == contacts as i64 {
            let mut tx = db.tenant_tx(tenant).await?;
            audience_seed::insert_contacts(&mut tx, &batch_c, now).await?;
            audience_seed::insert_orders(&mut tx, &batch_o, now).await?;
            tx.commit().await?;
            batch_c.clear();
            batch_o.clear();
        }
    }
    let mut tx = db.tenant_tx(tenant).await?;
    galantis_store::tenant::catalog::set_collection_products(
        &mut tx,
        COLLECTION,
        &COLLECTION_PRODUCTS.collect::<Vec<_>>(),
    )
    .await?;
    tx.commit().await?;
    let seed_secs = started.elapsed().as_secs_f64();
    println!(
        "bench audience on {engine}: {contacts} contacts, {order_no} orders seeded in {seed_secs:.1} s"
    );

    // Preview (count + 10 sample ids), each rule `repeat` times, right
    // after the load (no planner statistics yet on PostgreSQL).
    let rows = previews(&db, tenant, repeat, now, "preview (count + sample of 10)").await?;

    // Full evaluation: materialise (create), re-evaluate unchanged, and
    // re-evaluate 60 days later (time-relative rule: transitions + events).
    println!("{:<62} {:>9} {:>9}", "full evaluation", "members", "ms");
    let mut full = Vec::new();
    let mut created = Vec::new();
    for (i, (name, r)) in rules().into_iter().enumerate() {
        let parsed = SegmentRules::parse(&r).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        let mut tx = db.tenant_tx(tenant).await?;
        let seg = segments::create(&mut tx, &format!("bench {i}"), None, &r, &parsed, now).await?;
        tx.commit().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{:<62} {:>9} {:>9.1}",
            format!("materialise    {name}"),
            seg.member_count,
            ms
        );
        full.push(
            json!({"what": "materialise", "rule": name, "members": seg.member_count, "ms": ms}),
        );
        created.push((seg.id, name, parsed));
    }
    for (id, name, parsed) in &created {
        let t = Instant::now();
        let mut tx = db.tenant_tx(tenant).await?;
        let entered = segments::evaluate(&mut tx, *id, parsed, None, now).await?;
        tx.commit().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{:<62} {:>9} {:>9.1}",
            format!("re-evaluate  {name}"),
            entered.len(),
            ms
        );
        full.push(json!({"what": "reevaluate_unchanged", "rule": name, "entered": entered.len(), "ms": ms}));
    }
    let (id, name, parsed) = &created[1];
    let later = now + 60 * DAY_MS;
    let t = Instant::now();
    let mut tx = db.tenant_tx(tenant).await?;
    let entered = segments::evaluate(&mut tx, *id, parsed, None, later).await?;
    for c in &entered {
        let e = crate::audience::segment_event(&segments::Entered {
            segment_id: *id,
            segment_name: name.to_string(),
            contact_id: *c,
        });
        let at = chrono::DateTime::from_timestamp_millis(later).unwrap_or_default();
        galantis_store::events::record(&mut tx, &e, at).await?;
    }
    tx.commit().await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{:<62} {:>9} {:>9.1}",
        "refresh +60 d (+events)   days since last order > 90",
        entered.len(),
        ms
    );
    full.push(json!({"what": "periodic_refresh_60_days_later", "rule": name, "entered": entered.len(), "ms": ms}));

    // Incremental: what one webhook costs with these segments.
    let mut tx = db.tenant_read(tenant).await?;
    let sample = segments::preview(
        &mut tx,
        &SegmentRules::parse(&json!({"groups": [{"conditions": [
            {"field": "orders_count", "operator": ">=", "value": 0}]}]}))
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        200,
        now,
    )
    .await?
    .1;
    tx.commit().await?;
    let mut times = Vec::new();
    for c in &sample {
        let t = Instant::now();
        let mut tx = db.tenant_tx(tenant).await?;
        segments::reevaluate_contacts(&mut tx, &[*c], now).await?;
        tx.commit().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let (inc50, inc99) = (quantile(&times, 0.5), quantile(&times, 0.99));
    println!(
        "{:<62} {:>9} {:>9.2}",
        format!("one contact, {} segments (webhook), p50 ms", created.len()),
        sample.len(),
        inc50
    );
    println!("{:<62} {:>9} {:>9.2}", "  p99 ms", "", inc99);

    // The same previews once the planner has statistics, as autovacuum
    // (PostgreSQL) would gather them shortly after such a load.
    let mut tx = db.tenant_tx(tenant).await?;
    audience_seed::analyze(&mut tx).await?;
    tx.commit().await?;
    let analyzed = previews(&db, tenant, repeat, now, "preview after ANALYZE").await?;

    let result = json!({
        "scenario": "audience",
        "engine": engine,
        "contacts": contacts,
        "orders": order_no,
        "seed_s": seed_secs,
        "preview": rows,
        "preview_after_analyze": analyzed,
        "full": full,
        "incremental_one_contact_ms_p50": inc50,
        "incremental_one_contact_ms_p99": inc99,
        "goal": "preview < 200 ms on PostgreSQL at 100,000 contacts",
    });
    write_result(config, &format!("audience-{engine}"), &result)?;
    db.close().await;
    Ok(())
}

/// Times `segments::preview` of every rule (`repeat` times each); prints a
/// table under `title` and returns its rows.
async fn previews(
    db: &galantis_store::Db,
    tenant: galantis_core::TenantId,
    repeat: u32,
    now: i64,
    title: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    println!(
        "{title:<62} {:>9} {:>9} {:>9}",
        "matches", "p50 ms", "max ms"
    );
    for (name, r) in rules() {
        let parsed = SegmentRules::parse(&r).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut times = Vec::new();
        let mut count = 0;
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let mut tx = db.tenant_read(tenant).await?;
            count = segments::preview(&mut tx, &parsed, 10, now).await?.0;
            tx.commit().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let (p50, max) = (quantile(&times, 0.5), *times.last().unwrap_or(&f64::NAN));
        println!("{name:<62} {count:>9} {p50:>9.1} {max:>9.1}");
        rows.push(
            json!({"rule": name, "matches": count, "preview_p50_ms": p50, "preview_max_ms": max}),
        );
    }
    Ok(rows)
}
