//! The automations API (design.md §4 "Automations", ADR 0025): CRUD with
//! versions (`crud`), activation, pause, resume and recipes (`lifecycle`),
//! the dry run (`dry_run`), and the activity log and stats (`insight`).
//!
//! Policy:
//! - Drafts always save: a flow is only *parsed* on save (a malformed flow
//!   is 422 `invalid_flow`, `error.details` listing `{path, node_id,
//!   message}`); completeness is checked at activation (422
//!   `automation_invalid`, `error.details` listing `{node_id, code,
//!   message}`). A flow change to an ACTIVE or PAUSED automation must pass
//!   the same validation, and adds a version (runs keep theirs).
//! - Every single-automation response is the automation plus `issues`: the
//!   current validation findings (blocking ones and advisory notes), so an
//!   editor shows what activation would say.
//! - The plan's limit on enabled (ACTIVE or PAUSED) automations is checked
//!   at activation: 402 `automation_limit_reached`.
//! - An ACTIVE automation cannot be deleted (409 `automation_active`):
//!   pause it first.

pub mod crud;
pub mod dry_run;
pub mod insight;
pub mod lifecycle;

use std::collections::BTreeMap;

use galantis_core::automation::{Flow, FlowErrors, Issue, validate};
use galantis_core::templates::TemplateStatus;
use galantis_store::TenantTx;
use galantis_store::tenant::automations::{self as store, Automation};
use galantis_store::tenant::templates;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

/// Longest automation name.
pub const MAX_NAME_CHARS: usize = 120;
/// Most exclusions an automation may have.
pub const MAX_EXCLUSIONS: usize = 50;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crud::list, crud::create))
        .routes(routes!(crud::get, crud::update, crud::delete))
        .routes(routes!(lifecycle::from_recipe))
        .routes(routes!(lifecycle::activate))
        .routes(routes!(lifecycle::pause))
        .routes(routes!(lifecycle::resume))
        .routes(routes!(dry_run::dry_run))
        .routes(routes!(insight::activity))
        .routes(routes!(insight::stats))
}

/// An automation as the API shows it: the stored automation and the
/// current validation findings.
#[derive(Serialize)]
pub struct AutomationView {
    #[serde(flatten)]
    pub automation: Automation,
    /// Blocking issues (`blocking: true`) and advisory notes.
    pub issues: Vec<Issue>,
}

/// `?cursor=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub(super) cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    pub(super) limit: Option<u32>,
}

pub(crate) fn now_ms(state: &AppState) -> i64 {
    state.clock.now().timestamp_millis()
}

/// 422 `invalid_flow` naming every path and node that is wrong.
pub(crate) fn invalid_flow(e: FlowErrors) -> AppError {
    AppError::UnprocessableWith {
        code: "invalid_flow",
        message: format!("the flow is malformed: {e}"),
        details: serde_json::to_value(&e.0).unwrap_or_default(),
    }
}

pub(crate) fn parse_flow(v: &serde_json::Value) -> Result<Flow, AppError> {
    Flow::parse(v).map_err(invalid_flow)
}

pub(crate) fn valid_name(name: &str) -> Result<&str, AppError> {
    galantis_core::text::check_field("name", name, MAX_NAME_CHARS)
        .map_err(|e| AppError::unprocessable("invalid_field", e.to_string()))
}

/// The automation, or 404 (also for another tenant's id).
pub(crate) async fn load(tx: &mut TenantTx, id: Uuid) -> Result<Automation, AppError> {
    store::get(tx, id)
        .await?
        .ok_or(AppError::NotFound("automation"))
}

/// The statuses of the templates a flow sends (a missing one is absent).
pub(crate) async fn template_statuses(
    tx: &mut TenantTx,
    flow: &Flow,
) -> Result<BTreeMap<Uuid, TemplateStatus>, AppError> {
    let mut out = BTreeMap::new();
    for id in flow.template_ids() {
        if let Some(t) = templates::get(tx, id).await?
            && let Some(s) = TemplateStatus::from_meta(&t.status)
        {
            out.insert(id, s);
        }
    }
    Ok(out)
}

/// What activation would say about the automation now.
pub(crate) async fn issues_of(
    tx: &mut TenantTx,
    a: &Automation,
) -> Result<(Flow, Vec<Issue>), AppError> {
    let flow = parse_flow(&a.flow)?;
    let statuses = template_statuses(tx, &flow).await?;
    let issues = validate(&flow, &statuses, a.frequency_cap);
    Ok((flow, issues))
}

/// 422 `automation_invalid` when any issue blocks.
pub(crate) fn refuse_blocking(issues: &[Issue]) -> Result<(), AppError> {
    let blocking: Vec<serde_json::Value> = issues
        .iter()
        .filter(|i| i.blocking)
        .map(|i| serde_json::json!({"node_id": i.node_id, "code": i.code, "message": i.message}))
        .collect();
    if blocking.is_empty() {
        return Ok(());
    }
    let first: Vec<String> = issues
        .iter()
        .filter(|i| i.blocking)
        .take(3)
        .map(|i| match &i.node_id {
            Some(n) => format!("node \"{n}\": {}", i.message),
            None => i.message.clone(),
        })
        .collect();
    Err(AppError::UnprocessableWith {
        code: "automation_invalid",
        message: format!(
            "the automation cannot be activated ({} blocking issue(s)): {}",
            blocking.len(),
            first.join("; ")
        ),
        details: serde_json::Value::Array(blocking),
    })
}

pub(crate) async fn view(tx: &mut TenantTx, a: Automation) -> Result<AutomationView, AppError> {
    let (_, issues) = issues_of(tx, &a).await?;
    Ok(AutomationView {
        automation: a,
        issues,
    })
}
