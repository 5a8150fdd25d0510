//! CSV imports into a list: streamed, validated and staged on upload, applied
//! by a job; progress and a row report.

use super::*;
use crate::jobs::kinds::audience::{ImportUploadDeadline, UPLOAD_INTERRUPTED, upload_deadline};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
        csv_imports::touch_upload(&mut tx, self.import, now_ms(state)).await?;
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

/// Ends the upload `failed` if the handler is dropped before it settled the
/// import itself: hyper drops the request future when the client goes away
/// and the timeout layer drops it on timeout, so no code after the await
/// would run. (A process that dies mid-upload is caught by the import's
/// [`ImportUploadDeadline`] job instead.)
struct UploadGuard {
    state: AppState,
    tenant: galantis_core::TenantId,
    import: Uuid,
    armed: bool,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (state, tenant, import) = (self.state.clone(), self.tenant, self.import);
        tokio::spawn(async move {
            if let Err(e) = fail_upload(&state, tenant, import, UPLOAD_INTERRUPTED).await {
                tracing::warn!(%import, error = ?e, "could not mark an interrupted upload failed (its deadline job will)");
            }
        });
    }
}

async fn fail_upload(
    state: &AppState,
    tenant: galantis_core::TenantId,
    import: Uuid,
    reason: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.tenant_tx(tenant).await?;
    csv_imports::fail_upload(&mut tx, import, reason, i64::MAX, now_ms(state)).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /lists/{id}/imports`: the CSV body (columns phone, first_name,
/// last_name, email, consent; country, the ISO code national-format phones
/// are read in) is validated as it streams in and staged;
/// 202 with the import, whose job then applies it. A bad header is 422 and
/// leaves nothing behind. An upload over the row or byte cap, or cut off
/// (error, disconnect, timeout, crash), ends `failed` with its reason and
/// nothing of it is applied.
#[utoipa::path(
    post,
    path = "/lists/{id}/imports",
    tag = "audience",
    summary = "Import contacts from a CSV body into a list",
    params(("id" = uuid::Uuid, Path, description = "list id"), UploadQuery),
    request_body(content = String, content_type = "text/csv", description = "the CSV file: a header row, then one contact a row"),
    responses((status = 202, description = "the import, validated and staged", body = Object))
)]
pub async fn upload_import(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(list_id): Path<Uuid>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let tenant = auth.tenant_id;
    // Shown in the imports list: held to the rules of any other name.
    let filename = q
        .filename
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(|f| galantis_core::text::check_field("filename", f, MAX_NAME_CHARS))
        .transpose()
        .map_err(invalid_field)?;
    let mut tx = state.db.tenant_tx(tenant).await?;
    if !lists::exists(&mut tx, list_id).await? {
        return Err(AppError::NotFound("list"));
    }
    let import = csv_imports::create(
        &mut tx,
        list_id,
        filename,
        Some(auth.member_id.as_uuid()),
        now_ms(&state),
    )
    .await?;
    // Not visible to the job until the final transaction enqueues it.
    csv_imports::set_status(&mut tx, import, "uploading", None, now_ms(&state)).await?;
    let deadline = upload_deadline(&state.config);
    crate::jobs::enqueue(
        &mut tx,
        &ImportUploadDeadline { import_id: import },
        state.clock.now() + deadline,
    )
    .await?;
    tx.commit().await?;
    let mut guard = UploadGuard {
        state: state.clone(),
        tenant,
        import,
        armed: true,
    };

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
    guard.armed = false;
    match result {
        Ok(view) => Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response()),
        Err(e) if e.code() == "invalid_csv" => {
            // Not an import at all: nothing of it stays behind.
            let mut tx = state.db.tenant_tx(tenant).await?;
            csv_imports::delete(&mut tx, import).await?;
            tx.commit().await?;
            Err(e)
        }
        Err(e) => {
            let reason = match &e {
                AppError::Internal(_) => "the upload failed on our side".to_owned(),
                other => other.to_string(),
            };
            fail_upload(&state, tenant, import, &reason).await?;
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
    let limits = &state.config.imports;
    let mut splitter = CsvSplitter::new();
    let mut validator: Option<RowValidator> = None;
    let mut bytes = 0usize;
    let mut stream = body.into_data_stream();
    // Returning stops the read: the rest of an oversized body is never
    // buffered or staged.
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if format!("{e}").contains("length limit") {
                AppError::PayloadTooLarge
            } else {
                AppError::bad_request("invalid_request", "the request body could not be read")
            }
        })?;
        bytes += chunk.len();
        if bytes > limits.max_bytes {
            return Err(AppError::PayloadTooLarge);
        }
        let records = splitter.push(&chunk);
        take_records(records, &mut validator, staging)?;
        check_rows(staging, limits.max_rows)?;
        if staging.batch.len() >= IMPORT_BATCH_ROWS || staging.rejects.len() >= IMPORT_BATCH_ROWS {
            staging.flush(state, tenant).await?;
        }
    }
    take_records(splitter.finish(), &mut validator, staging)?;
    check_rows(staging, limits.max_rows)?;
    if validator.is_none() {
        return Err(AppError::unprocessable(
            "invalid_csv",
            galantis_core::audience::HeaderError::Empty.to_string(),
        ));
    }
    staging.flush(state, tenant).await?;
    Ok(())
}

/// 422 rather than 413: the body may be small, it is its content that is too
/// much to apply in one import.
fn check_rows(staging: &Staging, max_rows: u64) -> Result<(), AppError> {
    if staging.rows as u64 > max_rows {
        return Err(AppError::unprocessable(
            "import_too_many_rows",
            format!("an import holds at most {max_rows} rows; split the file"),
        ));
    }
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportsQuery {
    list_id: Uuid,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/imports",
    tag = "audience",
    summary = "CSV imports of a list",
    params(ImportsQuery),
    responses((status = 200, description = "a page of imports", body = crate::http::openapi::PageBody))
)]
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

#[utoipa::path(
    get,
    path = "/imports/{id}",
    tag = "audience",
    summary = "An import",
    params(("id" = uuid::Uuid, Path, description = "import id")),
    responses((status = 200, description = "the import", body = Object))
)]
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

#[utoipa::path(
    get,
    path = "/imports/{id}/report",
    tag = "audience",
    summary = "Rows an import rejected, with reasons",
    params(("id" = uuid::Uuid, Path, description = "import id"), crate::http::audience::PageQuery),
    responses((status = 200, description = "a page of rejected rows", body = crate::http::openapi::PageBody))
)]
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
