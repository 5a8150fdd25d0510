//! Campaigns and their recipients (migration 0018). Status changes are
//! conditional updates (`… WHERE status IN (…)`): two schedulers, two
//! clicks or a pause racing the dispatcher change a campaign once.
//! [`recipients`] holds the per-recipient rows the dispatcher and the
//! monitor work through.

pub mod analytics;
pub mod recipients;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use galantis_core::campaign::{
    AudienceSpec, CampaignStatus, CampaignType, SendWindow, SendWindowSpec, VariableSource,
};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub cancel_reason: Option<String>,
    pub template_id: Uuid,
    pub variables_mapping: BTreeMap<String, VariableSource>,
    pub audience: AudienceSpec,
    pub phone_number_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub send_window: Option<SendWindowSpec>,
    #[serde(rename = "type")]
    pub campaign_type: Option<CampaignType>,
    pub launched_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    #[serde(skip)]
    pub resolve_cursor: Option<Uuid>,
    #[serde(skip)]
    pub resolved: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The tallies stored on the campaign (the monitor writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub recipients: i64,
    /// Accepted by Meta (sent, delivered or read).
    pub sent: i64,
    /// Delivered or read.
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl Campaign {
    pub fn window(&self) -> Option<SendWindow> {
        self.send_window
            .as_ref()
            .and_then(|s| SendWindow::parse(s).ok())
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    status: String,
    cancel_reason: Option<String>,
    template_id: Uuid,
    variables_mapping: Json<BTreeMap<String, VariableSource>>,
    audience: Json<AudienceSpec>,
    phone_number_id: Option<String>,
    scheduled_at: Option<i64>,
    send_window: Option<Json<SendWindowSpec>>,
    campaign_type: Option<String>,
    launched_at: Option<i64>,
    resolve_cursor: Option<Uuid>,
    resolved_at: Option<i64>,
    dispatched_at: Option<i64>,
    completed_at: Option<i64>,
    recipients_total: i64,
    sent_count: i64,
    delivered_count: i64,
    read_count: i64,
    failed_count: i64,
    skipped_count: i64,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, name, status, cancel_reason, template_id, variables_mapping, audience,
    phone_number_id, scheduled_at, send_window, campaign_type, launched_at, resolve_cursor,
    resolved_at, dispatched_at, completed_at, recipients_total, sent_count, delivered_count,
    read_count, failed_count, skipped_count, created_at, updated_at";

fn decode<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|e: String| StoreError::Database(sqlx::Error::Decode(e.into())))
}

fn to_campaign(r: Row) -> Result<Campaign, StoreError> {
    Ok(Campaign {
        id: r.id,
        name: r.name,
        status: decode(&r.status)?,
        cancel_reason: r.cancel_reason,
        template_id: r.template_id,
        variables_mapping: r.variables_mapping.0,
        audience: r.audience.0,
        phone_number_id: r.phone_number_id,
        scheduled_at: r.scheduled_at.map(from_ms),
        send_window: r.send_window.map(|j| j.0),
        campaign_type: r.campaign_type.as_deref().map(decode).transpose()?,
        launched_at: r.launched_at.map(from_ms),
        dispatched_at: r.dispatched_at.map(from_ms),
        completed_at: r.completed_at.map(from_ms),
        counts: Counts {
            recipients: r.recipients_total,
            sent: r.sent_count,
            delivered: r.delivered_count,
            read: r.read_count,
            failed: r.failed_count,
            skipped: r.skipped_count,
        },
        resolve_cursor: r.resolve_cursor,
        resolved: r.resolved_at.is_some(),
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    })
}

/// The editable part of a campaign.
#[derive(Debug, Clone)]
pub struct Fields {
    pub name: String,
    pub template_id: Uuid,
    pub variables_mapping: BTreeMap<String, VariableSource>,
    pub audience: AudienceSpec,
    pub phone_number_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub send_window: Option<SendWindowSpec>,
    pub campaign_type: Option<CampaignType>,
}

impl From<&Campaign> for Fields {
    fn from(c: &Campaign) -> Self {
        Fields {
            name: c.name.clone(),
            template_id: c.template_id,
            variables_mapping: c.variables_mapping.clone(),
            audience: c.audience.clone(),
            phone_number_id: c.phone_number_id.clone(),
            scheduled_at: c.scheduled_at,
            send_window: c.send_window.clone(),
            campaign_type: c.campaign_type,
        }
    }
}

fn status_for(f: &Fields) -> CampaignStatus {
    if f.scheduled_at.is_some() {
        CampaignStatus::Scheduled
    } else {
        CampaignStatus::Draft
    }
}

pub async fn insert(tx: &mut TenantTx, f: &Fields, now_ms: i64) -> Result<Campaign, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO campaigns (id, name, status, template_id, variables_mapping, audience,
                phone_number_id, scheduled_at, send_window, campaign_type, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(id)
        .bind(&f.name)
        .bind(status_for(f).as_str())
        .bind(f.template_id)
        .bind(Json(&f.variables_mapping))
        .bind(Json(&f.audience))
        .bind(&f.phone_number_id)
        .bind(f.scheduled_at.map(|t| t.timestamp_millis()))
        .bind(f.send_window.as_ref().map(Json))
        .bind(f.campaign_type.map(CampaignType::as_str))
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Campaign>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM campaigns WHERE id = $1");
    let r: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    r.map(to_campaign).transpose()
}

/// Campaigns, newest first.
pub async fn list(
    tx: &mut TenantTx,
    status: Option<CampaignStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Campaign>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM campaigns WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR status = $2)
         ORDER BY id DESC LIMIT $3"
    );
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(before)
            .bind(status.map(CampaignStatus::as_str))
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
    });
    rows.into_iter().map(to_campaign).collect()
}

