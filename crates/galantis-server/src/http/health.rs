//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up",
    responses((status = 200, description = "up", body = Object))
)]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// The database is reachable and every migration (control and tenants) is
/// applied. Unauthenticated callers learn only which of the two failed: the
/// driver's text (host, port, file path) goes to the log.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "The database is reachable and migrations are current",
    responses((status = 200, description = "ready", body = Object))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, AppError> {
    const UNREACHABLE: &str = "database unreachable";
    if let Err(e) = state.db.ping().await {
        return Err(AppError::unavailable(UNREACHABLE, e));
    }
    let current = galantis_store::migrate::migrations_current(&state.db)
        .await
        .map_err(|e| AppError::unavailable(UNREACHABLE, e))?;
    if !current {
        return Err(AppError::unavailable(
            "migrations pending",
            "run `galantis migrate`",
        ));
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({"status": "ready", "database": state.db.engine().as_str()})),
    )
        .into_response())
}

/// Prometheus text exposition; behind a bearer token when `[metrics] token`
/// is set.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics.token {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected = token.expose_secret().as_bytes();
        if !bool::from(given.as_bytes().ct_eq(expected)) {
            return AppError::Unauthenticated.into_response();
        }
    }
    let body = crate::telemetry::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
