//! Campaign analytics over time and engagement: per-interval buckets of
//! sends, deliveries, reads, failures, replies and button clicks, and the
//! replies and clicks attributed to the campaign — an inbound message (or
//! a button press) from a recipient within [`ATTRIBUTION_WINDOW_MS`] after
//! their campaign message was sent. Each recipient counts once per kind
//! (the first reply, the first click), so a chatty customer does not
//! inflate the rates.

use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// Replies and clicks count for the campaign within 72 h of its message.
pub const ATTRIBUTION_WINDOW_MS: i64 = 72 * 3600 * 1000;

/// When the recipient's campaign message went out (a status webhook may
/// skip `sent` and report `delivered` or `read` first).
const SENT: &str = "COALESCE(r.sent_at, r.delivered_at, r.read_at)";

/// Inbound kinds that are a button press: a template quick-reply
/// (`button`) or an interactive reply.
const CLICK_KINDS: &str = "('button', 'interactive')";

/// Each recipient's first inbound message (and first button press) within
/// the attribution window: `(recipient, first reply at, first click at)`.
fn first_engagement() -> String {
    format!(
        "SELECT r.id AS rid,
                MIN(m.created_at) AS replied_at,
                MIN(CASE WHEN m.kind IN {CLICK_KINDS} THEN m.created_at END) AS clicked_at
         FROM campaign_recipients r
         JOIN messages m ON m.contact_id = r.contact_id AND m.direction = 'inbound'
              AND m.created_at > {SENT} AND m.created_at <= {SENT} + $2
         WHERE r.campaign_id = $1 AND {SENT} IS NOT NULL
         GROUP BY r.id"
    )
}

/// Recipients who replied (any inbound message) and who pressed a button,
/// within the window after their campaign message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Engagement {
    pub replied: i64,
    pub clicked: i64,
}

pub async fn engagement(tx: &mut TenantTx, campaign: Uuid) -> Result<Engagement, StoreError> {
    let (replied, clicked): (i64, i64) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(e.replied_at), COUNT(e.clicked_at) FROM ({}) e",
            first_engagement()
        )))
        .bind(campaign)
        .bind(ATTRIBUTION_WINDOW_MS)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(Engagement { replied, clicked })
}

/// One interval's counts (events whose time falls in `[at, at + bucket)`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub at: chrono::DateTime<chrono::Utc>,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub replied: i64,
    pub clicked: i64,
}

/// The campaign's events in buckets of `bucket_ms` (aligned on the Unix
/// epoch, so days are UTC days), oldest first; empty intervals are left out.
pub async fn timeline(
    tx: &mut TenantTx,
    campaign: Uuid,
    bucket_ms: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let per = |col: &str| {
        format!(
            "SELECT '{col}' AS k, ({col}_at / $3) * $3 AS b, COUNT(*) AS n
             FROM campaign_recipients WHERE campaign_id = $1 AND {col}_at IS NOT NULL GROUP BY 2"
        )
    };
    let engaged = |col: &str| {
        format!(
            "SELECT '{col}' AS k, ({col}_at / $3) * $3 AS b, COUNT(*) AS n
             FROM ({}) e WHERE {col}_at IS NOT NULL GROUP BY 2",
            first_engagement()
        )
    };
    let sql = [
        per("sent"),
        per("delivered"),
        per("read"),
        per("failed"),
        engaged("replied"),
        engaged("clicked"),
    ]
    .join(" UNION ALL ");
    let rows: Vec<(String, i64, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT k, b, n FROM ({sql}) t ORDER BY b"
        )))
        .bind(campaign)
        .bind(ATTRIBUTION_WINDOW_MS)
        .bind(bucket_ms)
        .fetch_all(&mut *c)
        .await?
    });
    let mut out: Vec<Bucket> = Vec::new();
    for (k, b, n) in rows {
        if out.last().is_none_or(|l| l.at.timestamp_millis() != b) {
            out.push(Bucket {
                at: from_ms(b),
                ..Bucket::default()
            });
        }
        let last = out.last_mut().expect("pushed above");
        match k.as_str() {
            "sent" => last.sent = n,
            "delivered" => last.delivered = n,
            "read" => last.read = n,
            "failed" => last.failed = n,
            "replied" => last.replied = n,
            _ => last.clicked = n,
        }
    }
    Ok(out)
}