/// Writes the editable fields while the campaign is still editable
/// (`DRAFT`/`SCHEDULED`; its status follows `scheduled_at`). `false`: it
/// was not (any more).
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    f: &Fields,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaigns SET name = $2, status = $3, template_id = $4, variables_mapping = $5,
                audience = $6, phone_number_id = $7, scheduled_at = $8, send_window = $9,
                campaign_type = $10, updated_at = $11
             WHERE id = $1 AND status IN ('DRAFT', 'SCHEDULED')",
        )
        .bind(id)
        .bind(&f.name)
        .bind(status_for(f).as_str())
        .bind(f.template_id)
        .bind(Json(&f.variables_mapping))
        .bind(Json(&f.audience))
        .bind(&f.phone_number_id)
        .bind(f.scheduled_at.map(|t| t.timestamp_millis()))
        .bind(f.send_window.as_ref().map(Json))
        .bind(f.campaign_type.map(CampaignType::as_str))
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Deletes an editable campaign. `false`: none, or not editable.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM campaigns WHERE id = $1 AND status IN ('DRAFT', 'SCHEDULED')")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

fn in_list(from: &[CampaignStatus]) -> String {
    from.iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Moves the campaign to `to` if its status is one of `from` (and, with
/// `scheduled_at`, it is still scheduled for that moment). Sets
/// `launched_at` when `to` is `PENDING` for the first time, `completed_at`
/// on a final status, and the cancel reason. `true`: this call changed it.
pub async fn transition(
    tx: &mut TenantTx,
    id: Uuid,
    from: &[CampaignStatus],
    to: CampaignStatus,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // The statuses are our own constants: safe to inline.
    let sql = format!(
        "UPDATE campaigns SET status = $2, cancel_reason = COALESCE($3, cancel_reason),
            launched_at = CASE WHEN $2 = 'PENDING' THEN COALESCE(launched_at, $4) ELSE launched_at END,
            completed_at = CASE WHEN $5 THEN $4 ELSE completed_at END,
            updated_at = $4
         WHERE id = $1 AND status IN ({})",
        in_list(from)
    );
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(to.as_str())
            .bind(reason)
            .bind(now_ms)
            .bind(to.is_final())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Resolution progressed to `cursor` (the last contact id), and is over
/// when `done`.
pub async fn resolved_to(
    tx: &mut TenantTx,
    id: Uuid,
    cursor: Option<Uuid>,
    done: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaigns SET resolve_cursor = COALESCE($2, resolve_cursor),
                resolved_at = CASE WHEN $3 THEN COALESCE(resolved_at, $4) ELSE resolved_at END,
                recipients_total = (SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = $1),
                updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(cursor)
        .bind(done)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Every recipient has its message queued (or its refusal recorded).
pub async fn mark_dispatched(tx: &mut TenantTx, id: Uuid, now_ms: i64) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaigns SET dispatched_at = COALESCE(dispatched_at, $2), updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Stores the monitor's tallies.
pub async fn set_counts(
    tx: &mut TenantTx,
    id: Uuid,
    k: &Counts,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaigns SET recipients_total = $2, sent_count = $3, delivered_count = $4,
                read_count = $5, failed_count = $6, skipped_count = $7, updated_at = $8
             WHERE id = $1",
        )
        .bind(id)
        .bind(k.recipients)
        .bind(k.sent)
        .bind(k.delivered)
        .bind(k.read)
        .bind(k.failed)
        .bind(k.skipped)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Scheduled campaigns due at or before `until` (the scheduler's tick).
pub async fn due(tx: &mut TenantTx, until_ms: i64, limit: u32) -> Result<Vec<Uuid>, StoreError> {
    let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT id FROM campaigns WHERE status = 'SCHEDULED' AND scheduled_at <= $1 ORDER BY scheduled_at LIMIT $2",
        )
        .bind(until_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(ids)
}

/// Records the type derived from the template at launch.
pub async fn set_type(
    tx: &mut TenantTx,
    id: Uuid,
    t: Option<CampaignType>,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE campaigns SET campaign_type = COALESCE($2, campaign_type) WHERE id = $1",
        )
        .bind(id)
        .bind(t.map(CampaignType::as_str))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}
