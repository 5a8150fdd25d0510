//! Lists: CRUD, members by id or by search, and the contact filters that
//! need the audience tables.

use super::*;

#[utoipa::path(
    get,
    path = "/lists",
    tag = "audience",
    summary = "Contact lists",
    params(crate::http::audience::PageQuery),
    responses((status = 200, description = "a page of lists", body = crate::http::openapi::PageBody))
)]
pub async fn list_lists(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<List>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = lists::list(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |l| l.id)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

#[utoipa::path(
    post,
    path = "/lists",
    tag = "audience",
    summary = "Create a list",
    request_body = NewList,
    responses((status = 201, description = "the list", body = Object))
)]
pub async fn create_list(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Json(body): Json<NewList>,
) -> Result<Response, AppError> {
    let name = valid_name(&body.name)?;
    let description = valid_description(body.description.as_deref())?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let list = lists::create(&mut tx, name, description, now_ms(&state))
        .await
        .map_err(conflict)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(list)).into_response())
}

#[utoipa::path(
    get,
    path = "/lists/{id}",
    tag = "audience",
    summary = "A list",
    params(("id" = uuid::Uuid, Path, description = "list id")),
    responses((status = 200, description = "the list", body = Object))
)]
pub async fn get_list(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<List>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let list = lists::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("list"))?;
    tx.commit().await?;
    Ok(axum::Json(list))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    /// A string sets it; `null` clears it.
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
}

#[utoipa::path(
    patch,
    path = "/lists/{id}",
    tag = "audience",
    summary = "Rename or describe a list",
    params(("id" = uuid::Uuid, Path, description = "list id")),
    request_body = ListPatch,
    responses((status = 200, description = "the list", body = Object))
)]
pub async fn update_list(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<ListPatch>,
) -> Result<axum::Json<List>, AppError> {
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let description = description_change(&body.description)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    if !lists::exists(&mut tx, id).await? {
        return Err(AppError::NotFound("list"));
    }
    let list = lists::update(&mut tx, id, name, description, now_ms(&state))
        .await
        .map_err(conflict)?;
    tx.commit().await?;
    Ok(axum::Json(list))
}

