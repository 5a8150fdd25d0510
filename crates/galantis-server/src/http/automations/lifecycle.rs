//! Activation (validation, the plan's limit), pause, resume, and new
//! automations from recipes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galantis_core::automation::{AutomationStatus, Flow, RecipeKind, RecipeTemplates, recipe};
use galantis_core::billing::Plan;
use galantis_core::templates::ParamSpec;
use galantis_store::TenantTx;
use galantis_store::tenant::automations::{self as store, NewAutomation};
use galantis_store::tenant::{billing, templates};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    AutomationView, issues_of, load, now_ms, parse_flow, refuse_blocking, valid_name, view,
};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

/// 402 `automation_limit_reached` when the plan allows no more enabled
/// (ACTIVE or PAUSED) automations.
async fn check_plan_limit(state: &AppState, tx: &mut TenantTx) -> Result<(), AppError> {
    let account = billing::account(tx, state.clock.now()).await?;
    let plan: Plan = account.plan.parse().unwrap_or(Plan::Trial);
    let Some(max) = plan.max_active_automations() else {
        return Ok(());
    };
    let enabled = store::count_enabled(tx).await?;
    if enabled >= i64::from(max) {
        return Err(AppError::PaymentRequired {
            code: "automation_limit_reached",
            message: format!(
                "the {plan} plan allows {max} active automation(s) and {enabled} are active or paused; \
                 deactivate one or upgrade the plan"
            ),
        });
    }
    Ok(())
}

/// Validates and makes ACTIVE (stamping `activated_at`: events from before
/// it never enrol). Idempotent on an ACTIVE automation.
async fn make_active(
    state: &AppState,
    tenant: galantis_core::TenantId,
    id: Uuid,
    from: &[AutomationStatus],
) -> Result<AutomationView, AppError> {
    let mut tx = state.db.tenant_tx(tenant).await?;
    tx.serialize_tenant_writes().await?;
    let a = load(&mut tx, id).await?;
    if a.status != AutomationStatus::Active && !from.contains(&a.status) {
        return Err(AppError::conflict(
            "automation_not_paused",
            "the automation is not PAUSED; activate it instead",
        ));
    }
    let (_, issues) = issues_of(&mut tx, &a).await?;
    refuse_blocking(&issues)?;
    let a = match a.status {
        AutomationStatus::Active => a,
        AutomationStatus::Inactive => {
            check_plan_limit(state, &mut tx).await?;
            let a = store::set_status(&mut tx, id, AutomationStatus::Active, now_ms(state)).await?;
            // `include_existing_users`: current members enrol in the same
            // transaction, through the same gate.
            crate::automations::activate_effects(&mut tx, &a, state.clock.now()).await?;
            a
        }
        AutomationStatus::Paused => {
            store::set_status(&mut tx, id, AutomationStatus::Active, now_ms(state)).await?
        }
    };
    tx.commit().await?;
    Ok(AutomationView {
        automation: a,
        issues,
    })
}

