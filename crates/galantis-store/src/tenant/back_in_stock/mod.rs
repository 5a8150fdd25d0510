//! Back-in-stock subscriptions: the storefront widget creates them, the
//! API lists, exports and cancels them, and the restock pipeline loads the
//! `ACTIVE` ones of a variant and marks them `NOTIFIED`.
//!
//! Variants and products are Shopify ids (the widget knows nothing else).
//! At most one open (`PENDING`/`ACTIVE`) subscription per contact and
//! variant, enforced by a partial unique index: a repeat gets the open one.

mod analytics;

pub use analytics::{Analytics, ProductAnalytics, analytics};

use galantis_core::back_in_stock::SubscriptionStatus;
use sea_query::{Expr, ExprTrait, Query};
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::parsed_text::Parsed;
use crate::tenant::segment_sql::build;

/// The settings key of the widget's appearance and confirmation mode.
pub const SETTINGS_KEY: &str = "back_in_stock";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Subscription {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub contact_phone: Option<String>,
    pub contact_first_name: Option<String>,
    pub variant_id: i64,
    pub product_id: Option<i64>,
    pub options: Value,
    pub status: SubscriptionStatus,
    pub source: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub notified_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Row = (
    Uuid,
    Uuid,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Json<Value>,
    Parsed<SubscriptionStatus>,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

macro_rules! select_sub {
    ($where:literal) => {
        concat!(
            "SELECT s.id, s.contact_id, c.phone, c.first_name, s.variant_id, s.product_id, s.options,
                    s.status, s.source, s.created_at, s.updated_at, s.notified_at, s.cancelled_at
             FROM back_in_stock_subscriptions s JOIN contacts c ON c.id = s.contact_id ",
            $where
        )
    };
}

fn to_sub(r: Row) -> Subscription {
    Subscription {
        id: r.0,
        contact_id: r.1,
        contact_phone: r.2,
        contact_first_name: r.3,
        variant_id: r.4,
        product_id: r.5,
        options: r.6.0,
        status: r.7.0,
        source: r.8,
        created_at: from_ms(r.9),
        updated_at: from_ms(r.10),
        notified_at: r.11.map(from_ms),
        cancelled_at: r.12.map(from_ms),
    }
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Subscription>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_sub!("WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_sub))
}

async fn open_for(
    tx: &mut TenantTx,
    contact: Uuid,
    variant: i64,
) -> Result<Option<Subscription>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_sub!(
            "WHERE s.contact_id = $1 AND s.variant_id = $2 AND s.status IN ('PENDING', 'ACTIVE')"
        ))
        .bind(contact)
        .bind(variant)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(to_sub))
}

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub contact_id: Uuid,
    pub variant_id: i64,
    pub product_id: Option<i64>,
    pub options: &'a Value,
    /// `PENDING` or `ACTIVE`.
    pub status: SubscriptionStatus,
    /// Where it came from, e.g. `back_in_stock_widget`.
    pub source: &'a str,
}

/// What [`subscribe`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Subscribed {
    Created(Subscription),
    /// The contact already had an open subscription for the variant.
    Existing(Subscription),
}

/// Creates the subscription unless the contact has an open one for the
/// variant (then that one is returned, unchanged).
pub async fn subscribe(
    tx: &mut TenantTx,
    new: NewSubscription<'_>,
    now_ms: i64,
) -> Result<Subscribed, StoreError> {
    debug_assert!(new.status.is_open());
    if let Some(s) = open_for(tx, new.contact_id, new.variant_id).await? {
        return Ok(Subscribed::Existing(s));
    }
    let id = Uuid::now_v7();
    // A concurrent twin that committed first wins the unique index.
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO back_in_stock_subscriptions
                 (id, contact_id, variant_id, product_id, options, status, source, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(new.contact_id)
        .bind(new.variant_id)
        .bind(new.product_id)
        .bind(Json(new.options))
        .bind(new.status.as_str())
        .bind(new.source)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if n == 0 {
        return open_for(tx, new.contact_id, new.variant_id)
            .await?
            .map(Subscribed::Existing)
            .ok_or(StoreError::NotFound);
    }
    get(tx, id)
        .await?
        .map(Subscribed::Created)
        .ok_or(StoreError::NotFound)
}

/// Filters of the subscription list and export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub variant_id: Option<i64>,
    pub product_id: Option<i64>,
    pub status: Option<SubscriptionStatus>,
}

