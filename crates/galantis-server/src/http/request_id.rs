//! Request ids: taken from a well-formed incoming `x-request-id` or made fresh,
//! put on the response, the tracing span, and (through a task-local) every
//! error body.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, or `""` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(HEADER, v);
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        tenant_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let header = HeaderValue::from_str(&id).ok();
    let mut resp = REQUEST_ID
        .scope(id, next.run(req).instrument(span.clone()))
        .await;
    span.record("status", resp.status().as_u16());
    if let Some(h) = header {
        resp.headers_mut().insert(HEADER, h);
    }
    resp
}
