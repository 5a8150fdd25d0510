//! The Graph API surface: `/{version}/…` routes, bearer tokens, access to
//! numbers and WABAs, body limits, and Meta-style errors for everything that
//! goes wrong before a handler (unknown paths, wrong methods, bad queries).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::config::NumberConfig;
use super::errors::GraphError;
use super::state::MetaSandbox;

/// No request body is buffered beyond this, whatever the settings say.
pub(super) const HARD_BODY_CAP: usize = 16 * 1024 * 1024;

pub(super) fn graph_routes() -> axum::Router<MetaSandbox> {
    axum::Router::new()
        .route("/{version}/{id}", get(get_object))
        .route("/{version}/{id}/messages", post(post_messages))
        .route(
            "/{version}/{id}/message_templates",
            get(list_templates)
                .post(create_template)
                .delete(delete_template),
        )
        .route("/{version}/{id}/phone_numbers", get(list_numbers))
}

type Q = Result<Query<HashMap<String, String>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn respond(result: Result<Value, GraphError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `v23.0`, `v19`, … (Meta rejects other first segments as unknown paths).
fn check_version(version: &str) -> Result<(), GraphError> {
    let rest = version.strip_prefix('v').unwrap_or("");
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(major) && digits(minor) {
        Ok(())
    } else {
        Err(unknown_path(&format!("/{version}")))
    }
}

fn unknown_path(path: &str) -> GraphError {
    let mut e = GraphError::code(2500);
    e.message = format!("Unknown path components: {path}");
    e.details = e.message.clone();
    e
}

fn query(q: Q) -> Result<HashMap<String, String>, GraphError> {
    q.map(|Query(m)| m)
        .map_err(|e| GraphError::invalid(format!("Invalid query string: {e}")))
}

/// The bearer token, from `Authorization: Bearer …` or `?access_token=`.
fn token(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .or_else(|| q.get("access_token").cloned())
        .filter(|t| !t.is_empty())
}

fn body(b: Body, limit: usize) -> Result<Bytes, GraphError> {
    let too_large = || {
        let mut e = GraphError::invalid(format!("The request body exceeds {limit} bytes"));
        e.status = StatusCode::PAYLOAD_TOO_LARGE;
        e
    };
    match b {
        Ok(bytes) if bytes.len() > limit => Err(too_large()),
        Ok(bytes) => Ok(bytes),
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Err(r) => Err(GraphError::invalid(format!(
            "The request body could not be read: {r}"
        ))),
    }
}

impl MetaSandbox {
    /// Missing or unknown token: 190, as Meta answers an invalid token.
    pub(super) fn authorize(&self, token: Option<&str>) -> Result<(), GraphError> {
        let Some(token) = token else {
            return Err(GraphError::code(190)
                .details("An active access token must be used; none was given."));
        };
        let w = self.world();
        if w.settings.tokens.is_empty() || w.settings.tokens.iter().any(|t| t == token) {
            Ok(())
        } else {
            Err(GraphError::code(190))
        }
    }

    fn may_use(n: &NumberConfig, token: Option<&str>) -> bool {
        n.access_tokens.is_empty() || token.is_some_and(|t| n.access_tokens.iter().any(|a| a == t))
    }

    /// The number, if it exists and this token may use it.
    pub(super) fn authorize_number(
        &self,
        id: &str,
        token: Option<&str>,
        method: &str,
    ) -> Result<NumberConfig, GraphError> {
        self.authorize(token)?;
        let w = self.world();
        w.numbers
            .get(id)
            .filter(|n| Self::may_use(n, token))
            .cloned()
            .ok_or_else(|| GraphError::unknown_object(id, method))
    }

    /// The WABA's numbers, if it exists and this token may use one of them.
    pub(super) fn authorize_waba(
        &self,
        id: &str,
        token: Option<&str>,
        method: &str,
    ) -> Result<Vec<NumberConfig>, GraphError> {
        self.authorize(token)?;
        let w = self.world();
        let numbers: Vec<NumberConfig> = w
            .numbers
            .values()
            .filter(|n| n.waba_id == id)
            .cloned()
            .collect();
        if numbers.iter().any(|n| Self::may_use(n, token)) {
            Ok(numbers)
        } else {
            Err(GraphError::unknown_object(id, method))
        }
    }

    fn max_body(&self) -> usize {
        self.world().settings.max_body_bytes.min(HARD_BODY_CAP)
    }
}

fn phone_info(n: &NumberConfig) -> Value {
    json!({
        "verified_name": n.verified_name,
        "code_verification_status": "VERIFIED",
        "display_phone_number": format!("+{}", n.display_phone_number),
        "quality_rating": n.quality_rating,
        "platform_type": "CLOUD_API",
        "throughput": { "level": if n.messages_per_second >= 1000 { "HIGH" } else { "STANDARD" } },
        "id": n.phone_number_id,
    })
}

/// Keeps only the requested `fields` (and `id`), as Graph does.
fn project(v: Value, q: &HashMap<String, String>) -> Value {
    let (Some(fields), Value::Object(map)) = (q.get("fields"), &v) else {
        return v;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    let kept = map
        .iter()
        .filter(|(k, _)| k.as_str() == "id" || wanted.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

async fn post_messages(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Q,
    b: Body,
) -> Response {
    let prepared = check_version(&version)
        .and_then(|()| query(q))
        .and_then(|q| Ok((token(&headers, &q), body(b, sb.max_body())?)));
    match prepared {
        Ok((token, bytes)) => respond(sb.send_message(&id, token.as_deref(), &bytes)),
        Err(e) => {
            let mut w = sb.world();
            w.counters.requests += 1;
            w.record_rejection(e.code);
            e.into_response()
        }
    }
}

async fn get_object(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Q,
) -> Response {
    respond((|| {
        check_version(&version)?;
        let q = query(q)?;
        let token = token(&headers, &q);
        let known_number = sb.world().numbers.contains_key(&id);
        if known_number {
            let n = sb.authorize_number(&id, token.as_deref(), "get")?;
            return Ok(project(phone_info(&n), &q));
        }
        let template = sb.world().templates.iter().find(|t| t.id == id).cloned();
        let waba = template
            .as_ref()
            .map_or(id.as_str(), |t| t.waba_id.as_str());
        let numbers = sb.authorize_waba(waba, token.as_deref(), "get")?;
        let info = match template {
            Some(t) => serde_json::to_value(t).unwrap_or_default(),
            None => json!({
                "id": id,
                "name": numbers.first().map(|n| n.verified_name.clone()),
                "currency": "USD",
                "timezone_id": "1",
                "message_template_namespace": format!("sandbox_{id}"),
            }),
        };
        Ok(project(info, &q))
    })())
}

async fn list_numbers(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Q,
) -> Response {
    respond((|| {
        check_version(&version)?;
        let q = query(q)?;
        let numbers = sb.authorize_waba(&id, token(&headers, &q).as_deref(), "get")?;
        let data: Vec<Value> = numbers.iter().map(|n| project(phone_info(n), &q)).collect();
        Ok(json!({ "data": data }))
    })())
}

async fn list_templates(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    q: Q,
) -> Response {
    respond((|| {
        check_version(&version)?;
        let q = query(q)?;
        sb.authorize_waba(&id, token(&headers, &q).as_deref(), "get")?;
        let next_base = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|host| format!("http://{host}{}", uri.path()));
        sb.list_templates(&id, &q, next_base)
    })())
}

async fn create_template(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Q,
    b: Body,
) -> Response {
    respond((|| {
        check_version(&version)?;
        let q = query(q)?;
        sb.authorize_waba(&id, token(&headers, &q).as_deref(), "post")?;
        let bytes = body(b, sb.max_body())?;
        sb.create_template(&id, &bytes)
    })())
}

async fn delete_template(
    State(sb): State<MetaSandbox>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Q,
) -> Response {
    respond((|| {
        check_version(&version)?;
        let q = query(q)?;
        sb.authorize_waba(&id, token(&headers, &q).as_deref(), "delete")?;
        sb.delete_template(&id, &q)
    })())
}

/// Unknown paths, answered as Graph does.
pub(super) async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    unknown_path(uri.path()).into_response()
}

/// A known path with the wrong method.
pub(super) async fn wrong_method(method: Method) -> Response {
    let text = format!(
        "Unsupported {} request.",
        method.as_str().to_ascii_lowercase()
    );
    let mut e = GraphError::code(100);
    e.kind = "GraphMethodException";
    e.message = text.clone();
    e.details = text;
    e.into_response()
}
