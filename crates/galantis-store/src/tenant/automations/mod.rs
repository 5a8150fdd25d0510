//! Automations: definitions and their flow versions (this file), runs
//! ([`runs`]: enrolment, state, waiting indexes, caps) and activity
//! ([`activity`]: node-visit transitions, blocked enrolments, stats).
//!
//! Flows are validated in `galantis_core::automation`; this module stores
//! the JSON as given with the trigger copied into indexed columns. Editing
//! the flow of an automation that is not `INACTIVE` or whose current
//! version has runs adds a version; runs stay on theirs.

pub mod activity;
pub mod counts;
pub mod runs;

use chrono::{DateTime, Utc};
use galantis_core::automation::{AutomationStatus, Exclusion, Flow, FrequencyCap, TriggerKind};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Automation {
    pub id: Uuid,
    pub name: String,
    pub status: AutomationStatus,
    pub current_version: i32,
    /// The current version's flow JSON.
    pub flow: Value,
    pub frequency_cap: Option<FrequencyCap>,
    pub exclusions: Vec<Exclusion>,
    pub include_existing_users: bool,
    pub trigger: Option<TriggerKind>,
    /// The trigger's tag, segment id or list id.
    pub trigger_param: Option<String>,
    /// The last time it became ACTIVE (activation or resume).
    pub activated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type Row = (
    Uuid,
    String,
    String,
    i32,
    Json<Value>,
    Option<String>,
    Json<Vec<Exclusion>>,
    bool,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

macro_rules! select_automation {
    ($where:literal) => {
        concat!(
            "SELECT a.id, a.name, a.status, a.current_version, v.flow, a.frequency_cap,
                    a.exclusions, a.include_existing_users, a.trigger, a.trigger_param,
                    a.activated_at, a.created_at, a.updated_at
             FROM automations a
             JOIN automation_versions v ON v.automation_id = a.id AND v.version = a.current_version
             WHERE a.deleted_at IS NULL ",
            $where
        )
    };
}

fn to_automation(r: Row) -> Automation {
    Automation {
        id: r.0,
        name: r.1,
        status: AutomationStatus::parse(&r.2).unwrap_or(AutomationStatus::Inactive),
        current_version: r.3,
        flow: r.4.0,
        frequency_cap: r.5.as_deref().and_then(FrequencyCap::parse),
        exclusions: r.6.0,
        include_existing_users: r.7,
        trigger: r.8.as_deref().and_then(TriggerKind::parse),
        trigger_param: r.9,
        activated_at: r.10.map(from_ms),
        created_at: from_ms(r.11),
        updated_at: from_ms(r.12),
    }
}

/// The trigger columns of a flow: its first trigger and its parameter.
fn trigger_columns(flow: &Flow) -> (Option<&'static str>, Option<String>) {
    match flow.trigger() {
        Some((_, t)) => {
            let param = t
                .tag
                .clone()
                .or(t.segment_id.map(|s| s.to_string()))
                .or(t.list_id.map(|l| l.to_string()));
            (Some(t.trigger.as_str()), param)
        }
        None => (None, None),
    }
}

pub struct NewAutomation<'a> {
    pub name: &'a str,
    /// The flow as given (stored verbatim) and parsed.
    pub flow: (&'a Value, &'a Flow),
    pub frequency_cap: Option<FrequencyCap>,
    pub exclusions: &'a [Exclusion],
    pub include_existing_users: bool,
}

/// Creates an `INACTIVE` automation at version 1.
pub async fn create(
    tx: &mut TenantTx,
    new: &NewAutomation<'_>,
    now_ms: i64,
) -> Result<Automation, StoreError> {
    let id = Uuid::now_v7();
    let (trigger, param) = trigger_columns(new.flow.1);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO automations (id, name, status, current_version, frequency_cap, exclusions,
                 include_existing_users, trigger, trigger_param, created_at, updated_at)
             VALUES ($1, $2, 'INACTIVE', 1, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(id)
        .bind(new.name)
        .bind(new.frequency_cap.map(FrequencyCap::as_str))
        .bind(Json(new.exclusions))
        .bind(new.include_existing_users)
        .bind(trigger)
        .bind(param.as_deref())
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "INSERT INTO automation_versions (automation_id, version, flow, created_at) VALUES ($1, 1, $2, $3)",
        )
        .bind(id)
        .bind(Json(new.flow.0))
        .bind(now_ms)
        .execute(&mut *c)
        .await?
            .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Automation>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_automation!("AND a.id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_automation))
}

/// Newest first; `before` is the cursor (an automation id).
pub async fn list(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Automation>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_automation!(
            "AND ($1 IS NULL OR a.id < $1) ORDER BY a.id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_automation).collect())
}

/// The ACTIVE automations a trigger concerns (the subscribers then match
/// the parameter with `TriggerNode::matches` on the run's version).
pub async fn active_for_trigger(
    tx: &mut TenantTx,
    trigger: TriggerKind,
) -> Result<Vec<Automation>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_automation!(
            "AND a.trigger = $1 AND a.status = 'ACTIVE' ORDER BY a.id"
        ))
        .bind(trigger.as_str())
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_automation).collect())
}

