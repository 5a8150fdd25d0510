//! A campaign's recipients: inserted at send time from the resolved
//! audience (once per contact and per phone), handed to the send path in
//! batches, then kept in step with their messages by the monitor.

use chrono::{DateTime, Utc};
use galantis_core::campaign::RecipientStatus;
use serde::Serialize;
use uuid::Uuid;

use super::Counts;
use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::tenant::audience::Recipient;

/// Adds resolved recipients; one already there (same contact or same
/// phone) is left alone. Returns how many were added.
pub async fn insert(
    tx: &mut TenantTx,
    campaign: Uuid,
    rs: &[Recipient],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut added = 0;
    for r in rs {
        added += on_tx!(tx.tx(), |c| {
            sqlx::query(
                "INSERT INTO campaign_recipients (id, campaign_id, contact_id, phone, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'QUEUED', $5, $5) ON CONFLICT DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(campaign)
            .bind(r.contact_id)
            .bind(&r.phone)
            .bind(now_ms)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    Ok(added)
}

/// A recipient whose message is still to be queued.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub contact_id: Uuid,
}

/// The next `limit` recipients without a message, in id order.
pub async fn undispatched(
    tx: &mut TenantTx,
    campaign: Uuid,
    limit: u32,
) -> Result<Vec<Pending>, StoreError> {
    let rows: Vec<(Uuid, Uuid)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, contact_id FROM campaign_recipients
             WHERE campaign_id = $1 AND status = 'QUEUED' AND message_id IS NULL
             ORDER BY id LIMIT $2",
        )
        .bind(campaign)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(id, contact_id)| Pending { id, contact_id })
        .collect())
}

/// The recipient's message is queued.
pub async fn set_message(
    tx: &mut TenantTx,
    id: Uuid,
    message: Uuid,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaign_recipients SET message_id = $2, queued_at = $3, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(message)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The recipients' messages are queued: `(recipient, message)` pairs, one
/// statement per 250 pairs instead of one per recipient.
pub async fn set_messages(
    tx: &mut TenantTx,
    pairs: &[(Uuid, Uuid)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in pairs.chunks(250) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH v(rid, mid) AS (VALUES {values})
             UPDATE campaign_recipients SET message_id = v.mid, queued_at = $1, updated_at = $1
             FROM v WHERE campaign_recipients.id = v.rid"
        );
        on_tx!(tx.tx(), |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(now_ms);
            for (rid, mid) in chunk {
                q = q.bind(*rid).bind(*mid);
            }
            q.execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// The send path refused the recipient: `SKIPPED` (consent) or `FAILED`,
/// with the code and the reason.
pub async fn refuse(
    tx: &mut TenantTx,
    id: Uuid,
    status: RecipientStatus,
    code: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaign_recipients SET status = $2, error_code = $3, error_reason = $4,
                failed_at = CASE WHEN $2 = 'FAILED' THEN $5 ELSE failed_at END, updated_at = $5
             WHERE id = $1 AND message_id IS NULL",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(code)
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// A message's status as a recipient's.
const MAPPED: &str = "CASE m.status WHEN 'SENT' THEN 'SENT' WHEN 'DELIVERED' THEN 'DELIVERED'
    WHEN 'READ' THEN 'READ' WHEN 'PLAYED' THEN 'READ' WHEN 'FAILED' THEN 'FAILED' ELSE 'QUEUED' END";

/// Which recipients [`sync_from_messages`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncScope {
    /// Every recipient with a message.
    All,
    /// Only those still `QUEUED` or `SENT` (through the status index): what
    /// dispatch progress and settling depend on, without reading every
    /// recipient of a large campaign on each tick.
    InFlight,
}

/// Brings recipients up to date with their messages (status, error and
/// timestamps): those that differ, compared by value (never by update
/// time, which a concurrent status webhook may have stamped earlier than
/// it committed). Returns how many rows changed.
pub async fn sync_from_messages(
    tx: &mut TenantTx,
    campaign: Uuid,
    scope: SyncScope,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let which = match scope {
        SyncScope::All => "status <> 'SKIPPED'",
        SyncScope::InFlight => "status IN ('QUEUED', 'SENT')",
    };
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE campaign_recipients SET
                (status, error_code, error_reason, sent_at, delivered_at, read_at, failed_at) = (
                    SELECT {MAPPED}, CAST(m.error_code AS TEXT), m.error_reason,
                           m.sent_at, m.delivered_at, m.read_at, m.failed_at
                    FROM messages m WHERE m.id = campaign_recipients.message_id),
                updated_at = $2
             WHERE campaign_id = $1 AND message_id IS NOT NULL AND {which} AND EXISTS (
                SELECT 1 FROM messages m WHERE m.id = campaign_recipients.message_id
                  AND ({MAPPED} <> campaign_recipients.status
                       OR COALESCE(m.sent_at, -1) <> COALESCE(campaign_recipients.sent_at, -1)
                       OR COALESCE(m.delivered_at, -1) <> COALESCE(campaign_recipients.delivered_at, -1)
                       OR COALESCE(m.read_at, -1) <> COALESCE(campaign_recipients.read_at, -1)
                       OR COALESCE(m.failed_at, -1) <> COALESCE(campaign_recipients.failed_at, -1)))"
        )))
        .bind(campaign)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n)
}

