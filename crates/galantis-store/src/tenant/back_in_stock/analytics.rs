//! Back-in-stock analytics over a time range: active subscriptions (now),
//! notifications sent (subscriptions `NOTIFIED` in the range), click rate
//! (notified subscriptions whose tracked link was clicked), conversion rate
//! and revenue attributed (orders by the notified contact containing the
//! notified variant within [`ATTRIBUTION_DAYS`] of the notification),
//! overall and per product.

use std::collections::{BTreeMap, HashMap};

use galantis_core::back_in_stock::{ATTRIBUTION_DAYS, variant_revenue_cents};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProductAnalytics {
    /// Shopify product id (None: subscriptions to variants not in the catalog).
    pub product_id: Option<i64>,
    pub active_subscriptions: i64,
    pub notifications_sent: i64,
    pub clicked: i64,
    pub click_rate: f64,
    pub converted: i64,
    pub conversion_rate: f64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Analytics {
    pub from_ms: i64,
    pub to_ms: i64,
    pub attribution_days: i64,
    #[serde(flatten)]
    pub overall: ProductAnalytics,
    pub products: Vec<ProductAnalytics>,
}

fn rate(n: i64, d: i64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Analytics of notifications sent in `[from_ms, to_ms)`.
pub async fn analytics(
    tx: &mut TenantTx,
    from_ms: i64,
    to_ms: i64,
) -> Result<Analytics, StoreError> {
    let active: Vec<(Option<i64>, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT product_id, COUNT(*) FROM back_in_stock_subscriptions WHERE status = 'ACTIVE' GROUP BY product_id",
        )
        .fetch_all(&mut *c)
        .await?
    });
    // (subscription, contact, variant, product, notified_at, clicked)
    let notified: Vec<(Uuid, Uuid, i64, Option<i64>, i64, bool)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT s.id, s.contact_id, s.variant_id, s.product_id, s.notified_at,
                    EXISTS (SELECT 1 FROM short_links l WHERE l.subscription_id = s.id AND l.clicks > 0)
             FROM back_in_stock_subscriptions s
             WHERE s.status = 'NOTIFIED' AND s.notified_at >= $1 AND s.notified_at < $2",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *c)
        .await?
    });
    let window = ATTRIBUTION_DAYS * DAY_MS;
    // Orders of the notified contacts, from the first notification to the
    // end of the last one's window.
    let orders: Vec<(Uuid, i64, Json<Value>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT o.contact_id, COALESCE(o.shopify_created_at, o.created_at), o.line_items FROM orders o
             WHERE o.cancelled_at IS NULL AND o.deleted_at IS NULL
               AND COALESCE(o.shopify_created_at, o.created_at) >= $1
               AND COALESCE(o.shopify_created_at, o.created_at) < $2
               AND o.contact_id IN (SELECT s.contact_id FROM back_in_stock_subscriptions s
                                    WHERE s.status = 'NOTIFIED' AND s.notified_at >= $1 AND s.notified_at < $3)",
        )
        .bind(from_ms)
        .bind(to_ms.saturating_add(window))
        .bind(to_ms)
        .fetch_all(&mut *c)
        .await?
    });
    let mut by_contact: HashMap<Uuid, Vec<(i64, &Value)>> = HashMap::new();
    for (contact, at, lines) in &orders {
        by_contact
            .entry(*contact)
            .or_default()
            .push((*at, &lines.0));
    }
    let mut per: BTreeMap<Option<i64>, ProductAnalytics> = BTreeMap::new();
    for (product, n) in active {
        per.entry(product).or_default().active_subscriptions += n;
    }
    for (_, contact, variant, product, at, clicked) in &notified {
        let p = per.entry(*product).or_default();
        p.notifications_sent += 1;
        p.clicked += i64::from(*clicked);
        let revenue: Vec<i64> = by_contact
            .get(contact)
            .into_iter()
            .flatten()
            .filter(|(t, _)| *t >= *at && *t < at + window)
            .filter_map(|(_, lines)| variant_revenue_cents(lines, *variant))
            .collect();
        if !revenue.is_empty() {
            p.converted += 1;
            p.revenue_cents += revenue.iter().sum::<i64>();
        }
    }
    let mut overall = ProductAnalytics::default();
    let mut products = Vec::with_capacity(per.len());
    for (product, mut p) in per {
        p.product_id = product;
        p.click_rate = rate(p.clicked, p.notifications_sent);
        p.conversion_rate = rate(p.converted, p.notifications_sent);
        overall.active_subscriptions += p.active_subscriptions;
        overall.notifications_sent += p.notifications_sent;
        overall.clicked += p.clicked;
        overall.converted += p.converted;
        overall.revenue_cents += p.revenue_cents;
        products.push(p);
    }
    overall.click_rate = rate(overall.clicked, overall.notifications_sent);
    overall.conversion_rate = rate(overall.converted, overall.notifications_sent);
    Ok(Analytics {
        from_ms,
        to_ms,
        attribution_days: ATTRIBUTION_DAYS,
        overall,
        products,
    })
}
