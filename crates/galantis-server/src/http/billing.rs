//! Billing: plan, balance, reset date, usage and ledger; top-ups and plan
//! changes (owner only: `billing.write`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use galantis_core::billing::{Plan, next_reset, threshold_reached};
use galantis_store::tenant::billing;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Json;
use crate::http::pagination::{Cursor, Page};
use crate::sending::credits;
use crate::state::AppState;

async fn summary(state: &AppState, tenant: galantis_core::TenantId) -> Result<Value, AppError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let account = billing::account(&mut tx, now).await?;
    let usage = billing::usage(&mut tx, &account.period).await?;
    let a = credits::availability(&mut tx, now).await?;
    let ledger = billing::ledger(&mut tx, None, 51).await?;
    tx.commit().await?;
    let granted = usage.granted + usage.top_ups;
    let level = threshold_reached(usage.used, granted);
    let page = Page::from_rows(ledger, 50, |e| e.id);
    Ok(json!({
        "plan": account.plan,
        "tier_credits": account.tier_credits,
        "period": account.period,
        "reset_at": next_reset(now),
        "balance": a.balance,
        "reserved": a.reserved,
        "available": a.available(),
        "usage": usage,
        "usage_percent": if granted > 0 { usage.used * 100 / granted } else { 0 },
        "warning": level.filter(|l| *l < 100),
        "blocked": a.available() < 1,
        "ledger": page.data,
        "ledger_next_cursor": page.next_cursor,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::BillingRead>,
) -> Result<axum::Json<Value>, AppError> {
    Ok(axum::Json(summary(&state, auth.tenant_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

pub async fn ledger(
    State(state): State<AppState>,
    auth: Authed<perm::BillingRead>,
    Query(q): Query<LedgerQuery>,
) -> Result<axum::Json<Page<billing::LedgerEntry>>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = billing::ledger(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |e| e.id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    credits: i64,
    #[serde(default)]
    reason: Option<String>,
    /// The same key never adds credits twice.
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub async fn top_up(
    State(state): State<AppState>,
    auth: Authed<perm::BillingWrite>,
    Json(t): Json<TopUp>,
) -> Result<(StatusCode, axum::Json<Value>), AppError> {
    if !(1..=1_000_000).contains(&t.credits) {
        return Err(AppError::unprocessable(
            "invalid_field",
            "credits must be between 1 and 1,000,000",
        ));
    }
    let key = t
        .idempotency_key
        .clone()
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    if key.len() > 200 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "idempotency_key is too long",
        ));
    }
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let added = billing::top_up(
        &mut tx,
        t.credits,
        t.reason.as_deref().unwrap_or("top-up"),
        &key,
        state.clock.now(),
    )
    .await?;
    tx.commit().await?;
    let mut v = summary(&state, auth.tenant_id).await?;
    v["added"] = json!(added);
    Ok((
        if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(v),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    plan: String,
    #[serde(default)]
    tier_credits: i64,
}

/// Sets the plan (until Shopify app subscriptions drive it).
pub async fn set_plan(
    State(state): State<AppState>,
    auth: Authed<perm::BillingWrite>,
    Json(p): Json<PlanChange>,
) -> Result<axum::Json<Value>, AppError> {
    let plan: Plan = p
        .plan
        .parse()
        .map_err(|e: String| AppError::unprocessable("invalid_field", e))?;
    if !(0..=1_000_000).contains(&p.tier_credits) {
        return Err(AppError::unprocessable(
            "invalid_field",
            "tier_credits must be between 0 and 1,000,000",
        ));
    }
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    billing::set_plan(&mut tx, plan, p.tier_credits, state.clock.now()).await?;
    tx.commit().await?;
    Ok(axum::Json(summary(&state, auth.tenant_id).await?))
}
