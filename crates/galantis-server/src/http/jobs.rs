//! The queue's operator view for one tenant: lane stats, job lists (dead
//! jobs above all) and manual retry. Operators see every tenant with
//! `galantis jobs …` and `/metrics`.

use axum::extract::{Query, State};
use galantis_core::{JobId, JobState};
use galantis_store::jobs::JobView;
use galantis_store::jobs::admin::{self, LaneStats, RetryError};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Path;
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

#[derive(Serialize)]
pub struct StatsView {
    pub lanes: Vec<LaneStats>,
}

#[utoipa::path(
    get,
    path = "/jobs/stats",
    tag = "jobs",
    summary = "Job counts by lane and state",
    responses((status = 200, description = "the counts", body = Object))
)]
pub async fn stats(
    State(state): State<AppState>,
    auth: Authed<perm::JobsRead>,
) -> Result<axum::Json<StatsView>, AppError> {
    let lanes = admin::stats(&state.db, Some(auth.tenant_id), state.clock.now()).await?;
    Ok(axum::Json(StatsView { lanes }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(value_type = Option<crate::http::openapi::JobStateName>)]
    state: Option<String>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    summary = "Background jobs",
    params(ListQuery),
    responses((status = 200, description = "a page of jobs", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::JobsRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<JobView>>, AppError> {
    let job_state = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|e| AppError::bad_request("invalid_query", e))?;
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<JobId>)
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let jobs = admin::list(
        &state.db,
        Some(auth.tenant_id),
        job_state,
        before,
        limit + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_rows(jobs, limit as usize, |j| j.id)))
}

#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    summary = "A job",
    params(("id" = uuid::Uuid, Path, description = "job id")),
    responses((status = 200, description = "the job", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::JobsRead>,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobView>, AppError> {
    admin::get(&state.db, Some(auth.tenant_id), id)
        .await?
        .map(axum::Json)
        .ok_or(AppError::NotFound("job"))
}

#[utoipa::path(
    post,
    path = "/jobs/{id}/retry",
    tag = "jobs",
    summary = "Retry a dead job",
    params(("id" = uuid::Uuid, Path, description = "job id")),
    responses((status = 200, description = "the job", body = Object))
)]
pub async fn retry(
    State(state): State<AppState>,
    auth: Authed<perm::JobsWrite>,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobView>, AppError> {
    match admin::retry_dead(&state.db, Some(auth.tenant_id), id, state.clock.now()).await {
        Ok(job) => {
            tracing::info!(job = %id, "dead job retried by hand");
            Ok(axum::Json(job))
        }
        Err(RetryError::NotFound) => Err(AppError::NotFound("job")),
        Err(RetryError::NotRetryable(s)) => Err(AppError::conflict(
            "job_not_retryable",
            format!("only dead jobs can be retried; this job is {s}"),
        )),
        Err(RetryError::Store(e)) => Err(e.into()),
    }
}
