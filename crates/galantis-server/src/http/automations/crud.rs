//! Automations: list, create, get, change (a new version when it runs),
//! delete.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galantis_core::automation::{AutomationStatus, Exclusion, ExclusionKind, FrequencyCap};
use galantis_store::TenantTx;
use galantis_store::tenant::automations::{self as store, AutomationChange, NewAutomation};
use galantis_store::tenant::{lists, segments};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    AutomationView, MAX_EXCLUSIONS, PageQuery, load, now_ms, parse_flow, refuse_blocking,
    valid_name, view,
};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/automations",
    tag = "automations",
    summary = "Automations, newest first",
    params(PageQuery),
    responses((status = 200, description = "a page of automations", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsRead>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<store::Automation>>, AppError> {
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |a| a.id)))
}

/// Exclusions must name this tenant's lists and segments.
async fn check_exclusions(tx: &mut TenantTx, ex: &[Exclusion]) -> Result<(), AppError> {
    if ex.len() > MAX_EXCLUSIONS {
        return Err(AppError::unprocessable(
            "invalid_field",
            format!("exclusions: at most {MAX_EXCLUSIONS}"),
        ));
    }
    for e in ex {
        let found = match e.kind {
            ExclusionKind::List => lists::exists(tx, e.id).await?,
            ExclusionKind::Segment => segments::get(tx, e.id).await?.is_some(),
        };
        if !found {
            let kind = match e.kind {
                ExclusionKind::List => "list",
                ExclusionKind::Segment => "segment",
            };
            return Err(AppError::unprocessable(
                "invalid_exclusion",
                format!("exclusions: {kind} {} does not exist", e.id),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAutomationBody {
    name: String,
    /// `{"nodes": […], "edges": […]}`; the trigger is the flow's trigger
    /// node. May be incomplete (a draft); 422 `invalid_flow` when malformed.
    #[schema(value_type = Object)]
    flow: Value,
    /// `EVER`, `24_HOURS`, `7_DAYS`, `14_DAYS` or `30_DAYS`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    frequency_cap: Option<FrequencyCap>,
    /// `[{"type": "list" | "segment", "id": …}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    exclusions: Vec<Exclusion>,
    #[serde(default)]
    include_existing_users: bool,
}

#[utoipa::path(
    post,
    path = "/automations",
    tag = "automations",
    summary = "Create an automation (INACTIVE; drafts always save)",
    request_body = NewAutomationBody,
    responses(
        (status = 201, description = "the automation and its validation issues", body = Object),
        (status = 422, description = "`invalid_flow` (details name each path and node) or `invalid_exclusion`")
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsWrite>,
    Json(body): Json<NewAutomationBody>,
) -> Result<Response, AppError> {
    let name = valid_name(&body.name)?;
    let flow = parse_flow(&body.flow)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    check_exclusions(&mut tx, &body.exclusions).await?;
    let a = store::create(
        &mut tx,
        &NewAutomation {
            name,
            flow: (&body.flow, &flow),
            frequency_cap: body.frequency_cap,
            exclusions: &body.exclusions,
            include_existing_users: body.include_existing_users,
        },
        now_ms(&state),
    )
    .await?;
    let v = view(&mut tx, a).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

#[utoipa::path(
    get,
    path = "/automations/{id}",
    tag = "automations",
    summary = "An automation, with what activation would say about it",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses((status = 200, description = "the automation and its validation issues", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<AutomationView>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let a = load(&mut tx, id).await?;
    let v = view(&mut tx, a).await?;
    tx.commit().await?;
    Ok(axum::Json(v))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    flow: Option<Value>,
    /// A cap sets it; `null` clears it (a draft only: activation needs one).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    frequency_cap: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    exclusions: Option<Vec<Exclusion>>,
    #[serde(default)]
    include_existing_users: Option<bool>,
}

fn cap_change(v: &Option<Value>) -> Result<Option<Option<FrequencyCap>>, AppError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => FrequencyCap::parse(s)
            .map(|c| Some(Some(c)))
            .ok_or_else(|| {
                AppError::unprocessable(
                    "invalid_field",
                    "frequency_cap: expected EVER, 24_HOURS, 7_DAYS, 14_DAYS, 30_DAYS or null",
                )
            }),
        Some(_) => Err(AppError::unprocessable(
            "invalid_field",
            "frequency_cap: expected text or null",
        )),
    }
}

#[utoipa::path(
    patch,
    path = "/automations/{id}",
    tag = "automations",
    summary = "Change an automation (a running one gets a new version; its runs keep theirs)",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    request_body = AutomationPatch,
    responses(
        (status = 200, description = "the automation and its validation issues", body = Object),
        (status = 422, description = "`invalid_flow`, or `automation_invalid` when an ACTIVE or PAUSED automation would become invalid")
    )
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<AutomationPatch>,
) -> Result<axum::Json<AutomationView>, AppError> {
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let flow = body.flow.as_ref().map(parse_flow).transpose()?;
    let cap = cap_change(&body.frequency_cap)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    let cur = load(&mut tx, id).await?;
    if let Some(ex) = &body.exclusions {
        check_exclusions(&mut tx, ex).await?;
    }
    if cur.status != AutomationStatus::Inactive && (body.flow.is_some() || cap.is_some()) {
        // A running automation only ever runs a valid flow (a rename or an
        // exclusion change is not held up by a template paused since).
        let mut next = cur.clone();
        if let Some(f) = &body.flow {
            next.flow = f.clone();
        }
        if let Some(c) = cap {
            next.frequency_cap = c;
        }
        let (_, issues) = super::issues_of(&mut tx, &next).await?;
        refuse_blocking(&issues)?;
    }
    let change = AutomationChange {
        name,
        flow: body.flow.as_ref().zip(flow.as_ref()),
        frequency_cap: cap,
        exclusions: body.exclusions.as_deref(),
        include_existing_users: body.include_existing_users,
    };
    let a = store::update(&mut tx, id, &change, now_ms(&state)).await?;
    let v = view(&mut tx, a).await?;
    tx.commit().await?;
    Ok(axum::Json(v))
}

#[utoipa::path(
    delete,
    path = "/automations/{id}",
    tag = "automations",
    summary = "Delete an automation that is not ACTIVE (its runs' history is kept)",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 409, description = "`automation_active`: pause it first")
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    let a = load(&mut tx, id).await?;
    if a.status == AutomationStatus::Active {
        return Err(AppError::conflict(
            "automation_active",
            "the automation is ACTIVE; pause it before deleting it",
        ));
    }
    store::delete(&mut tx, id, now_ms(&state)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
