//! `galantis bench tenants`: create N tenants (storage, migrations, owner,
//! token), then run `migrate` over all of them twice (the second run must be
//! a no-op). Standalone: not part of `bench all`.

use std::time::Instant;

use anyhow::Context;
use galantis_core::ShopDomain;
use galantis_store::control::tenants::{self, NewTenant};
use galantis_store::migrate;
use serde_json::json;

use super::{quantile, write_result};
use crate::config::Config;

pub async fn run(config: &Config, count: u32, in_place: bool) -> anyhow::Result<()> {
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