#[utoipa::path(
    delete,
    path = "/lists/{id}",
    tag = "audience",
    summary = "Delete a list",
    params(("id" = uuid::Uuid, Path, description = "list id")),
    responses((status = 204, description = "deleted"))
)]
pub async fn delete_list(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    if !lists::delete(&mut tx, id).await.map_err(conflict)? {
        return Err(AppError::NotFound("list"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/lists/{id}/members",
    tag = "audience",
    summary = "Contacts in a list",
    params(("id" = uuid::Uuid, Path, description = "list id"), crate::http::audience::PageQuery),
    responses((status = 200, description = "a page of contacts", body = crate::http::openapi::PageBody))
)]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Contact>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if !lists::exists(&mut tx, id).await? {
        return Err(AppError::NotFound("list"));
    }
    let search = ContactSearch {
        list_id: Some(id),
        ..Default::default()
    };
    let rows = contacts::search(&mut tx, &search, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

/// A contact search in a request body (same filters as `GET /contacts`).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    q: Option<String>,
    tag: Option<String>,
    country: Option<String>,
    language: Option<String>,
    #[schema(value_type = Option<crate::http::openapi::MarketingStateName>)]
    marketing_state: Option<String>,
    list_id: Option<Uuid>,
    segment_id: Option<Uuid>,
}

fn to_search(s: SearchBody) -> Result<ContactSearch, AppError> {
    let marketing_state = s
        .marketing_state
        .map(|m| {
            m.parse::<MarketingState>().map_err(|e| {
                AppError::unprocessable("invalid_field", format!("search.marketing_state: {e}"))
            })
        })
        .transpose()?;
    let search = ContactSearch {
        q: s.q.filter(|q| !q.trim().is_empty()),
        tag: s.tag,
        country: s.country,
        language: s.language,
        marketing_state,
        list_id: s.list_id,
        segment_id: s.segment_id,
    };
    Ok(search)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    #[serde(default)]
    contact_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    search: Option<SearchBody>,
}

/// The contacts a members request names (ids, or everyone matching a search).
async fn resolve_members(tx: &mut TenantTx, body: MembersBody) -> Result<Vec<Uuid>, AppError> {
    match (body.contact_ids, body.search) {
        (Some(ids), None) => {
            if ids.len() > MAX_CONTACT_IDS {
                return Err(AppError::unprocessable(
                    "invalid_field",
                    format!("contact_ids: at most {MAX_CONTACT_IDS} per request"),
                ));
            }
            Ok(ids)
        }
        (None, Some(s)) => {
            let search = to_search(s)?;
            if search.is_empty() {
                return Err(AppError::unprocessable(
                    "invalid_field",
                    "search: give at least one filter",
                ));
            }
            if let Some(l) = search.list_id
                && !lists::exists(tx, l).await?
            {
                return Err(AppError::NotFound("list"));
            }
            if let Some(s) = search.segment_id
                && segments::get(tx, s).await?.is_none()
            {
                return Err(AppError::NotFound("segment"));
            }
            Ok(contacts::search_ids(tx, &search).await?)
        }
        _ => Err(AppError::unprocessable(
            "invalid_field",
            "give exactly one of contact_ids or search",
        )),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MembersAdded {
    pub added: usize,
    pub already_members: usize,
    pub not_found: usize,
}

#[utoipa::path(
    post,
    path = "/lists/{id}/members",
    tag = "audience",
    summary = "Add contacts (by id or by search) to a list",
    params(("id" = uuid::Uuid, Path, description = "list id")),
    request_body = MembersBody,
    responses((status = 200, description = "how many were added", body = MembersAdded))
)]
pub async fn add_members(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<MembersBody>,
) -> Result<axum::Json<MembersAdded>, AppError> {
    let now = now_ms(&state);
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    if !lists::exists(&mut tx, id).await? {
        return Err(AppError::NotFound("list"));
    }
    let source = if body.search.is_some() {
        "search"
    } else {
        "api"
    };
    let mut ids = resolve_members(&mut tx, body).await?;
    ids.sort_unstable();
    ids.dedup();
    let joined = lists::add_members(&mut tx, id, &ids, source, now).await?;
    let mut already = 0;
    for c in &ids {
        if !joined.contains(c) && lists::is_member(&mut tx, id, *c).await? {
            already += 1;
        }
    }
    audience::list_membership_changed(&mut tx, id, &joined, &[], source, now).await?;
    tx.commit().await?;
    Ok(axum::Json(MembersAdded {
        added: joined.len(),
        already_members: already,
        not_found: ids.len() - joined.len() - already,
    }))
}

#[utoipa::path(
    delete,
    path = "/lists/{id}/members",
    tag = "audience",
    summary = "Remove contacts from a list",
    params(("id" = uuid::Uuid, Path, description = "list id")),
    request_body = MembersBody,
    responses((status = 200, description = "how many were removed", body = Object))
)]
pub async fn remove_members(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<MembersBody>,
) -> Result<axum::Json<Value>, AppError> {
    let now = now_ms(&state);
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    if !lists::exists(&mut tx, id).await? {
        return Err(AppError::NotFound("list"));
    }
    let ids = resolve_members(&mut tx, body).await?;
    let left = lists::remove_members(&mut tx, id, &ids).await?;
    audience::list_membership_changed(&mut tx, id, &[], &left, "api", now).await?;
    tx.commit().await?;
    Ok(axum::Json(json!({ "removed": left.len() })))
}

/// `GET /contacts` filters that need the audience tables.
pub struct ContactFilters {
    pub marketing_state: Option<String>,
    pub tag: Option<String>,
    pub country: Option<String>,
    pub q: Option<String>,
    pub language: Option<String>,
    pub list_id: Option<Uuid>,
    pub segment_id: Option<Uuid>,
}

/// One page of contacts matching `f`; an unknown list or segment is a 404.
pub async fn search_contacts(
    tx: &mut TenantTx,
    f: ContactFilters,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Contact>, AppError> {
    if let Some(l) = f.list_id
        && !lists::exists(tx, l).await?
    {
        return Err(AppError::NotFound("list"));
    }
    if let Some(s) = f.segment_id
        && segments::get(tx, s).await?.is_none()
    {
        return Err(AppError::NotFound("segment"));
    }
    let search = to_search(SearchBody {
        q: f.q,
        tag: f.tag,
        country: f.country,
        language: f.language,
        marketing_state: f.marketing_state,
        list_id: f.list_id,
        segment_id: f.segment_id,
    })
    .map_err(|_| {
        AppError::bad_request("invalid_query", "marketing_state is not a marketing state")
    })?;
    Ok(contacts::search(tx, &search, before, limit).await?)
}

#[derive(Serialize)]
pub struct Membership {
    pub id: Uuid,
    pub name: String,
}

/// The lists and segments a contact is in.
pub async fn memberships_of(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<(Vec<Membership>, Vec<Membership>), StoreError> {
    let to = |v: Vec<(Uuid, String)>| {
        v.into_iter()
            .map(|(id, name)| Membership { id, name })
            .collect::<Vec<_>>()
    };
    Ok((
        to(lists::of_contact(tx, contact).await?),
        to(segments::of_contact(tx, contact).await?),
    ))
}
