//! `AppError`: the one error type of the HTTP surface.
//!
//! Policy:
//! - Every error leaves as `{"error":{"code","message","request_id"}}` with the
//!   status that fits: 400 malformed input, 401 no valid credentials, 403 a
//!   role without the route's permission, 404 missing *or belonging to another
//!   tenant* (never 403 for that: existence must not leak), 409 conflicts, 413
//!   bodies over the limit, 422 well-formed but semantically invalid, 429 with
//!   `Retry-After`, 503 when a dependency is down. 5xx only for our faults.
//! - `code` is stable snake_case: clients may branch on it. `message` is a
//!   human sentence and may change.
//! - Internal errors are logged here, once, with their full context, and leave
//!   as a generic 500 `internal_error`: no SQL, paths, secrets or personal data
//!   reach a client.
//! - Handlers return `Result<_, AppError>`; lower layers' errors convert with
//!   `?` through the `From` impls below, which decide what is the client's fault.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use galantis_core::Permission;
use galantis_store::StoreError;
use serde_json::json;

use crate::http::request_id::current_request_id;

/// The one sentence of every 413 `payload_too_large`, whichever limit
/// (API, webhook, CSV import) refused the body: clients see one error.
pub const PAYLOAD_TOO_LARGE_MESSAGE: &str = "the request body is larger than allowed";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing, invalid or revoked API token")]
    Unauthenticated,
    #[error("your role does not have the `{0}` permission")]
    Forbidden(Permission),
    #[error("{message}")]
    ForbiddenAction { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    NotFoundCode { code: &'static str, message: String },
    #[error("missing or invalid webhook signature")]
    RejectedSignature,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{}", PAYLOAD_TOO_LARGE_MESSAGE)]
    PayloadTooLarge,
    /// 413 for a body within the byte limit that holds more items than
    /// allowed (its own code, so it is not mistaken for the byte limit).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 422 with a list of findings (`error.details`), e.g. the flow
    /// issues that block an automation's activation, each naming its node.
    #[error("{message}")]
    UnprocessableWith {
        code: &'static str,
        message: String,
        details: serde_json::Value,
    },
    /// 402: the action needs credits the tenant does not have.
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a dependency is down. `message` is all the client reads; `cause`
    /// (driver errors, addresses, upstream text) is logged here, never sent.
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        cause: Option<String>,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::TooLarge {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// A 503 whose `cause` is logged and never leaves.
    pub fn unavailable(message: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            message,
            cause: Some(cause.to_string()),
        }
    }

    /// A 503 with nothing more to log than its message.
    pub fn unavailable_plain(message: &'static str) -> Self {
        Self::Unavailable {
            message,
            cause: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::ForbiddenAction { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) | AppError::NotFoundCode { .. } => StatusCode::NOT_FOUND,
            AppError::RejectedSignature => StatusCode::UNAUTHORIZED,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge | AppError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unprocessable { .. } | AppError::UnprocessableWith { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AppError::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. }
            | AppError::ForbiddenAction { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::Unprocessable { code, .. }
            | AppError::UnprocessableWith { code, .. }
            | AppError::TooLarge { code, .. }
            | AppError::PaymentRequired { code, .. }
            | AppError::NotFoundCode { code, .. } => code,
            AppError::RejectedSignature => "invalid_signature",
            AppError::Unauthenticated => "unauthenticated",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable { .. } => "service_unavailable",
            AppError::Internal(_) => "internal_error",
        }
    }
}

/// Builds the JSON error response; used by `AppError` and by the middleware
/// that normalises errors produced outside handlers (unknown routes, body
/// limits, timeouts).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "request_id": current_request_id(),
        }
    });
    let mut resp = (status, Json(body)).into_response();
    resp.extensions_mut().insert(RenderedError);
    resp
}

/// Marks a response whose body is already the JSON error shape.
#[derive(Clone, Copy)]
pub struct RenderedError;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message = match &self {
            AppError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            AppError::Unavailable { message, cause } => {
                match cause {
                    Some(cause) => {
                        tracing::warn!(reason = %message, %cause, "dependency unavailable")
                    }
                    None => tracing::warn!(reason = %message, "dependency unavailable"),
                }
                (*message).to_owned()
            }
            other => other.to_string(),
        };
        if let AppError::UnprocessableWith { details, .. } = &self {
            let body = json!({
                "error": {
                    "code": self.code(),
                    "message": message,
                    "details": details,
                    "request_id": current_request_id(),
                }
            });
            let mut resp = (self.status(), Json(body)).into_response();
            resp.extensions_mut().insert(RenderedError);
            return resp;
        }
        let mut resp = error_response(self.status(), self.code(), &message);
        if let AppError::RateLimited { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound("resource"),
            StoreError::Conflict(code) => AppError::conflict(code, conflict_message(code)),
            StoreError::Unavailable(why) => {
                AppError::unavailable("the database is unavailable; try again", why)
            }
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Human sentences for the store's conflict codes.
pub fn conflict_message(code: &str) -> &'static str {
    match code {
        "shop_exists" => "a tenant for this shop already exists",
        "member_exists" => "a member with this email already exists in this tenant",
        "owner_exists" => "this tenant already has an owner",
        "owner_role_fixed" => "the owner's role cannot be changed and the owner cannot be removed",
        "phone_number_taken" => "this WhatsApp phone number is already connected to a tenant",
        "template_exists" => "a template with this name and language already exists",
        _ => "the request conflicts with the current state",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn unavailable_logs_its_cause_and_sends_only_its_message() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let cause = "error connecting to server at db.internal:5432: connection refused";
        let resp = tracing::subscriber::with_default(subscriber, || {
            AppError::unavailable("database unreachable", cause).into_response()
        });
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body =
            futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 16)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "service_unavailable");
        assert_eq!(body["error"]["message"], "database unreachable");
        assert!(!body.to_string().contains("db.internal"), "{body}");
        let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("database unreachable"), "{logged}");
        assert!(logged.contains(cause), "{logged}");
    }

    #[test]
    fn a_store_outage_is_a_503_without_the_drivers_text() {
        let e = AppError::from(StoreError::Unavailable(
            "cannot connect to PostgreSQL: password authentication failed for user app".into(),
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.to_string(), "the database is unavailable; try again");
    }
}
