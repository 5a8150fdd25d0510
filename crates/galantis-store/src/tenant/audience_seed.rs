//! Bulk loading of contacts and orders with multi-row inserts, for
//! benchmarks (`galantis bench audience`) and large synthetic fixtures.
//! Order aggregates on the contact are given by the caller; the derived
//! `order_lines` are written with the orders.

use sea_query::{Query, Value};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;
use crate::tenant::orders::{OrderLine, insert_lines, lines_of};
use crate::tenant::segment_sql::build;

#[derive(Debug, Clone)]
pub struct SeedContact {
    pub id: Uuid,
    pub shopify_customer_id: i64,
    pub first_name: String,
    pub phone: Option<String>,
    pub phone_status: Option<&'static str>,
    pub locale: Option<String>,
    pub country: Option<String>,
    pub tags: Vec<String>,
    pub marketing_state: &'static str,
    pub orders_count: i64,
    pub total_spent_cents: i64,
    pub first_order_at: Option<i64>,
    pub last_order_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SeedOrder {
    pub id: Uuid,
    pub shopify_order_id: i64,
    pub contact_id: Uuid,
    pub shopify_customer_id: i64,
    pub total_price_cents: i64,
    pub line_items: serde_json::Value,
    pub created_at: i64,
}

const ROWS_PER_STATEMENT: usize = 400;

pub async fn insert_contacts(
    tx: &mut TenantTx,
    rows: &[SeedContact],
    now_ms: i64,
) -> Result<(), StoreError> {
    let engine = tx.engine();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = Query::insert();
        q.into_table("contacts").columns([
            "id",
            "shopify_customer_id",
            "first_name",
            "phone",
            "phone_raw",
            "phone_status",
            "locale",
            "country",
            "tags",
            "marketing_state",
            "orders_count",
            "total_spent_cents",
            "first_order_at",
            "last_order_at",
            "created_at",
            "updated_at",
        ]);
        for c in chunk {
            let values: Vec<Value> = vec![
                c.id.into(),
                c.shopify_customer_id.into(),
                c.first_name.clone().into(),
                c.phone.clone().into(),
                c.phone.clone().into(),
                c.phone_status.map(str::to_owned).into(),
                c.locale.clone().into(),
                c.country.clone().into(),
                serde_json::json!(c.tags).into(),
                c.marketing_state.into(),
                c.orders_count.into(),
                c.total_spent_cents.into(),
                c.first_order_at.into(),
                c.last_order_at.into(),
                now_ms.into(),
                now_ms.into(),
            ];
            q.values(values.into_iter().map(Into::into))
                .map_err(|e| StoreError::Config(format!("seed contacts: {e}")))?;
        }
        let (sql, values) = build(engine, &q);
        on_tx!(tx.tx(), |c| {
            sqlx::query_with(AssertSqlSafe(sql), values)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}

pub async fn insert_orders(
    tx: &mut TenantTx,
    rows: &[SeedOrder],
    now_ms: i64,
) -> Result<(), StoreError> {
    let engine = tx.engine();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = Query::insert();
        q.into_table("orders").columns([
            "id",
            "shopify_order_id",
            "contact_id",
            "shopify_customer_id",
            "total_price_cents",
            "line_items",
            "payload",
            "shopify_created_at",
            "shopify_updated_at",
            "created_at",
            "updated_at",
        ]);
        for o in chunk {
            let values: Vec<Value> = vec![
                o.id.into(),
                o.shopify_order_id.into(),
                o.contact_id.into(),
                o.shopify_customer_id.into(),
                o.total_price_cents.into(),
                o.line_items.clone().into(),
                serde_json::json!({"id": o.shopify_order_id}).into(),
                o.created_at.into(),
                o.created_at.into(),
                now_ms.into(),
                now_ms.into(),
            ];
            q.values(values.into_iter().map(Into::into))
                .map_err(|e| StoreError::Config(format!("seed orders: {e}")))?;
        }
        let (sql, values) = build(engine, &q);
        on_tx!(tx.tx(), |c| {
            sqlx::query_with(AssertSqlSafe(sql), values)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        // The derived lines the purchase rules read, as order upserts keep
        // them (seed orders always have a contact and are not cancelled).
        let lines: Vec<(Uuid, Vec<OrderLine>)> = chunk
            .iter()
            .map(|o| (o.contact_id, lines_of(&o.line_items)))
            .collect();
        let rows: Vec<(Uuid, Uuid, &OrderLine)> = chunk
            .iter()
            .zip(&lines)
            .flat_map(|(o, (contact, ls))| ls.iter().map(move |l| (o.id, *contact, l)))
            .collect();
        insert_lines(tx, &rows).await?;
    }
    Ok(())
}

/// Refreshes the planner's statistics of the tables segment rules read (after
/// a bulk load; PostgreSQL's autovacuum would do it shortly after).
pub async fn analyze(tx: &mut TenantTx) -> Result<(), StoreError> {
    on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query("ANALYZE")
                .execute(&mut *c)
                .await?
                .rows_affected()
        },
        postgres
            | c
            | {
                sqlx::query(
                "ANALYZE contacts, orders, order_lines, collection_products, segment_members, list_members, messages",
            )
            .execute(&mut *c)
            .await?
            .rows_affected()
            }
    );
    Ok(())
}
