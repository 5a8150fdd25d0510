//! Templates: drafts (CRUD, validated locally), submit, sync from Meta.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use galantis_core::templates::{self as rules, TemplateStatus};
use galantis_store::tenant::templates::{self as store, TemplateContent, TemplateRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

fn view(t: &TemplateRecord) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(s) = TemplateStatus::from_meta(&t.status) {
        v["status"] = json!(s.as_str());
    }
    v
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/templates",
    tag = "templates",
    summary = "Message templates",
    params(ListQuery),
    responses((status = 200, description = "a page of templates", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<Value>>, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let wanted = match &q.status {
        Some(s) => Some(
            s.parse::<TemplateStatus>()
                .map_err(|e| AppError::bad_request("invalid_query", e))?,
        ),
        None => None,
    };
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let mut rows = store::list(&mut tx, None, before, 10_000).await?;
    tx.commit().await?;
    if let Some(w) = wanted {
        rows.retain(|t| TemplateStatus::from_meta(&t.status) == Some(w));
    }
    rows.truncate(limit as usize + 1);
    let page = Page::from_rows(rows, limit as usize, |t| t.id);
    Ok(axum::Json(Page {
        data: page.data.iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/templates/{id}",
    tag = "templates",
    summary = "A template",
    params(("id" = uuid::Uuid, Path, description = "template id")),
    responses((status = 200, description = "the template", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let t = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    Ok(axum::Json(view(&t)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    name: String,
    language: String,
    category: String,
    /// Meta's components (HEADER, BODY, FOOTER, BUTTONS), as Meta takes them.
    #[schema(value_type = Vec<Object>, min_items = 1)]
    components: Value,
    #[serde(default)]
    format: Option<String>,
}

/// Checks a template locally; returns its parameter format.
fn validate(t: &TemplateInput) -> Result<&'static str, AppError> {
    let name_ok = !t.name.is_empty()
        && t.name.len() <= 512
        && t.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(AppError::unprocessable(
            "invalid_template",
            "name: lowercase letters, digits and underscores, at most 512",
        ));
    }
    let lang_ok = (2..=12).contains(&t.language.len())
        && t.language
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_');
    if !lang_ok {
        return Err(AppError::unprocessable(
            "invalid_template",
            "language: a locale code such as en, es or pt_BR",
        ));
    }
    if !rules::CATEGORIES.contains(&t.category.as_str()) {
        return Err(AppError::unprocessable(
            "invalid_template",
            "category: MARKETING, UTILITY or AUTHENTICATION",
        ));
    }
    rules::validate(&t.components, t.format.as_deref()).map_err(|problems| {
        let text = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        AppError::unprocessable("invalid_template", text)
    })
}

#[utoipa::path(
    post,
    path = "/templates",
    tag = "templates",
    summary = "Create a draft template",
    request_body = TemplateInput,
    responses((status = 201, description = "the template", body = Object))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesWrite>,
    Json(t): Json<TemplateInput>,
) -> Result<(StatusCode, axum::Json<Value>), AppError> {
    let param_format = validate(&t)?;
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let id = store::insert_draft(
        &mut tx,
        &TemplateContent {
            name: &t.name,
            language: &t.language,
            category: &t.category,
            components: &t.components,
            parameter_format: param_format,
            format: t.format.as_deref(),
        },
        now,
    )
    .await?;
    let rec = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(view(&rec))))
}

/// Edits a DRAFT or REJECTED template (it becomes a DRAFT again).
#[utoipa::path(
    method(put, patch),
    path = "/templates/{id}",
    tag = "templates",
    summary = "Replace a draft template",
    params(("id" = uuid::Uuid, Path, description = "template id")),
    request_body = TemplateInput,
    responses((status = 200, description = "the template", body = Object))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesWrite>,
    Path(id): Path<Uuid>,
    Json(t): Json<TemplateInput>,
) -> Result<axum::Json<Value>, AppError> {
    let param_format = validate(&t)?;
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let current = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    let status = TemplateStatus::from_meta(&current.status);
    if !status.is_some_and(TemplateStatus::editable) {
        return Err(AppError::conflict(
            "template_not_editable",
            format!("a {} template cannot be edited", current.status),
        ));
    }
    store::update_content(
        &mut tx,
        id,
        &TemplateContent {
            name: &t.name,
            language: &t.language,
            category: &t.category,
            components: &t.components,
            parameter_format: param_format,
            format: t.format.as_deref(),
        },
        now,
    )
    .await?;
    let rec = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    Ok(axum::Json(view(&rec)))
}

/// Deletes a template; one known to Meta is deleted there too.
#[utoipa::path(
    delete,
    path = "/templates/{id}",
    tag = "templates",
    summary = "Delete a template",
    params(("id" = uuid::Uuid, Path, description = "template id")),
    responses((status = 204, description = "deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let t = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    if t.meta_template_id.is_some() {
        let conn = crate::sending::connection::resolve(&state, auth.tenant_id)
            .await
            .map_err(AppError::Internal)?;
        if let (Some(base), Some(waba)) = (conn.base_url.clone(), conn.waba_id.clone()) {
            state
                .sending
                .api(&base)
                .delete_template(&waba, crate::sending::connection::token(&conn), &t.name)
                .await
                .map_err(|e| {
                    AppError::unprocessable("meta_error", format!("Meta refused the deletion: {e}"))
                })?;
        }
    }
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    store::delete(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Submits a DRAFT (or edited REJECTED) template to Meta for review.
#[utoipa::path(
    post,
    path = "/templates/{id}/submit",
    tag = "templates",
    summary = "Submit a template to Meta for review",
    params(("id" = uuid::Uuid, Path, description = "template id")),
    responses((status = 200, description = "the template", body = Object))
)]
pub async fn submit(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesWrite>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let t = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    if !TemplateStatus::from_meta(&t.status).is_some_and(TemplateStatus::editable) {
        return Err(AppError::conflict(
            "template_not_editable",
            format!("a {} template cannot be submitted again", t.status),
        ));
    }
    rules::validate(&t.components, t.format.as_deref())
        .map_err(|p| AppError::unprocessable("invalid_template", format!("{p:?}")))?;
    let out = crate::sending::templates::submit(&state, auth.tenant_id, &t).await?;
    Ok(axum::Json(view(&out)))
}

#[utoipa::path(
    post,
    path = "/templates/sync",
    tag = "templates",
    summary = "Sync templates from Meta",
    responses((status = 200, description = "what changed", body = Object))
)]
pub async fn sync(
    State(state): State<AppState>,
    auth: Authed<perm::TemplatesWrite>,
) -> Result<axum::Json<Value>, AppError> {
    let report = crate::sending::templates::sync(&state, auth.tenant_id).await?;
    Ok(axum::Json(serde_json::to_value(report).unwrap_or_default()))
}
