//! Orders synced from Shopify.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// Order fields parsed from a payload. `None` fields keep what is stored
/// (partial payloads such as `orders/cancelled` carry only some).
#[derive(Debug, Clone, Default)]
pub struct OrderFields {
    pub shopify_order_id: i64,
    pub shopify_customer_id: Option<i64>,
    pub contact_id: Option<Uuid>,
    pub order_number: Option<i64>,
    pub total_price: Option<String>,
    pub total_price_cents: Option<i64>,
    pub currency: Option<String>,
    pub financial_status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub checkout_token: Option<String>,
    pub tags: Option<Vec<String>>,
    pub line_items: Option<Value>,
    pub cancelled_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub created_at: Option<i64>,
    /// Orders updates: the payload's `updated_at`, else the webhook's time.
    pub version: i64,
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: Uuid,
    pub shopify_order_id: i64,
    pub contact_id: Option<Uuid>,
    pub order_number: Option<i64>,
    pub total_price: Option<String>,
    pub currency: Option<String>,
    pub financial_status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub line_items: Value,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancel_reason: Option<String>,
    pub shipped_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Row = (
    Uuid,
    i64,
    Option<Uuid>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Json<Value>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

macro_rules! columns {
    () => {
        "id, shopify_order_id, contact_id, order_number, total_price, currency, financial_status, fulfillment_status,
         line_items, cancelled_at, cancel_reason, shipped_at, shopify_created_at"
    };
}

fn to_order(r: Row) -> Order {
    Order {
        id: r.0,
        shopify_order_id: r.1,
        contact_id: r.2,
        order_number: r.3,
        total_price: r.4,
        currency: r.5,
        financial_status: r.6,
        fulfillment_status: r.7,
        line_items: r.8.0,
        cancelled_at: r.9.map(from_ms),
        cancel_reason: r.10,
        shipped_at: r.11.map(from_ms),
        created_at: r.12.map(from_ms),
    }
}

pub async fn by_shopify_id(
    tx: &mut TenantTx,
    id: i64,
) -> Result<Option<(Order, Option<i64>, bool)>, StoreError> {
    let row: Option<(Uuid, Option<i64>, Option<i64>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shopify_updated_at, deleted_at FROM orders WHERE shopify_order_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some((uuid, version, deleted)) = row else {
        return Ok(None);
    };
    Ok(get(tx, uuid)
        .await?
        .map(|o| (o, version, deleted.is_some())))
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Order>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_order))
}

/// Result of an upsert.
#[derive(Debug)]
pub enum Upserted {
    Created(Box<Order>),
    Updated {
        before: Box<Order>,
        after: Box<Order>,
    },
    Skipped,
}

/// Creates or updates an order; stale versions are skipped.
pub async fn upsert(
    tx: &mut TenantTx,
    f: &OrderFields,
    now_ms: i64,
) -> Result<Upserted, StoreError> {
    let existing = by_shopify_id(tx, f.shopify_order_id).await?;
    if let Some((o, version, deleted)) = &existing {
        if *deleted {
            return Ok(Upserted::Skipped);
        }
        if version.is_some_and(|v| v > f.version) {
            // Older than what is stored: it may not overwrite, but it may
            // fill what newer partial payloads (e.g. orders/updated without
            // totals) left empty.
            fill_gaps(tx, o.id, f).await?;
            if let Some(filled) = get(tx, o.id).await?
                && lines_changed(o, &filled)
            {
                write_lines(tx, &filled).await?;
            }
            return Ok(Upserted::Skipped);
        }
    }
    let id = existing
        .as_ref()
        .map(|(o, _, _)| o.id)
        .unwrap_or_else(Uuid::now_v7);
    if existing.is_none() {
        on_tx!(tx.tx(), |c| {
            sqlx::query("INSERT INTO orders (id, shopify_order_id, payload, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(id).bind(f.shopify_order_id).bind(Json(&f.payload)).bind(now_ms)
                .execute(&mut *c).await?.rows_affected()
        });
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE orders SET
                contact_id = COALESCE($1, contact_id), shopify_customer_id = COALESCE($2, shopify_customer_id),
                order_number = COALESCE($3, order_number), total_price = COALESCE($4, total_price),
                total_price_cents = COALESCE($5, total_price_cents), currency = COALESCE($6, currency),
                financial_status = COALESCE($7, financial_status), fulfillment_status = COALESCE($8, fulfillment_status),
                checkout_token = COALESCE($9, checkout_token), tags = COALESCE($10, tags), line_items = COALESCE($11, line_items),
                cancelled_at = COALESCE($12, cancelled_at), cancel_reason = COALESCE($13, cancel_reason),
                shopify_created_at = COALESCE($14, shopify_created_at), shopify_updated_at = $15, payload = $16, updated_at = $17
             WHERE id = $18",
        )
        .bind(f.contact_id).bind(f.shopify_customer_id).bind(f.order_number).bind(&f.total_price)
        .bind(f.total_price_cents).bind(&f.currency).bind(&f.financial_status).bind(&f.fulfillment_status)
        .bind(&f.checkout_token).bind(f.tags.as_ref().map(Json)).bind(f.line_items.as_ref().map(Json))
        .bind(f.cancelled_at).bind(&f.cancel_reason).bind(f.created_at).bind(f.version).bind(Json(&f.payload))
        .bind(now_ms).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    let after = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    // The derived lines are rewritten only when what they hold changed.
    if existing
        .as_ref()
        .is_none_or(|(before, _, _)| lines_changed(before, &after))
    {
        write_lines(tx, &after).await?;
    }
    Ok(match existing {
        Some((before, _, _)) => Upserted::Updated {
            before: Box::new(before),
            after: Box::new(after),
        },
        None => Upserted::Created(Box::new(after)),
    })
}

/// One line item as the audience rules read it (`order_lines`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    /// 0-based position in `line_items`.
    pub line_no: i64,
    /// The line's `product_id` when it is a JSON integer.
    pub shopify_product_id: Option<i64>,
    /// The line's `vendor` when it is a JSON string, lower-cased (as the
    /// rules' vendors are).
    pub vendor: Option<String>,
}

/// The lines of a `line_items` value (anything but an array has none). Must
/// agree with the backfill of migration 0008 (`order_lines`).
pub fn lines_of(line_items: &Value) -> Vec<OrderLine> {
    line_items
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, item)| OrderLine {
            line_no: i as i64,
            shopify_product_id: item.get("product_id").and_then(Value::as_i64),
            vendor: item
                .get("vendor")
                .and_then(Value::as_str)
                .map(str::to_lowercase),
        })
        .collect()
}

