//! `GET /r/{code}`: a tracked link. Counts the click (with its time) in the
//! tenant the code belongs to and redirects (302) to the target.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use galantis_store::control::tenants::{self, TenantStatus};
use galantis_store::tenant::short_links;

use crate::error::AppError;
use crate::http::extract::Path;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/r/{code}",
    tag = "storefront",
    summary = "A tracked link: counts the click and redirects",
    params(("code" = String, Path, description = "the link's code")),
    responses(
        (status = 302, description = "to the link's target"),
        (status = 404, description = "no such link"),
    )
)]
pub async fn redirect(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound("link");
    let tenant = short_links::tenant_of_code(&code).ok_or_else(not_found)?;
    match tenants::get(&state.db, tenant).await? {
        Some(t) if t.status == TenantStatus::Active => {}
        _ => return Err(not_found()),
    }
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let target = short_links::click(&mut tx, &code, now)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    metrics::counter!("galantis_short_link_clicks_total").increment(1);
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, target),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}
