//! The audience API: lists (CRUD, members by id or search, CSV imports with
//! progress and a row report), segments (CRUD, members, preview of unsaved
//! rules, refresh) and the campaign reach estimate.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use galantis_core::MarketingState;
use galantis_core::audience::{CsvHeader, CsvSplitter, RawRecord, RowValidator};
use galantis_core::segment::SegmentRules;
use galantis_store::tenant::audience::{self as store, AudienceSpec, ContactSearch, Estimate};
use galantis_store::tenant::contacts::{self, Contact};
use galantis_store::tenant::csv_imports::{self, Import, Reject};
use galantis_store::tenant::lists::{self, List};
use galantis_store::tenant::segments::{self, Segment};
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audience::{self, Pending};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::jobs::kinds::audience::CsvImport;
use crate::state::AppState;

/// Largest CSV upload (the import route has its own body limit).
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// Valid rows staged per batch (and applied per transaction by the job).
pub const IMPORT_BATCH_ROWS: usize = 500;
const MAX_CONTACT_IDS: usize = 10_000;

fn page_args(cursor: Option<&str>, limit: Option<u32>) -> Result<(Option<Uuid>, u32), AppError> {
    Ok((
        cursor.map(Cursor::decode::<Uuid>).transpose()?,
        limit.unwrap_or(50).clamp(1, 200),
    ))
}

fn now_ms(state: &AppState) -> i64 {
    state.clock.now().timestamp_millis()
}

fn conflict(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict("list_name_taken") => {
            AppError::conflict("list_name_taken", "a list with this name already exists")
        }
        StoreError::Conflict("segment_name_taken") => AppError::conflict(
            "segment_name_taken",
            "a segment with this name already exists",
        ),
        StoreError::Conflict("list_in_use") => AppError::conflict(
            "list_in_use",
            "a segment's rules refer to this list; change those rules first",
        ),
        other => other.into(),
    }
}

fn valid_name(name: &str) -> Result<&str, AppError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 120 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "name: required, at most 120 characters",
        ));
    }
    Ok(n)
}

fn valid_description(d: Option<&str>) -> Result<Option<&str>, AppError> {
    match d.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > 1000 => Err(AppError::unprocessable(
            "invalid_field",
            "description: at most 1000 characters",
        )),
        other => Ok(other),
    }
}

/// `description` in a PATCH: absent keeps, `null` clears, text sets.
fn description_change(v: &Option<Value>) -> Result<Option<Option<&str>>, AppError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(valid_description(Some(s))?)),
        Some(_) => Err(AppError::unprocessable(
            "invalid_field",
            "description: expected text or null",
        )),
    }
}

fn parse_rules(v: &Value) -> Result<SegmentRules, AppError> {
    SegmentRules::parse(v)
        .map_err(|e| AppError::unprocessable("invalid_segment_rules", e.to_string()))
}

// ---------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<Value>,
}

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
    let rows = store::search(&mut tx, &search, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

/// A contact search in a request body (same filters as `GET /contacts`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    q: Option<String>,
    tag: Option<String>,
    country: Option<String>,
    language: Option<String>,
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

#[derive(Deserialize)]
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
            Ok(store::search_ids(tx, &search).await?)
        }
        _ => Err(AppError::unprocessable(
            "invalid_field",
            "give exactly one of contact_ids or search",
        )),
    }
}

#[derive(Serialize)]
pub struct MembersAdded {
    pub added: usize,
    pub already_members: usize,
    pub not_found: usize,
}

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
    let mut pending = Pending::default();
    audience::list_membership_changed(&mut tx, id, &joined, &[], source, now, &mut pending).await?;
    tx.commit().await?;
    pending.publish(&state);
    Ok(axum::Json(MembersAdded {
        added: joined.len(),
        already_members: already,
        not_found: ids.len() - joined.len() - already,
    }))
}

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
    let mut pending = Pending::default();
    audience::list_membership_changed(&mut tx, id, &[], &left, "api", now, &mut pending).await?;
    tx.commit().await?;
    pending.publish(&state);
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
    Ok(store::search(tx, &search, before, limit).await?)
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

// ---------------------------------------------------------------------------
// CSV imports
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    filename: Option<String>,
}

struct Staging {
    import: Uuid,
    batch: Vec<galantis_core::audience::ImportRow>,
    rejects: Vec<Reject>,
    batches: i64,
    rows: i64,
    rejected: i64,
}