/// Newest first, `limit` rows before the cursor id.
pub async fn list(
    tx: &mut TenantTx,
    f: &Filter,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Subscription>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_sub!(
            "WHERE ($1 IS NULL OR s.variant_id = $1) AND ($2 IS NULL OR s.product_id = $2)
               AND ($3 IS NULL OR s.status = $3) AND ($4 IS NULL OR s.id < $4)
             ORDER BY s.id DESC LIMIT $5"
        ))
        .bind(f.variant_id)
        .bind(f.product_id)
        .bind(f.status.map(|s| s.as_str()))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_sub).collect())
}

/// What [`cancel`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    Cancelled(Subscription),
    /// Already cancelled: unchanged.
    Already(Subscription),
    /// Notified subscriptions are history and stay so.
    AlreadyNotified(Subscription),
}

/// Cancels an open subscription. None for an unknown id.
pub async fn cancel(
    tx: &mut TenantTx,
    id: Uuid,
    now_ms: i64,
) -> Result<Option<Cancelled>, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE back_in_stock_subscriptions SET status = 'CANCELLED', cancelled_at = $1, updated_at = $1
             WHERE id = $2 AND status IN ('PENDING', 'ACTIVE')",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    let Some(s) = get(tx, id).await? else {
        return Ok(None);
    };
    Ok(Some(match (n, s.status) {
        (1, _) => Cancelled::Cancelled(s),
        (_, SubscriptionStatus::Notified) => Cancelled::AlreadyNotified(s),
        _ => Cancelled::Already(s),
    }))
}

/// Cancels every open (PENDING or ACTIVE) subscription of a contact: a
/// redacted or deleted customer is never notified. NOTIFIED ones stay as
/// history. Returns how many were cancelled.
pub async fn cancel_for_contact(
    tx: &mut TenantTx,
    contact: Uuid,
    now_ms: i64,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE back_in_stock_subscriptions SET status = 'CANCELLED', cancelled_at = $1, updated_at = $1
             WHERE contact_id = $2 AND status IN ('PENDING', 'ACTIVE')",
        )
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}

/// An `ACTIVE` subscriber of a variant, with what the pipeline's checks and
/// template variables need.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActiveSubscriber {
    pub subscription_id: Uuid,
    pub contact_id: Uuid,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub marketing_state: String,
    pub product_id: Option<i64>,
    pub options: Value,
    pub created_at: i64,
}

/// Step 6 of the restock pipeline: the `ACTIVE` subscriptions of one
/// Shopify variant, oldest first (first asked, first told), `limit` rows
/// after `after` (a subscription id; None from the start).
pub async fn active_for_variant(
    tx: &mut TenantTx,
    shopify_variant_id: i64,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ActiveSubscriber>, StoreError> {
    let rows: Vec<(
        Uuid,
        Uuid,
        Option<String>,
        Option<String>,
        String,
        Option<i64>,
        Json<Value>,
        i64,
    )> = on_tx!(tx.tx(), |c| {
        // Two statements, not `$2 IS NULL OR s.id > $2`: a prepared plan
        // for that cannot range-scan `back_in_stock_active_by_variant`.
        let after_page = "SELECT s.id, s.contact_id, c.phone, c.first_name, c.marketing_state, s.product_id, s.options, s.created_at
             FROM back_in_stock_subscriptions s JOIN contacts c ON c.id = s.contact_id
             WHERE s.variant_id = $1 AND s.status = 'ACTIVE' AND s.id > $2
             ORDER BY s.id LIMIT $3";
        let first_page = "SELECT s.id, s.contact_id, c.phone, c.first_name, c.marketing_state, s.product_id, s.options, s.created_at
             FROM back_in_stock_subscriptions s JOIN contacts c ON c.id = s.contact_id
             WHERE s.variant_id = $1 AND s.status = 'ACTIVE'
             ORDER BY s.id LIMIT $2";
        match after {
            Some(after) => {
                sqlx::query_as(after_page)
                    .bind(shopify_variant_id)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *c)
                    .await?
            }
            None => {
                sqlx::query_as(first_page)
                    .bind(shopify_variant_id)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *c)
                    .await?
            }
        }
    });
    Ok(rows
        .into_iter()
        .map(|r| ActiveSubscriber {
            subscription_id: r.0,
            contact_id: r.1,
            phone: r.2,
            first_name: r.3,
            marketing_state: r.4,
            product_id: r.5,
            options: r.6.0,
            created_at: r.7,
        })
        .collect())
}

