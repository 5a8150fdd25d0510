//! The campaigns API: CRUD (only `DRAFT` and `SCHEDULED` campaigns are
//! edited or deleted), duplicate, the reach estimate with the pre-launch
//! checks, and (in [`control`]) launch, cancel, pause, resume and the test
//! send. Bodies are parsed by `galantis_core::campaign::parse` (every error
//! names its field).

pub mod analytics;
pub mod control;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galantis_core::campaign::{CampaignInput, CampaignPatch, CampaignStatus, SetKind};
use galantis_store::TenantTx;
use galantis_store::tenant::audience as audience_store;
use galantis_store::tenant::campaigns::{self as store, Campaign, Fields};
use galantis_store::tenant::templates;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::campaigns::launch;
use crate::campaigns::schedule::schedule_in;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

fn invalid(msg: String) -> AppError {
    AppError::unprocessable("invalid_field", msg)
}

fn not_editable(c: &Campaign) -> AppError {
    AppError::conflict(
        "campaign_not_editable",
        format!(
            "the campaign is {}: only DRAFT and SCHEDULED campaigns can be changed",
            c.status
        ),
    )
}

/// Unknown template, list or segment → 404 naming it; a `phone_number_id`
/// that is not one of the tenant's connected numbers → 422
/// `unknown_phone_number`; a schedule in the past → 422.
async fn validate(
    state: &AppState,
    tx: &mut TenantTx,
    f: &Fields,
    schedule_changed: bool,
) -> Result<(), AppError> {
    if templates::get(tx, f.template_id).await?.is_none() {
        return Err(AppError::NotFoundCode {
            code: "not_found",
            message: format!("template {} not found", f.template_id),
        });
    }
    let a = &f.audience;
    let lists: Vec<Uuid> = [a.ids(true, SetKind::List), a.ids(false, SetKind::List)].concat();
    let segments: Vec<Uuid> = [
        a.ids(true, SetKind::Segment),
        a.ids(false, SetKind::Segment),
    ]
    .concat();
    if let Some(missing) = audience_store::missing_ids(tx, &lists, &segments)
        .await?
        .first()
    {
        return Err(AppError::NotFoundCode {
            code: "not_found",
            message: format!("list or segment {missing} not found"),
        });
    }
    if let Some(number) = f.phone_number_id.as_deref() {
        let connected =
            galantis_store::control::phone_numbers::list_for_tenant(&state.db, tx.tenant()).await?;
        if !connected.iter().any(|n| n.phone_number_id == number) {
            return Err(AppError::unprocessable(
                "unknown_phone_number",
                format!(
                    "phone_number_id: {number} is not a WhatsApp number connected to this store"
                ),
            ));
        }
    }
    if schedule_changed
        && let Some(at) = f.scheduled_at
        && at <= state.clock.now()
    {
        return Err(invalid("scheduled_at: must be in the future".into()));
    }
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `DRAFT`, `SCHEDULED`, `PENDING`, `PAUSED`, `SENT`, `PARTIALLY_SENT`, `FAILED`, `CANCELLED`.
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/campaigns",
    tag = "campaigns",
    summary = "Campaigns, newest first",
    params(ListQuery),
    responses((status = 200, description = "a page of campaigns", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<Campaign>>, AppError> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<CampaignStatus>)
        .transpose()
        .map_err(|_| invalid("status: not a campaign status".into()))?;
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list(&mut tx, status, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

#[utoipa::path(
    post,
    path = "/campaigns",
    tag = "campaigns",
    summary = "Create a campaign (DRAFT, or SCHEDULED with scheduled_at)",
    request_body = Object,
    responses((status = 201, description = "the campaign", body = Object))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsWrite>,
    Json(body): Json<Value>,
) -> Result<Response, AppError> {
    let input = CampaignInput::parse(&body).map_err(invalid)?;
    let f = Fields {
        name: input.name,
        template_id: input.template_id,
        variables_mapping: input.variables_mapping,
        audience: input.audience,
        phone_number_id: input.phone_number_id,
        scheduled_at: input.scheduled_at,
        send_window: input.send_window.map(|w| w.spec()),
        campaign_type: None,
    };
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    validate(&state, &mut tx, &f, true).await?;
    let c = store::insert(&mut tx, &f, state.clock.now().timestamp_millis()).await?;
    schedule_in(&mut tx, &c).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(c)).into_response())
}

