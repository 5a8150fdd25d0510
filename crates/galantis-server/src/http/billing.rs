//! Billing: plan, balance, reset date, usage and ledger; credit purchases
//! through Shopify (owner only: `billing.write`).
//!
//! No route here adds credits or changes the plan: the plan follows the
//! Shopify app subscription (`app_subscriptions/update`), bought credits
//! arrive when Shopify reports the purchase ACTIVE, and operators grant
//! with `galantis billing grant`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use galantis_core::billing::{next_reset, threshold_reached};
use galantis_store::tenant::billing;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::billing::CheckPurchase;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Json;
use crate::http::pagination::{Cursor, Page};
use crate::jobs::enqueue;
use crate::sending::credits;
use crate::shopify_client::{PurchaseRequest, Read, ShopifyError};
use crate::state::AppState;

async fn summary(state: &AppState, tenant: galantis_core::TenantId) -> Result<Value, AppError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let account = billing::account(&mut tx, now).await?;
    let usage = billing::usage(&mut tx, &account.period).await?;
    let a = credits::availability(&mut tx, now).await?;
    let ledger = billing::ledger(&mut tx, None, 51).await?;
    tx.commit().await?;
    let granted = usage.total_granted();
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

#[utoipa::path(
    get,
    path = "/billing",
    tag = "billing",
    summary = "Credit balance and plan",
    responses((status = 200, description = "the balance", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::BillingRead>,
) -> Result<axum::Json<Value>, AppError> {
    Ok(axum::Json(summary(&state, auth.tenant_id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/billing/ledger",
    tag = "billing",
    summary = "The credit ledger",
    params(LedgerQuery),
    responses((status = 200, description = "a page of ledger entries", body = crate::http::openapi::PageBody))
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPurchase {
    pack: String,
}

/// Creates a one-time Shopify app charge for a credit pack and returns the
/// URL where the merchant approves it. Nothing is granted here: credits
/// arrive when Shopify reports the purchase ACTIVE.
#[utoipa::path(
    post,
    path = "/billing/purchases",
    tag = "billing",
    summary = "Buy a credit pack through Shopify",
    request_body = NewPurchase,
    responses((status = 201, description = "the pending purchase, with its confirmation URL", body = Object))
)]
pub async fn purchase(
    State(state): State<AppState>,
    auth: Authed<perm::BillingWrite>,
    Json(p): Json<NewPurchase>,
) -> Result<(StatusCode, axum::Json<billing::Purchase>), AppError> {
    let pack = state.config.billing.pack(&p.pack).cloned().ok_or_else(|| {
        let ids: Vec<&str> = state
            .config
            .billing
            .credit_packs
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        AppError::unprocessable(
            "unknown_credit_pack",
            format!(
                "pack must be one of: {}",
                if ids.is_empty() {
                    "(no packs are on sale)".to_owned()
                } else {
                    ids.join(", ")
                }
            ),
        )
    })?;
    let id = Uuid::now_v7();
    let request = PurchaseRequest {
        name: format!("Galantis: {} conversation credits", pack.credits),
        amount: pack.price.clone(),
        currency_code: pack.currency_code.clone(),
        return_url: format!(
            "{}/billing?purchase={id}",
            state.config.public_url().trim_end_matches('/')
        ),
        test: state.config.billing.test_charges,
    };
    let created = match state
        .shopify
        .create_purchase(auth.tenant_id, &request)
        .await
    {
        Ok(Read::Found(c)) => c,
        Ok(Read::NotFound | Read::Skipped(_)) => {
            return Err(AppError::conflict(
                "shopify_not_connected",
                "the shop has no Shopify access token; reinstall the app to buy credits",
            ));
        }
        Err(ShopifyError::Permanent(m)) => {
            return Err(AppError::unprocessable(
                "shopify_purchase_refused",
                format!("Shopify refused the purchase: {m}"),
            ));
        }
        Err(ShopifyError::Retryable(m)) => {
            tracing::warn!(tenant = %auth.tenant_id, error = %m, "creating a Shopify purchase failed");
            return Err(AppError::unavailable_plain(
                "Shopify could not be reached; try again",
            ));
        }
    };
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let row = billing::create_purchase(
        &mut tx,
        &billing::NewPurchase {
            id,
            shopify_id: &created.id,
            pack: &pack.id,
            credits: pack.credits,
            price_amount: &pack.price,
            currency_code: &pack.currency_code,
            confirmation_url: &created.confirmation_url,
            created_by: Some(auth.member_id.as_uuid()),
        },
        now,
    )
    .await?;
    let check = std::time::Duration::from_secs(state.config.billing.purchase_check_secs);
    enqueue(
        &mut tx,
        &CheckPurchase { purchase_id: id },
        now + chrono::Duration::from_std(check).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(row)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PurchasesQuery {
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/billing/purchases",
    tag = "billing",
    summary = "Credit purchases",
    params(PurchasesQuery),
    responses((status = 200, description = "a page of purchases", body = crate::http::openapi::PageBody))
)]
pub async fn purchases(
    State(state): State<AppState>,
    auth: Authed<perm::BillingRead>,
    Query(q): Query<PurchasesQuery>,
) -> Result<axum::Json<Page<billing::Purchase>>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = billing::purchases(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |p| p.id)))
}