/// Whether `order_lines` must be rewritten between two states of an order.
fn lines_changed(before: &Order, after: &Order) -> bool {
    before.contact_id != after.contact_id
        || before.cancelled_at.is_some() != after.cancelled_at.is_some()
        || before.line_items != after.line_items
}

/// Replaces the order's rows in `order_lines` with what its current state
/// holds: its lines while it counts (a contact, not cancelled; deleted
/// orders never reach here), none otherwise. Every write of `orders` that
/// changes the contact, the cancellation or the line items calls this in
/// its transaction.
async fn write_lines(tx: &mut TenantTx, order: &Order) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM order_lines WHERE order_id = $1")
            .bind(order.id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    match order.contact_id {
        Some(contact) if order.cancelled_at.is_none() => {
            let lines = lines_of(&order.line_items);
            let rows: Vec<(Uuid, Uuid, &OrderLine)> =
                lines.iter().map(|l| (order.id, contact, l)).collect();
            insert_lines(tx, &rows).await
        }
        _ => Ok(()),
    }
}

/// Orders that arrived before their customer (webhooks come out of order)
/// have no contact. When the customer's contact appears they become its
/// own, lines included; the caller refreshes the contact's order figures.
/// Returns how many orders were adopted.
pub async fn adopt_orphans(
    tx: &mut TenantTx,
    contact: Uuid,
    shopify_customer_id: i64,
) -> Result<usize, StoreError> {
    let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "UPDATE orders SET contact_id = $1
             WHERE shopify_customer_id = $2 AND contact_id IS NULL AND deleted_at IS NULL
             RETURNING id",
        )
        .bind(contact)
        .bind(shopify_customer_id)
        .fetch_all(&mut *c)
        .await?
    });
    for id in &ids {
        if let Some(order) = get(tx, *id).await? {
            write_lines(tx, &order).await?;
        }
    }
    Ok(ids.len())
}

/// Inserts `(order, contact, line)` rows into `order_lines`, many per
/// statement (also the bulk seeder's path).
pub(crate) async fn insert_lines(
    tx: &mut TenantTx,
    rows: &[(Uuid, Uuid, &OrderLine)],
) -> Result<(), StoreError> {
    for chunk in crate::db::pow2_chunks(rows.len()) {
        let rows = &rows[chunk];
        on_tx!(tx.tx(), |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_lines (order_id, line_no, contact_id, shopify_product_id, vendor) ",
            );
            qb.push_values(rows, |mut row, (order, contact, l)| {
                row.push_bind(*order)
                    .push_bind(l.line_no)
                    .push_bind(*contact)
                    .push_bind(l.shopify_product_id)
                    .push_bind(l.vendor.as_deref());
            });
            qb.build().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// The rows `order_lines` holds for an order, by position.
pub async fn stored_lines(
    tx: &mut TenantTx,
    order: Uuid,
) -> Result<Vec<(Uuid, OrderLine)>, StoreError> {
    let rows: Vec<(i64, Uuid, Option<i64>, Option<String>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT line_no, contact_id, shopify_product_id, vendor FROM order_lines
             WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(order)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(line_no, contact, shopify_product_id, vendor)| {
            (
                contact,
                OrderLine {
                    line_no,
                    shopify_product_id,
                    vendor,
                },
            )
        })
        .collect())
}

async fn fill_gaps(tx: &mut TenantTx, id: Uuid, f: &OrderFields) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE orders SET
                contact_id = COALESCE(contact_id, $1), shopify_customer_id = COALESCE(shopify_customer_id, $2),
                order_number = COALESCE(order_number, $3), total_price = COALESCE(total_price, $4),
                total_price_cents = CASE WHEN total_price IS NULL THEN COALESCE($5, total_price_cents) ELSE total_price_cents END,
                currency = COALESCE(currency, $6), financial_status = COALESCE(financial_status, $7),
                checkout_token = COALESCE(checkout_token, $8), line_items = CASE WHEN line_items = $9 THEN COALESCE($10, line_items) ELSE line_items END,
                shopify_created_at = COALESCE(shopify_created_at, $11)
             WHERE id = $12",
        )
        .bind(f.contact_id).bind(f.shopify_customer_id).bind(f.order_number).bind(&f.total_price)
        .bind(f.total_price_cents).bind(&f.currency).bind(&f.financial_status).bind(&f.checkout_token)
        .bind(Json(serde_json::json!([]))).bind(f.line_items.as_ref().map(Json)).bind(f.created_at).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}