async fn load(tx: &mut TenantTx, id: Uuid) -> Result<Campaign, AppError> {
    store::get(tx, id)
        .await?
        .ok_or(AppError::NotFound("campaign"))
}

#[utoipa::path(
    get,
    path = "/campaigns/{id}",
    tag = "campaigns",
    summary = "A campaign with its counts",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Campaign>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(c))
}

#[utoipa::path(
    patch,
    path = "/campaigns/{id}",
    tag = "campaigns",
    summary = "Change a DRAFT or SCHEDULED campaign (null clears scheduled_at, send_window, phone_number_id)",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    request_body = Object,
    responses((status = 200, description = "the campaign", body = Object))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Campaign>, AppError> {
    let p = CampaignPatch::parse(&body).map_err(invalid)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    if !c.status.editable() {
        return Err(not_editable(&c));
    }
    let mut f = Fields::from(&c);
    let schedule_changed = p.scheduled_at.is_some();
    if let Some(v) = p.name {
        f.name = v;
    }
    if let Some(v) = p.template_id {
        f.template_id = v;
    }
    if let Some(v) = p.variables_mapping {
        f.variables_mapping = v;
    }
    if let Some(v) = p.audience {
        f.audience = v;
    }
    if let Some(v) = p.phone_number_id {
        f.phone_number_id = v;
    }
    if let Some(v) = p.scheduled_at {
        f.scheduled_at = v;
    }
    if let Some(v) = p.send_window {
        f.send_window = v.map(|w| w.spec());
    }
    validate(&state, &mut tx, &f, schedule_changed).await?;
    if !store::update(&mut tx, id, &f, state.clock.now().timestamp_millis()).await? {
        return Err(not_editable(&c));
    }
    let c = load(&mut tx, id).await?;
    schedule_in(&mut tx, &c).await?;
    tx.commit().await?;
    Ok(axum::Json(c))
}

#[utoipa::path(
    delete,
    path = "/campaigns/{id}",
    tag = "campaigns",
    summary = "Delete a DRAFT or SCHEDULED campaign",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 204, description = "deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    if !store::delete(&mut tx, id).await? {
        return Err(not_editable(&c));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/duplicate",
    tag = "campaigns",
    summary = "Copy a campaign into a new DRAFT (not scheduled)",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 201, description = "the copy", body = Object))
)]
pub async fn duplicate(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsWrite>,
    Path(id): Path<Uuid>,
) -> Result<Response, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    let mut f = Fields::from(&c);
    f.name = copy_name(&c.name);
    f.scheduled_at = None;
    f.campaign_type = None;
    let copy = store::insert(&mut tx, &f, state.clock.now().timestamp_millis()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(copy)).into_response())
}

fn copy_name(name: &str) -> String {
    let suffix = " (copy)";
    let max = galantis_core::campaign::parse::MAX_NAME_CHARS - suffix.chars().count();
    let base: String = name.chars().take(max).collect();
    format!("{base}{suffix}")
}

/// The estimate's terms and what the pre-launch checks say now.
#[derive(Serialize)]
pub struct EstimateView {
    pub included: i64,
    pub excluded: i64,
    pub duplicates: i64,
    pub not_subscribed: i64,
    /// Subscribed but not messageable (no valid phone, deleted, erased).
    pub unreachable: i64,
    /// included − duplicates − excluded − not_subscribed − unreachable.
    pub total: i64,
    pub credits_available: i64,
    /// The blocking checks that fail now, each with its code.
    pub checks: Vec<CheckView>,
}

#[derive(Serialize)]
pub struct CheckView {
    pub code: &'static str,
    pub message: String,
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/estimate",
    tag = "campaigns",
    summary = "Reach estimate (each term) and the pre-launch checks",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "the estimate", body = Object))
)]
pub async fn estimate(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<EstimateView>, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    let k = launch::check(&mut tx, &c, state.clock.now()).await?;
    tx.commit().await?;
    let e = k.estimate;
    Ok(axum::Json(EstimateView {
        included: e.included,
        excluded: e.excluded,
        duplicates: e.duplicates,
        not_subscribed: e.not_subscribed,
        unreachable: e.unreachable,
        total: e.final_reach,
        credits_available: k.facts.credits_available,
        checks: k
            .refusals
            .iter()
            .map(|r| CheckView {
                code: r.code(),
                message: r.to_string(),
            })
            .collect(),
    }))
}
