//! Extractors that turn malformed input into `AppError`s with stable codes,
//! instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// JSON body. Errors: 415 without a JSON content type, 413 over the limit,
/// 400 `invalid_json` for syntax, 422 `invalid_field` for a missing or
/// mistyped field.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(AppError::unprocessable("invalid_field", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => Err(AppError::bad_request(
                "invalid_json",
                "the request body is not valid JSON",
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::bad_request(
                "unsupported_media_type",
                "expected Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Err(AppError::PayloadTooLarge)
                } else {
                    Err(AppError::bad_request(
                        "invalid_request",
                        "the request body could not be read",
                    ))
                }
            }
            Err(other) => Err(AppError::bad_request("invalid_request", other.body_text())),
        }
    }
}

/// Path parameters; a malformed id is a 404 (a client cannot tell "no such
/// id" from "not an id", and we do not help it probe).
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(AppError::NotFound("resource"))
            }
            Err(_) => Err(AppError::NotFound("resource")),
        }
    }
}

/// A JSON body that may be absent: an empty body gives `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::bad_request("invalid_request", "the request body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(OptionalJson(v)),
            Err(e) if e.inner().is_data() => Err(AppError::unprocessable(
                "invalid_field",
                format!("{}: {}", e.path(), e.inner()),
            )),
            Err(_) => Err(AppError::bad_request(
                "invalid_json",
                "the request body is not valid JSON",
            )),
        }
    }
}