/// Why recipients left out by a cancel are `SKIPPED`.
pub const CANCELLED_CODE: &str = "campaign_cancelled";
const CANCELLED_REASON: &str = "the campaign was cancelled before this message was sent";

/// A cancel: every recipient not yet handed to Meta is `SKIPPED` with
/// [`CANCELLED_CODE`], and their queued messages are withdrawn (`FAILED`,
/// nothing charged) so their send jobs complete without calling Meta. A
/// message whose call already started (`send_state` set) is left to finish:
/// the send job claims a message only while it is `QUEUED`, so each message
/// is either withdrawn here or sent, never both. Returns the recipients
/// skipped.
pub async fn withdraw_unsent(
    tx: &mut TenantTx,
    campaign: Uuid,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET status = 'FAILED', send_state = 'rejected', error_code = NULL,
                 error_reason = $2, failed_at = $3, updated_at = $3
             WHERE id IN (SELECT message_id FROM campaign_recipients
                          WHERE campaign_id = $1 AND status = 'QUEUED' AND message_id IS NOT NULL)
               AND status = 'QUEUED' AND wamid IS NULL AND send_state IS NULL",
        )
        .bind(campaign)
        .bind(format!("{CANCELLED_CODE}: {CANCELLED_REASON}"))
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "UPDATE campaign_recipients SET status = 'SKIPPED', error_code = $2, error_reason = $3,
                 updated_at = $4
             WHERE campaign_id = $1 AND status = 'QUEUED' AND (message_id IS NULL OR EXISTS (
                 SELECT 1 FROM messages m WHERE m.id = campaign_recipients.message_id
                   AND m.status = 'FAILED' AND m.wamid IS NULL AND m.error_reason = $5))",
        )
        .bind(campaign)
        .bind(CANCELLED_CODE)
        .bind(CANCELLED_REASON)
        .bind(now_ms)
        .bind(format!("{CANCELLED_CODE}: {CANCELLED_REASON}"))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n)
}

/// What the recipients add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub counts: Counts,
    /// Not yet handed to the send path.
    pub undispatched: i64,
    /// Queued but not yet accepted by Meta.
    pub in_flight: i64,
    /// Accepted, not yet delivered, read or failed.
    pub awaiting_status: i64,
}