impl Staging {
    /// Writes what is buffered, in its own short transaction (staging is not
    /// business data: nothing is applied before the job runs).
    async fn flush(
        &mut self,
        state: &AppState,
        tenant: galantis_core::TenantId,
    ) -> Result<(), StoreError> {
        if self.batch.is_empty() && self.rejects.is_empty() {
            return Ok(());
        }
        let mut tx = state.db.tenant_tx(tenant).await?;
        if !self.batch.is_empty() {
            csv_imports::add_batch(&mut tx, self.import, self.batches, &self.batch).await?;
            self.batches += 1;
        }
        csv_imports::add_rejects(&mut tx, self.import, &self.rejects).await?;
        tx.commit().await?;
        self.batch.clear();
        self.rejects.clear();
        Ok(())
    }
}

fn take_records(
    records: Vec<RawRecord>,
    validator: &mut Option<RowValidator>,
    staging: &mut Staging,
) -> Result<(), AppError> {
    for r in records {
        match validator {
            None => {
                let header = CsvHeader::parse(&r)
                    .map_err(|e| AppError::unprocessable("invalid_csv", e.to_string()))?;
                *validator = Some(RowValidator::new(header));
            }
            Some(v) => {
                staging.rows += 1;
                match v.validate(r) {
                    Ok(row) => staging.batch.push(row),
                    Err(rej) => {
                        staging.rejected += 1;
                        staging.rejects.push(Reject {
                            line: rej.line as i64,
                            code: rej.reason.code().to_owned(),
                            reason: rej.reason.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// `POST /lists/{id}/imports`: the CSV body (columns phone, first_name,
/// last_name, email, consent) is validated as it streams in and staged;
/// 202 with the import, whose job then applies it. A bad header is 422 and
/// leaves nothing behind.
pub async fn upload_import(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(list_id): Path<Uuid>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let tenant = auth.tenant_id;
    let mut tx = state.db.tenant_tx(tenant).await?;
    if !lists::exists(&mut tx, list_id).await? {
        return Err(AppError::NotFound("list"));
    }
    let filename = q.filename.map(|f| f.chars().take(200).collect::<String>());
    let import = csv_imports::create(
        &mut tx,
        list_id,
        filename.as_deref(),
        Some(auth.member_id.as_uuid()),
        now_ms(&state),
    )
    .await?;
    // Not visible to the job until the final transaction enqueues it.
    csv_imports::set_status(&mut tx, import, "uploading", None, now_ms(&state)).await?;
    tx.commit().await?;

    let mut staging = Staging {
        import,
        batch: Vec::with_capacity(IMPORT_BATCH_ROWS),
        rejects: Vec::new(),
        batches: 0,
        rows: 0,
        rejected: 0,
    };
    let result = stage(&state, tenant, body, &mut staging).await;
    let result = match result {
        Ok(()) => finish(&state, tenant, &mut staging).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(view) => Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response()),
        Err(e) => {
            // Nothing of a failed upload stays behind.
            let mut tx = state.db.tenant_tx(tenant).await?;
            csv_imports::delete(&mut tx, import).await?;
            tx.commit().await?;
            Err(e)
        }
    }
}

async fn stage(
    state: &AppState,
    tenant: galantis_core::TenantId,
    body: axum::body::Body,
    staging: &mut Staging,
) -> Result<(), AppError> {
    let mut splitter = CsvSplitter::new();
    let mut validator: Option<RowValidator> = None;
    let mut bytes = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if format!("{e}").contains("length limit") {
                AppError::PayloadTooLarge
            } else {
                AppError::bad_request("invalid_request", "the request body could not be read")
            }
        })?;
        bytes += chunk.len();
        if bytes > MAX_IMPORT_BYTES {
            return Err(AppError::PayloadTooLarge);
        }
        let records = splitter.push(&chunk);
        take_records(records, &mut validator, staging)?;
        if staging.batch.len() >= IMPORT_BATCH_ROWS || staging.rejects.len() >= IMPORT_BATCH_ROWS {
            staging.flush(state, tenant).await?;
        }
    }
    take_records(splitter.finish(), &mut validator, staging)?;
    if validator.is_none() {
        return Err(AppError::unprocessable(
            "invalid_csv",
            galantis_core::audience::HeaderError::Empty.to_string(),
        ));
    }
    staging.flush(state, tenant).await?;
    Ok(())
}

async fn finish(
    state: &AppState,
    tenant: galantis_core::TenantId,
    staging: &mut Staging,
) -> Result<Import, AppError> {
    let now = now_ms(state);
    let mut tx = state.db.tenant_tx(tenant).await?;
    csv_imports::finish_upload(
        &mut tx,
        staging.import,
        staging.rows,
        staging.batches,
        staging.rejected,
    )
    .await?;
    if staging.batches == 0 {
        csv_imports::set_status(&mut tx, staging.import, "completed", None, now).await?;
    } else {
        csv_imports::set_status(&mut tx, staging.import, "queued", None, now).await?;
        crate::jobs::enqueue(
            &mut tx,
            &CsvImport {
                import_id: staging.import,
            },
            state.clock.now(),
        )
        .await?;
    }
    let view = csv_imports::get(&mut tx, staging.import)
        .await?
        .ok_or(AppError::NotFound("import"))?;
    tx.commit().await?;
    Ok(view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportsQuery {
    list_id: Uuid,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub async fn list_imports(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Query(q): Query<ImportsQuery>,
) -> Result<axum::Json<Page<Import>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if !lists::exists(&mut tx, q.list_id).await? {
        return Err(AppError::NotFound("list"));
    }
    let rows = csv_imports::list_for(&mut tx, q.list_id, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |i| i.id)))
}

pub async fn get_import(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Import>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let import = csv_imports::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("import"))?;
    tx.commit().await?;
    Ok(axum::Json(import))
}

pub async fn import_report(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Reject>>, AppError> {
    let after = q.cursor.as_deref().map(Cursor::decode::<i64>).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if csv_imports::get(&mut tx, id).await?.is_none() {
        return Err(AppError::NotFound("import"));
    }
    let rows = csv_imports::rejects(&mut tx, id, after, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |r| {
        r.line
    })))
}

// ---------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSegment {
    name: String,
    #[serde(default)]
    description: Option<String>,
    rules: Value,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<Value>,
    #[serde(default)]
    rules: Option<Value>,
}

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
    }
    let changes = segments::Changes {
        name,
        description,
        rules: body.rules.as_ref().zip(rules.as_ref()),
    };
    let (seg, entered) = segments::update(&mut tx, id, &changes, now)
        .await
        .map_err(conflict)?;
    let mut pending = Pending::default();
    pending.entered(&mut tx, &entered, now).await?;
    tx.commit().await?;
    pending.publish(&state);
    Ok(axum::Json(seg))
}

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
    let rows = store::search(&mut tx, &search, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

/// Re-evaluates a segment now over every contact.
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
    let mut pending = Pending::default();
    pending.entered(&mut tx, &entered, now).await?;
    let seg = segments::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("segment"))?;
    tx.commit().await?;
    pending.publish(&state);
    Ok(axum::Json(
        json!({ "entered": entered.len(), "segment": seg }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
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

// ---------------------------------------------------------------------------
// Reach estimate
// ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SetKind {
    List,
    Segment,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    #[serde(rename = "type")]
    kind: SetKind,
    id: Uuid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    #[serde(default)]
    include: Vec<SetRef>,
    #[serde(default)]
    exclude: Vec<SetRef>,
}

/// Splits include/exclude references into an [`AudienceSpec`].
pub fn audience_spec(include: &[SetRef], exclude: &[SetRef]) -> AudienceSpec {
    let pick = |refs: &[SetRef], k: SetKind| -> Vec<Uuid> {
        let mut v: Vec<Uuid> = refs.iter().filter(|r| r.kind == k).map(|r| r.id).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    AudienceSpec {
        include_lists: pick(include, SetKind::List),
        include_segments: pick(include, SetKind::Segment),
        exclude_lists: pick(exclude, SetKind::List),
        exclude_segments: pick(exclude, SetKind::Segment),
    }
}

/// `POST /audiences/estimate`: included, excluded, duplicates, not
/// subscribed and final reach of an audience of lists and segments.
pub async fn estimate(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Json(body): Json<EstimateBody>,
) -> Result<axum::Json<Estimate>, AppError> {
    if body.include.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_field",
            "include: at least one list or segment",
        ));
    }
    if body.include.len() + body.exclude.len() > 100 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "at most 100 lists and segments",
        ));
    }
    let spec = audience_spec(&body.include, &body.exclude);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let lists_named: Vec<Uuid> = spec
        .include_lists
        .iter()
        .chain(&spec.exclude_lists)
        .copied()
        .collect();
    let segments_named: Vec<Uuid> = spec
        .include_segments
        .iter()
        .chain(&spec.exclude_segments)
        .copied()
        .collect();
    if let Some(missing) = store::missing_ids(&mut tx, &lists_named, &segments_named)
        .await?
        .first()
    {
        return Err(AppError::NotFoundCode {
            code: "not_found",
            message: format!("list or segment {missing} not found"),
        });
    }
    let e = store::estimate(&mut tx, &spec).await?;
    tx.commit().await?;
    Ok(axum::Json(e))
}
