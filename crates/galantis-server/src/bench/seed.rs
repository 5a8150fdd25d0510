//! Setup shared by the scenarios that need a store full of customers.
//!
//! Setup is not what a scenario measures, but it is most of `bench all`'s
//! wall clock on PostgreSQL when done one statement chain at a time: each
//! customer goes through the real Shopify upsert (a dozen statements), so
//! chunks run in several transactions at once there. SQLite has one writer;
//! its chunks run one after another.

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use galantis_core::{MarketingState, TenantId};
use galantis_store::tenant::contacts::{self, CustomerFields, Upserted};
use galantis_store::{Db, Engine};
use uuid::Uuid;

use super::Ctx;

/// Customers per transaction.
const CHUNK: u32 = 500;
/// Transactions at once on PostgreSQL: enough to keep both of its cores
/// busy while this process prepares the next statements.
const PARALLEL_PG: usize = 4;

/// A subscribed customer with a valid phone (`phone(i)`), Shopify id
/// `i + 1` and first name `Ana{i}`: what every sending scenario needs.
pub fn subscribed(i: u32, phone: String) -> CustomerFields {
    CustomerFields {
        shopify_customer_id: i64::from(i) + 1,
        first_name: Some(format!("Ana{i}")),
        phone_raw: Some(phone.clone()),
        phone: Some(phone),
        phone_status: Some("valid"),
        marketing_state: Some(MarketingState::Subscribed),
        updated_at: 1,
        ..Default::default()
    }
}

/// Creates the customers `fields(i)` for `i` in `range` through
/// [`contacts::upsert_customer`] and returns their ids in order, advancing
/// the progress bar as chunks commit.
pub async fn customers(
    ctx: &Ctx,
    db: &Db,
    tenant: TenantId,
    range: std::ops::Range<u32>,
    fields: impl Fn(u32) -> CustomerFields,
) -> anyhow::Result<Vec<Uuid>> {
    let parallel = match db.engine() {
        Engine::Postgres => PARALLEL_PG,
        Engine::Sqlite => 1,
    };
    let chunks: Vec<Vec<CustomerFields>> = range
        .clone()
        .step_by(CHUNK as usize)
        .map(|from| (from..(from + CHUNK).min(range.end)).map(&fields).collect())
        .collect();
    let mut done = 0u64;
    let ids: Vec<Vec<Uuid>> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let mut tx = db.tenant_tx(tenant).await?;
            let mut ids = Vec::with_capacity(chunk.len());
            for f in &chunk {
                match contacts::upsert_customer(&mut tx, f, 1).await? {
                    Upserted::Created(c) => ids.push(c.id),
                    other => anyhow::bail!(
                        "seeding customer {}: expected a new contact, got {other:?}",
                        f.shopify_customer_id
                    ),
                }
            }
            tx.commit().await.context("seeding customers")?;
            anyhow::Ok(ids)
        })
        .buffered(parallel)
        .inspect_ok(|ids| {
            done += ids.len() as u64;
            ctx.advance(u64::from(range.start) + done);
        })
        .try_collect()
        .await?;
    Ok(ids.concat())
}
