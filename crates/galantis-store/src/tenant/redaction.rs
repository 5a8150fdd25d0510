//! Replacing stored JSON payloads that hold personal data with a marker:
//! shared by the tables that keep raw payloads (webhook and domain events).

use sqlx::types::Json;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// Tables whose `payload` column may hold personal data.
#[derive(Clone, Copy)]
pub(crate) enum PayloadTable {
    WebhookEvents,
    DomainEvents,
}

macro_rules! by_table {
    ($table:expr, $fmt:literal) => {
        match $table {
            PayloadTable::WebhookEvents => format!($fmt, "webhook_events"),
            PayloadTable::DomainEvents => format!($fmt, "domain_events"),
        }
    };
}

/// What a scrubbed payload becomes.
fn marker() -> serde_json::Value {
    serde_json::json!({"redacted": true})
}

/// Needles shorter than this are not matched (they would match nearly
/// everything).
const MIN_NEEDLE: usize = 3;

/// [`scrub_mentions`] and [`scrub_all`] for payloads not written yet (the
/// events a transaction records are written at its commit): `needles`
/// `None` scrubs every one. Returns how many were scrubbed.
pub(crate) fn scrub_pending<'a>(
    payloads: impl Iterator<Item = &'a mut serde_json::Value>,
    needles: Option<&[String]>,
) -> u64 {
    let mut n = 0;
    for payload in payloads {
        let hit = match needles {
            None => true,
            Some(needles) => {
                let text = payload.to_string();
                needles
                    .iter()
                    .any(|s| s.len() >= MIN_NEEDLE && text.contains(s.as_str()))
            }
        };
        if hit {
            *payload = marker();
            n += 1;
        }
    }
    n
}

/// Payloads mentioning any of `needles` (three characters or more, matched
/// literally) become `{"redacted": true}`.
pub(crate) async fn scrub_mentions(
    tx: &mut TenantTx,
    table: PayloadTable,
    needles: &[String],
) -> Result<u64, StoreError> {
    let sqlite_sql = by_table!(
        table,
        "UPDATE {} SET payload = '{{\"redacted\":true}}' WHERE payload LIKE $1 ESCAPE '\\'"
    );
    let pg_sql = by_table!(
        table,
        "UPDATE {} SET payload = '{{\"redacted\":true}}'::jsonb WHERE payload::text LIKE $1 ESCAPE '\\'"
    );
    let mut n = 0;
    for needle in needles.iter().filter(|s| s.len() >= MIN_NEEDLE) {
        let pattern = crate::like::like_contains(needle);
        n += on_tx!(
            tx.tx(),
            sqlite | c | {
                sqlx::query(sqlx::AssertSqlSafe(sqlite_sql.clone()))
                    .bind(&pattern)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            },
            postgres | c | {
                sqlx::query(sqlx::AssertSqlSafe(pg_sql.clone()))
                    .bind(&pattern)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            }
        );
    }
    Ok(n)
}

/// Every payload of the table becomes the marker (shop erasure).
pub(crate) async fn scrub_all(tx: &mut TenantTx, table: PayloadTable) -> Result<u64, StoreError> {
    let sql = by_table!(table, "UPDATE {} SET payload = $1");
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(Json(marker()))
            .execute(&mut *c)
            .await?
            .rows_affected()
    }))
}