/// Records the first shipment; `true` only the first time (OrderShipped once).
pub async fn mark_shipped(tx: &mut TenantTx, id: Uuid, at: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE orders SET shipped_at = $1 WHERE id = $2 AND shipped_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

pub async fn list(
    tx: &mut TenantTx,
    contact: Option<Uuid>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM orders
            WHERE deleted_at IS NULL AND ($1 IS NULL OR contact_id = $1) AND ($2 IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3"
        ))
        .bind(contact)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_order).collect())
}

/// Orders of a contact or listed by Shopify id: personal data removed from
/// the stored payload (totals and line items stay for aggregates).
pub async fn redact(
    tx: &mut TenantTx,
    contact: Option<Uuid>,
    shopify_ids: &[i64],
) -> Result<(), StoreError> {
    let marker = Json(serde_json::json!({"redacted": true}));
    if let Some(contact) = contact {
        on_tx!(tx.tx(), |c| {
            sqlx::query("UPDATE orders SET payload = $1 WHERE contact_id = $2")
                .bind(&marker)
                .bind(contact)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    for id in shopify_ids {
        on_tx!(tx.tx(), |c| {
            sqlx::query("UPDATE orders SET payload = $1 WHERE shopify_order_id = $2")
                .bind(&marker)
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}

/// The contact's orders with the given checkout token exist?
pub async fn exists_for_checkout_token(tx: &mut TenantTx, token: &str) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE checkout_token = $1")
            .bind(token)
            .fetch_one(&mut *c)
            .await?
    });
    Ok(n > 0)
}

/// The contact's most recent order (not deleted; cancelled ones count, as
/// for `contacts.last_order_at`): its id and when Shopify says it was
/// placed.
pub async fn last_of_contact(
    tx: &mut TenantTx,
    contact_id: Uuid,
) -> Result<Option<(Uuid, chrono::DateTime<chrono::Utc>)>, StoreError> {
    let row: Option<(Uuid, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shopify_created_at FROM orders
             WHERE contact_id = $1 AND deleted_at IS NULL AND shopify_created_at IS NOT NULL
             ORDER BY shopify_created_at DESC LIMIT 1",
        )
        .bind(contact_id)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(|(id, at)| (id, from_ms(at))))
}

/// The tags of the products in `line_items` (by their `product_id`), lower
/// case, without repeats. Products not synced (yet) have none.
pub async fn product_tags(
    tx: &mut TenantTx,
    line_items: &Value,
) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<i64> = lines_of(line_items)
        .into_iter()
        .filter_map(|l| l.shopify_product_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT tags FROM products WHERE shopify_product_id IN ({})",
        marks.join(", ")
    );
    let rows: Vec<(Json<Vec<String>>,)> = on_tx!(tx.tx(), |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
        for id in &ids {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c).await?
    });
    let mut tags: Vec<String> = rows
        .into_iter()
        .flat_map(|r| r.0.0)
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_take_integer_products_and_string_vendors_lower_cased() {
        let items = json!([
            {"vendor": "NikeMX", "product_id": 555},
            {"vendor": 5, "product_id": "7"},
            "not an object",
            {"vendor": "ÉCLAT", "product_id": 1.5},
            {"product_id": 12345678901234567890u64},
            {"product_id": i64::MIN}
        ]);
        let got: Vec<(i64, Option<i64>, Option<String>)> = lines_of(&items)
            .into_iter()
            .map(|l| (l.line_no, l.shopify_product_id, l.vendor))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Some(555), Some("nikemx".into())),
                (1, None, None),
                (2, None, None),
                (3, None, Some("éclat".into())),
                (4, None, None),
                (5, Some(i64::MIN), None),
            ]
        );
        assert!(lines_of(&json!({"vendor": "x"})).is_empty());
    }
}
