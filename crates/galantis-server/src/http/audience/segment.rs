//! Segments: CRUD, members, refresh, and the preview of unsaved rules.

use super::*;
use crate::jobs::kinds::collections::sync_unknown_collections;

#[utoipa::path(
    get,
    path = "/segments",
    tag = "audience",
    summary = "Segments",
    params(crate::http::audience::PageQuery),
    responses((status = 200, description = "a page of segments", body = crate::http::openapi::PageBody))
)]
pub async fn list_segments(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Segment>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = segments::list(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |s| s.id)))
}

/// Lists named by rules must exist in this tenant.
async fn check_lists(tx: &mut TenantTx, rules: &SegmentRules) -> Result<(), AppError> {
    for l in rules.referenced_lists() {
        if !lists::exists(tx, l).await? {
            return Err(AppError::unprocessable(
                "invalid_segment_rules",
                format!("rules refer to list {l}, which does not exist"),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSegment {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// `{"groups": [{"conditions": […]}, …]}`: groups are OR-ed, a group's
    /// conditions AND-ed (422 `invalid_segment_rules` says what is wrong).
    #[schema(value_type = Object)]
    rules: Value,
}

#[utoipa::path(
    post,
    path = "/segments",
    tag = "audience",
    summary = "Create a segment from rules",
    request_body = NewSegment,
    responses((status = 201, description = "the segment", body = Object))
)]
pub async fn create_segment(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Json(body): Json<NewSegment>,
) -> Result<Response, AppError> {
    let name = valid_name(&body.name)?;
    let description = valid_description(body.description.as_deref())?;
    let rules = parse_rules(&body.rules)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    check_lists(&mut tx, &rules).await?;
    sync_unknown_collections(&mut tx, &rules, state.clock.now()).await?;
    let seg = segments::create(
        &mut tx,
        name,
        description,
        &body.rules,
        &rules,
        now_ms(&state),
    )
    .await
    .map_err(conflict)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(seg)).into_response())
}

#[utoipa::path(
    get,
    path = "/segments/{id}",
    tag = "audience",
    summary = "A segment",
    params(("id" = uuid::Uuid, Path, description = "segment id")),
    responses((status = 200, description = "the segment", body = Object))
)]
pub async fn get_segment(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Segment>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let seg = segments::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("segment"))?;
    tx.commit().await?;
    Ok(axum::Json(seg))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    /// A string sets it; `null` clears it.
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    rules: Option<Value>,
}

#[utoipa::path(
    patch,
    path = "/segments/{id}",
    tag = "audience",
    summary = "Change a segment",
    params(("id" = uuid::Uuid, Path, description = "segment id")),
    request_body = SegmentPatch,
    responses((status = 200, description = "the segment", body = Object))
)]
pub async fn update_segment(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<SegmentPatch>,
) -> Result<axum::Json<Segment>, AppError> {
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let description = description_change(&body.description)?;
    let rules = body.rules.as_ref().map(parse_rules).transpose()?;
    let now = now_ms(&state);
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    if segments::get(&mut tx, id).await?.is_none() {
        return Err(AppError::NotFound("segment"));
    }
    if let Some(r) = &rules {
        check_lists(&mut tx, r).await?;
        sync_unknown_collections(&mut tx, r, state.clock.now()).await?;
    }
    let changes = segments::Changes {
        name,
        description,
        rules: body.rules.as_ref().zip(rules.as_ref()),
    };
    let (seg, entered) = segments::update(&mut tx, id, &changes, now)
        .await
        .map_err(conflict)?;
    audience::entered(&mut tx, &entered, now, None).await?;
    tx.commit().await?;
    Ok(axum::Json(seg))
}

#[utoipa::path(
    delete,
    path = "/segments/{id}",
    tag = "audience",
    summary = "Delete a segment",
    params(("id" = uuid::Uuid, Path, description = "segment id")),
    responses((status = 204, description = "deleted"))
)]
pub async fn delete_segment(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    if !segments::delete(&mut tx, id).await? {
        return Err(AppError::NotFound("segment"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/segments/{id}/members",
    tag = "audience",
    summary = "Contacts a segment matches",
    params(("id" = uuid::Uuid, Path, description = "segment id"), crate::http::audience::PageQuery),
    responses((status = 200, description = "a page of contacts", body = crate::http::openapi::PageBody))
)]
pub async fn segment_members(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Contact>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if segments::get(&mut tx, id).await?.is_none() {
        return Err(AppError::NotFound("segment"));
    }
    let search = ContactSearch {
        segment_id: Some(id),
        ..Default::default()
    };
    let rows = contacts::search(&mut tx, &search, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

/// Re-evaluates a segment now over every contact.
#[utoipa::path(
    post,
    path = "/segments/{id}/refresh",
    tag = "audience",
    summary = "Re-evaluate a segment now",
    params(("id" = uuid::Uuid, Path, description = "segment id")),
    responses((status = 200, description = "the new count", body = Object))
)]
pub async fn refresh_segment(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let now = now_ms(&state);
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    let seg = segments::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("segment"))?;
    let rules = parse_rules(&seg.rules)?;
    let loaded = segments::Loaded {
        id,
        name: seg.name.clone(),
        rules,
    };
    let entered =
        segments::evaluate_many(&mut tx, std::slice::from_ref(&loaded), None, now).await?;
    audience::entered(&mut tx, &entered, now, None).await?;
    let seg = segments::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("segment"))?;
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "entered": entered.len(), "segment": seg }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// `{"groups": [{"conditions": […]}, …]}`: groups are OR-ed, a group's
    /// conditions AND-ed (422 `invalid_segment_rules` says what is wrong).
    #[schema(value_type = Object)]
    rules: Value,
    #[serde(default)]
    sample_size: Option<u32>,
}

#[derive(Serialize)]
pub struct PreviewView {
    pub count: i64,
    pub sample: Vec<Contact>,
}

/// `POST /segments/preview`: who unsaved rules select now.
#[utoipa::path(
    post,
    path = "/segments/preview",
    tag = "audience",
    summary = "Count and sample the contacts that rules match",
    request_body = PreviewBody,
    responses((status = 200, description = "the count and a sample", body = Object))
)]
pub async fn preview(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Json(body): Json<PreviewBody>,
) -> Result<axum::Json<PreviewView>, AppError> {
    let rules = parse_rules(&body.rules)?;
    let sample = body.sample_size.unwrap_or(10).min(50);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    check_lists(&mut tx, &rules).await?;
    let (count, ids) = segments::preview(&mut tx, &rules, sample, now_ms(&state)).await?;
    let mut contacts_out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = contacts::get(&mut tx, id).await? {
            contacts_out.push(c);
        }
    }
    tx.commit().await?;
    Ok(axum::Json(PreviewView {
        count,
        sample: contacts_out,
    }))
}
