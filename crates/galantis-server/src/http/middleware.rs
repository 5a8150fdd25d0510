//! Cross-cutting middleware: JSON error normalisation, timeouts and HTTP
//! metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use http_body_util::BodyExt;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use crate::error::{PAYLOAD_TOO_LARGE_MESSAGE, RenderedError, error_response};

/// The two request timeouts, and who is to blame for each.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No response started within this: the server was too slow, 503 `timeout`.
    pub request: Duration,
    /// The request body delivered nothing for this long: the client was too
    /// slow, 408 `request_timeout` (whatever the handler made of the broken
    /// body, e.g. a 400 from a JSON extractor).
    pub body_read: Duration,
}

/// Both timeouts answer with the JSON error shape (tower-http's timeout layer
/// answered with an empty body).
pub async fn timeouts(State(t): State<Timeouts>, req: Request, next: Next) -> Response {
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let req = req.map(|body| {
        Body::new(TimeoutBody::new(t.body_read, body).map_err(move |e| {
            if e.is::<TimeoutError>() {
                flag.store(true, Ordering::SeqCst);
            }
            e
        }))
    });
    let result = tokio::time::timeout(t.request, next.run(req)).await;
    if stalled.load(Ordering::SeqCst) {
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body stopped arriving and was abandoned",
        );
    }
    match result {
        Ok(resp) => resp,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned",
        ),
    }
}

/// Errors produced outside handlers (unknown route, wrong method, body limit,
/// timeout, axum's own rejections) arrive as plain text; rewrite them into the
/// JSON error shape so clients see one format.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<RenderedError>().is_some()
    {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", PAYLOAD_TOO_LARGE_MESSAGE),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request body stopped arriving and was abandoned",
        ),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("timeout", "the request took too long and was abandoned")
        }
        s if s.is_server_error() => (
            "internal_error",
            "an internal error occurred; it has been logged",
        ),
        _ => ("invalid_request", "the request could not be understood"),
    };
    let mut out = error_response(status, code, message);
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Request count and latency per route template (never the raw path, which
/// would carry ids and explode label cardinality).
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("galantis_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("galantis_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