/// Whether any automation (whatever its status, not deleted) has this
/// trigger: the back-in-stock pipeline creates one from its recipe only
/// when the tenant has none.
pub async fn any_for_trigger(tx: &mut TenantTx, trigger: TriggerKind) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM automations WHERE trigger = $1 AND deleted_at IS NULL",
        )
        .bind(trigger.as_str())
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n > 0)
}

/// How many automations are ACTIVE or PAUSED (the plan's limit counts both).
pub async fn count_enabled(tx: &mut TenantTx) -> Result<i64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM automations WHERE deleted_at IS NULL AND status <> 'INACTIVE'",
        )
        .fetch_one(&mut *c)
        .await?
    }))
}

/// The flow JSON of one version (what a run executes).
pub async fn version_flow(
    tx: &mut TenantTx,
    automation_id: Uuid,
    version: i32,
) -> Result<Option<Value>, StoreError> {
    let row: Option<Json<Value>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT flow FROM automation_versions WHERE automation_id = $1 AND version = $2",
        )
        .bind(automation_id)
        .bind(version)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row.map(|j| j.0))
}

/// A change; `None` keeps the stored value.
#[derive(Default)]
pub struct AutomationChange<'a> {
    pub name: Option<&'a str>,
    pub flow: Option<(&'a Value, &'a Flow)>,
    pub frequency_cap: Option<Option<FrequencyCap>>,
    pub exclusions: Option<&'a [Exclusion]>,
    pub include_existing_users: Option<bool>,
}

/// Applies a change. A new flow replaces the current version of a draft
/// without runs, and adds a version otherwise.
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    ch: &AutomationChange<'_>,
    now_ms: i64,
) -> Result<Automation, StoreError> {
    let cur = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    let mut version = cur.current_version;
    let (mut trigger, mut param) = (
        cur.trigger.map(TriggerKind::as_str),
        cur.trigger_param.clone(),
    );
    if let Some((json, flow)) = ch.flow
        && *json != cur.flow
    {
        let runs: i64 = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM automation_runs WHERE automation_id = $1 AND version = $2",
            )
            .bind(id)
            .bind(version)
            .fetch_one(&mut *c)
            .await?
        });
        if cur.status == AutomationStatus::Inactive && runs == 0 {
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "UPDATE automation_versions SET flow = $1, created_at = $2 WHERE automation_id = $3 AND version = $4",
                )
                .bind(Json(json))
                .bind(now_ms)
                .bind(id)
                .bind(version)
                .execute(&mut *c)
                .await?
            .rows_affected()
            });
        } else {
            version += 1;
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "INSERT INTO automation_versions (automation_id, version, flow, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(version)
                .bind(Json(json))
                .bind(now_ms)
                .execute(&mut *c)
                .await?
            .rows_affected()
            });
        }
        (trigger, param) = trigger_columns(flow);
    }
    let cap = match ch.frequency_cap {
        Some(c) => c,
        None => cur.frequency_cap,
    };
    let exclusions = ch.exclusions.unwrap_or(&cur.exclusions);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE automations SET name = $1, current_version = $2, frequency_cap = $3, exclusions = $4,
                 include_existing_users = $5, trigger = $6, trigger_param = $7, updated_at = $8
             WHERE id = $9",
        )
        .bind(ch.name.unwrap_or(&cur.name))
        .bind(version)
        .bind(cap.map(FrequencyCap::as_str))
        .bind(Json(exclusions))
        .bind(ch.include_existing_users.unwrap_or(cur.include_existing_users))
        .bind(trigger)
        .bind(param.as_deref())
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
            .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

/// Sets the status; becoming ACTIVE stamps `activated_at` (events from
/// before it never enrol).
pub async fn set_status(
    tx: &mut TenantTx,
    id: Uuid,
    status: AutomationStatus,
    now_ms: i64,
) -> Result<Automation, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE automations SET status = $1, updated_at = $2,
                 activated_at = CASE WHEN $1 = 'ACTIVE' AND status <> 'ACTIVE' THEN $2 ELSE activated_at END
             WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(status.as_str())
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

/// Deletes an automation (kept for its runs' history, hidden from reads,
/// enrolling nobody). Returns whether it existed.
pub async fn delete(tx: &mut TenantTx, id: Uuid, now_ms: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE automations SET deleted_at = $1, status = 'INACTIVE', updated_at = $1
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n > 0)
}