pub async fn tally(tx: &mut TenantTx, campaign: Uuid) -> Result<Tally, StoreError> {
    let r: (i64, i64, i64, i64, i64, i64, i64, i64, i64) = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT COUNT(*),
                COUNT(CASE WHEN status IN ('SENT', 'DELIVERED', 'READ') THEN 1 END),
                COUNT(CASE WHEN status IN ('DELIVERED', 'READ') THEN 1 END),
                COUNT(CASE WHEN status = 'READ' THEN 1 END),
                COUNT(CASE WHEN status = 'FAILED' THEN 1 END),
                COUNT(CASE WHEN status = 'SKIPPED' THEN 1 END),
                COUNT(CASE WHEN status = 'QUEUED' AND message_id IS NULL THEN 1 END),
                COUNT(CASE WHEN status = 'QUEUED' AND message_id IS NOT NULL THEN 1 END),
                COUNT(CASE WHEN status = 'SENT' THEN 1 END)
             FROM campaign_recipients WHERE campaign_id = $1",
        )
        .bind(campaign)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(Tally {
        counts: Counts {
            recipients: r.0,
            sent: r.1,
            delivered: r.2,
            read: r.3,
            failed: r.4,
            skipped: r.5,
        },
        undispatched: r.6,
        in_flight: r.7,
        awaiting_status: r.8,
    })
}

/// One recipient as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientRow {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub phone: String,
    pub status: String,
    pub message_id: Option<Uuid>,
    pub error_code: Option<String>,
    pub error_reason: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    contact_id: Uuid,
    phone: String,
    status: String,
    message_id: Option<Uuid>,
    error_code: Option<String>,
    error_reason: Option<String>,
    queued_at: Option<i64>,
    sent_at: Option<i64>,
    delivered_at: Option<i64>,
    read_at: Option<i64>,
    failed_at: Option<i64>,
}

/// Recipients in id order after `after`, optionally of one status.
pub async fn list(
    tx: &mut TenantTx,
    campaign: Uuid,
    status: Option<RecipientStatus>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<RecipientRow>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, contact_id, phone, status, message_id, error_code, error_reason, queued_at,
                    sent_at, delivered_at, read_at, failed_at
             FROM campaign_recipients
             WHERE campaign_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(campaign)
        .bind(status.map(RecipientStatus::as_str))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| RecipientRow {
            id: r.id,
            contact_id: r.contact_id,
            phone: r.phone,
            status: r.status,
            message_id: r.message_id,
            error_code: r.error_code,
            error_reason: r.error_reason,
            queued_at: r.queued_at.map(from_ms),
            sent_at: r.sent_at.map(from_ms),
            delivered_at: r.delivered_at.map(from_ms),
            read_at: r.read_at.map(from_ms),
            failed_at: r.failed_at.map(from_ms),
        })
        .collect())
}

/// Failed and skipped recipients grouped by error code, most frequent first.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailureGroup {
    pub status: String,
    pub error_code: Option<String>,
    /// One of the group's reasons (they share the code).
    pub reason: Option<String>,
    pub count: i64,
}

pub async fn failures_by_reason(
    tx: &mut TenantTx,
    campaign: Uuid,
) -> Result<Vec<FailureGroup>, StoreError> {
    let rows: Vec<(String, Option<String>, Option<String>, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT status, error_code, MIN(error_reason), COUNT(*) FROM campaign_recipients
             WHERE campaign_id = $1 AND status IN ('FAILED', 'SKIPPED')
             GROUP BY status, error_code ORDER BY COUNT(*) DESC, error_code",
        )
        .bind(campaign)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(status, error_code, reason, count)| FailureGroup {
            status,
            error_code,
            reason,
            count,
        })
        .collect())
}

/// The campaign's messages queued but not yet handed to Meta (the
/// dispatcher's lead over the send jobs). A message Meta accepted stays
/// `QUEUED` until its `sent` status webhook is processed: it is not
/// counted (`send_state = 'accepted'`), or a webhook backlog would look
/// like a full lead and starve the send jobs.
pub async fn awaiting_send(tx: &mut TenantTx, campaign: Uuid) -> Result<i64, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM campaign_recipients r JOIN messages m ON m.id = r.message_id
             WHERE r.campaign_id = $1 AND r.status = 'QUEUED' AND m.status = 'QUEUED'
               AND m.wamid IS NULL AND (m.send_state IS NULL OR m.send_state = 'sending')",
        )
        .bind(campaign)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n)
}