/// Step 11: `ACTIVE` → `NOTIFIED` for these subscriptions (whatever the
/// delivery outcome). Others are left alone; returns how many changed.
pub async fn mark_notified(
    tx: &mut TenantTx,
    subscription_ids: &[Uuid],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let engine = tx.engine();
    let mut changed = 0;
    for chunk in subscription_ids.chunks(500) {
        let update = Query::update()
            .table("back_in_stock_subscriptions")
            .value("status", "NOTIFIED")
            .value("notified_at", now_ms)
            .value("updated_at", now_ms)
            .and_where(Expr::col("status").eq("ACTIVE"))
            .and_where(Expr::col("id").is_in(chunk.iter().copied()))
            .to_owned();
        let (sql, values) = build(engine, &update);
        changed += on_tx!(tx.tx(), |c| {
            sqlx::query_with(AssertSqlSafe(sql), values)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(changed)
}

/// Confirmation mode `whatsapp`: the contact confirmed (replied or tapped),
/// so its `PENDING` subscriptions become `ACTIVE`. Returns how many.
pub async fn activate_pending_for_contact(
    tx: &mut TenantTx,
    contact: Uuid,
    now_ms: i64,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE back_in_stock_subscriptions SET status = 'ACTIVE', updated_at = $1
             WHERE contact_id = $2 AND status = 'PENDING'",
        )
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}

/// A variant as the storefront sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantInfo {
    pub shopify_variant_id: i64,
    pub shopify_product_id: i64,
    pub product_title: Option<String>,
    pub variant_title: Option<String>,
    pub inventory_quantity: Option<i64>,
}

/// A live variant of a live product, by Shopify id.
pub async fn variant_info(
    tx: &mut TenantTx,
    shopify_variant_id: i64,
) -> Result<Option<VariantInfo>, StoreError> {
    let row: Option<(i64, i64, Option<String>, Option<String>, Option<i64>)> = on_tx!(
        tx.tx(),
        |c| {
            sqlx::query_as(
            "SELECT v.shopify_variant_id, p.shopify_product_id, p.title, v.title, v.inventory_quantity
             FROM variants v JOIN products p ON p.id = v.product_id
             WHERE v.shopify_variant_id = $1 AND v.deleted_at IS NULL AND p.deleted_at IS NULL",
        )
        .bind(shopify_variant_id)
        .fetch_optional(&mut *c)
        .await?
        }
    );
    Ok(row.map(|r| VariantInfo {
        shopify_variant_id: r.0,
        shopify_product_id: r.1,
        product_title: r.2,
        variant_title: r.3,
        inventory_quantity: r.4,
    }))
}

/// What a restock notice says about its variant (by internal id).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoticeVariant {
    pub shopify_variant_id: i64,
    pub shopify_product_id: i64,
    pub product_title: Option<String>,
    pub variant_title: Option<String>,
    pub price: Option<String>,
    pub handle: Option<String>,
    pub inventory_quantity: Option<i64>,
}

/// The variant `variant_id` (internal id) of a live product, with what the
/// restock notice shows and its current stock.
pub async fn notice_variant(
    tx: &mut TenantTx,
    variant_id: Uuid,
) -> Result<Option<NoticeVariant>, StoreError> {
    type R = (
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let row: Option<R> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT v.shopify_variant_id, p.shopify_product_id, p.title, v.title, v.price, p.handle,
                    v.inventory_quantity
             FROM variants v JOIN products p ON p.id = v.product_id
             WHERE v.id = $1 AND v.deleted_at IS NULL AND p.deleted_at IS NULL",
        )
        .bind(variant_id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(|r| NoticeVariant {
        shopify_variant_id: r.0,
        shopify_product_id: r.1,
        product_title: r.2,
        variant_title: r.3,
        price: r.4,
        handle: r.5,
        inventory_quantity: r.6,
    }))
}