#[utoipa::path(
    post,
    path = "/automations/{id}/activate",
    tag = "automations",
    summary = "Validate and activate an automation",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses(
        (status = 200, description = "the ACTIVE automation; `issues` holds advisory notes", body = Object),
        (status = 402, description = "`automation_limit_reached`: the plan's limit on active automations"),
        (status = 422, description = "`automation_invalid`: `error.details` lists `{node_id, code, message}`")
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsActivate>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<AutomationView>, AppError> {
    let v = make_active(
        &state,
        auth.tenant_id,
        id,
        &[AutomationStatus::Inactive, AutomationStatus::Paused],
    )
    .await?;
    Ok(axum::Json(v))
}

#[utoipa::path(
    post,
    path = "/automations/{id}/resume",
    tag = "automations",
    summary = "Resume a PAUSED automation (validated again; enrols from now on)",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses(
        (status = 200, description = "the ACTIVE automation", body = Object),
        (status = 409, description = "`automation_not_paused`"),
        (status = 422, description = "`automation_invalid`")
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsActivate>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<AutomationView>, AppError> {
    let v = make_active(&state, auth.tenant_id, id, &[AutomationStatus::Paused]).await?;
    Ok(axum::Json(v))
}

#[utoipa::path(
    post,
    path = "/automations/{id}/pause",
    tag = "automations",
    summary = "Pause an automation: no new enrolments, runs held at their next step",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    responses(
        (status = 200, description = "the PAUSED automation", body = Object),
        (status = 409, description = "`automation_not_active`")
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsActivate>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<AutomationView>, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    let a = load(&mut tx, id).await?;
    let a = match a.status {
        AutomationStatus::Paused => a,
        AutomationStatus::Active => {
            store::set_status(&mut tx, id, AutomationStatus::Paused, now_ms(&state)).await?
        }
        AutomationStatus::Inactive => {
            return Err(AppError::conflict(
                "automation_not_active",
                "the automation is not ACTIVE",
            ));
        }
    };
    let v = view(&mut tx, a).await?;
    tx.commit().await?;
    Ok(axum::Json(v))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromRecipeBody {
    /// `abandoned_checkout`, `welcome`, `vip_winback`, `cross_sell`,
    /// `back_in_stock`, `order_confirmation` or `shipping_update`.
    recipe: String,
    /// Templates per slot; the recipe's first slot is required, a missing
    /// later slot reuses it.
    #[schema(value_type = Object)]
    template_ids: BTreeMap<String, Uuid>,
    /// The segment of `vip_winback`.
    #[serde(default)]
    segment_id: Option<Uuid>,
    /// The product tag of `cross_sell` (default `cross-sell`).
    #[serde(default)]
    tag: Option<String>,
    /// Default: the recipe's title.
    #[serde(default)]
    name: Option<String>,
}

/// Keeps only the variables a template has: recipes map `{{1}}` and
/// `{{2}}`; a template with one body parameter gets one.
fn trim_variables(node: &mut Value, params: usize) {
    if let Some(vars) = node.get_mut("variables").and_then(Value::as_object_mut) {
        vars.retain(|k, _| k.parse::<usize>().is_ok_and(|n| n >= 1 && n <= params));
    }
}

#[utoipa::path(
    post,
    path = "/automations/from-recipe",
    tag = "automations",
    summary = "Create an INACTIVE automation from a recipe",
    request_body = FromRecipeBody,
    responses(
        (status = 201, description = "the automation and its validation issues", body = Object),
        (status = 422, description = "`unknown_recipe`, `invalid_field` or `template_not_found`")
    )
)]
pub async fn from_recipe(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsWrite>,
    Json(body): Json<FromRecipeBody>,
) -> Result<Response, AppError> {
    let kind = RecipeKind::parse(&body.recipe).ok_or_else(|| {
        let known: Vec<&str> = RecipeKind::ALL.iter().map(|k| k.as_str()).collect();
        AppError::unprocessable(
            "unknown_recipe",
            format!("recipe: expected one of {}", known.join(", ")),
        )
    })?;
    let slots = kind.slots();
    if let Some(k) = body
        .template_ids
        .keys()
        .find(|k| !slots.contains(&k.as_str()))
    {
        return Err(AppError::unprocessable(
            "invalid_field",
            format!(
                "template_ids.{k}: not a slot of {}; expected {}",
                kind.as_str(),
                slots.join(", ")
            ),
        ));
    }
    if !body.template_ids.contains_key(slots[0]) {
        return Err(AppError::unprocessable(
            "invalid_field",
            format!("template_ids.{}: required", slots[0]),
        ));
    }
    if kind == RecipeKind::VipWinback && body.segment_id.is_none() {
        return Err(AppError::unprocessable(
            "invalid_field",
            "segment_id: required by vip_winback",
        ));
    }
    let name = valid_name(body.name.as_deref().unwrap_or(kind.title()))?.to_owned();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let mut params = BTreeMap::new();
    for (slot, id) in &body.template_ids {
        let t = templates::get(&mut tx, *id).await?.ok_or_else(|| {
            AppError::unprocessable(
                "template_not_found",
                format!("template_ids.{slot}: template {id} does not exist"),
            )
        })?;
        params.insert(*id, ParamSpec::of(&t.components).body);
    }
    if let Some(s) = body.segment_id
        && galantis_store::tenant::segments::get(&mut tx, s)
            .await?
            .is_none()
    {
        return Err(AppError::unprocessable(
            "invalid_field",
            format!("segment_id: segment {s} does not exist"),
        ));
    }
    let given = RecipeTemplates {
        template_ids: body.template_ids.clone(),
        segment_id: body.segment_id,
        tag: body.tag.clone(),
    };
    let r = recipe(kind, &given);
    let mut json = r.flow;
    for node in json
        .get_mut("nodes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let tpl = node
            .get("template_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok());
        if let Some(n) = tpl.and_then(|t| params.get(&t)) {
            trim_variables(node, *n);
        }
    }
    let flow: Flow = parse_flow(&json)?;
    let a = store::create(
        &mut tx,
        &NewAutomation {
            name: &name,
            flow: (&json, &flow),
            frequency_cap: Some(r.frequency_cap),
            exclusions: &[],
            include_existing_users: false,
        },
        now_ms(&state),
    )
    .await?;
    let v = view(&mut tx, a).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}
