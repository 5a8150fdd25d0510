//! The `/sandbox/…` control API (JSON; behind the operator token when one is
//! configured, which `galantis serve` always does) and the inbound-message
//! simulation it exposes. Each route
//! is a thin wrapper over a `MetaSandbox` method of the same purpose, so
//! Rust tests can do the same without HTTP. The route table is in the
//! module documentation (`meta/mod.rs`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{
    DEV_PHONE_NUMBER_ID, DEV_WABA_ID, FailureRule, NumberConfig, SandboxSettings, TemplateSeed,
    WebhookBehaviour,
};
use super::inbound::InboundMessage;
use super::state::MetaSandbox;
use super::validate::wa_id_of;

/// Every control route with its methods. The router below must match it (a
/// unit test checks both ways); the integration tests walk this list to prove
/// that none answers without the operator token.
pub const CONTROL_ROUTES: &[(&str, &[Method])] = &[
    ("/sandbox", &[Method::GET]),
    ("/sandbox/numbers", &[Method::GET, Method::POST]),
    ("/sandbox/settings", &[Method::GET, Method::PATCH]),
    ("/sandbox/webhooks", &[Method::GET, Method::PATCH]),
    (
        "/sandbox/failures",
        &[Method::GET, Method::POST, Method::DELETE],
    ),
    ("/sandbox/windows", &[Method::POST]),
    ("/sandbox/inbound", &[Method::POST]),
    ("/sandbox/templates", &[Method::GET, Method::POST]),
    ("/sandbox/templates/status", &[Method::POST]),
    ("/sandbox/counters", &[Method::GET]),
    ("/sandbox/messages", &[Method::GET]),
    ("/sandbox/reset", &[Method::POST]),
];

/// Control bodies are small JSON objects; nothing larger is buffered.
pub const CONTROL_BODY_LIMIT: usize = 64 * 1024;

/// The control routes, each behind the operator token and the body limit
/// (`route_layer`: unknown paths still fall through to the Graph-style 404).
pub(super) fn control_routes(sb: MetaSandbox) -> axum::Router<MetaSandbox> {
    routes_without_guard()
        .route_layer(axum::middleware::from_fn_with_state(sb, guard))
        .route_layer(DefaultBodyLimit::max(CONTROL_BODY_LIMIT))
}

/// Operator token first (nothing about the request is looked at before),
/// then a declared length over the limit is refused without reading it.
async fn guard(State(sb): State<MetaSandbox>, req: Request, next: Next) -> Response {
    let request_id = request_id_of(&req);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if !sb.control_token_ok(token) {
        let mut r = error_response(
            StatusCode::UNAUTHORIZED,
            "sandbox_token_required",
            "the sandbox control API needs `Authorization: Bearer <sandbox token>` (see sandbox.token in the data directory)",
            &request_id,
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"galantis-sandbox\""),
        );
        return r;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > CONTROL_BODY_LIMIT as u64) {
        return too_large_for(&request_id);
    }
    REQUEST_ID.scope(request_id, next.run(req)).await
}

tokio::task_local! {
    /// The request id of the control request being handled, for the error
    /// bodies its handlers build.
    static REQUEST_ID: String;
}

/// The `x-request-id` the request carries, if well-formed. Mounted in
/// `galantis serve`, the server's request-id middleware has already put its
/// id there, so the sandbox's errors name the same id as the server's; on
/// its own, the sandbox echoes a client's id or leaves it empty.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .unwrap_or_default()
        .to_owned()
}

const REQUEST_ID_HEADER: &str = "x-request-id";

/// The control API's own errors have the server's API error shape
/// (`{"error":{"code","message","request_id"}}`), since operators read them
/// next to the server's; the Graph routes answer in Meta's envelope instead.
fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "request_id": request_id,
        }
    });
    (status, Json(body)).into_response()
}

fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The sentence of the server's 413 `payload_too_large`, so a client sees one
/// error whichever limit refused its body.
const PAYLOAD_TOO_LARGE_MESSAGE: &str = "the request body is larger than allowed";

fn too_large_for(request_id: &str) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        PAYLOAD_TOO_LARGE_MESSAGE,
        request_id,
    )
}

fn too_large() -> Response {
    too_large_for(&current_request_id())
}

/// A body the extractor refused: too large stays 413, the rest is a 400.
fn rejected(e: axum::extract::rejection::JsonRejection) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        bad(e.body_text())
    }
}

/// Changes that only `galantis sandbox meta` (or the server itself, through
/// the Rust API) may make: where webhooks go and what signs them.
fn locked(what: &str) -> Response {
    error_response(
        StatusCode::FORBIDDEN,
        "sandbox_setting_locked",
        &format!(
            "{what} of the sandbox mounted in galantis serve cannot be changed (run `galantis sandbox meta` to choose it)"
        ),
        &current_request_id(),
    )
}

fn routes_without_guard() -> axum::Router<MetaSandbox> {
    axum::Router::new()
        .route("/sandbox", get(overview))
        .route("/sandbox/numbers", get(numbers).post(upsert_number))
        .route("/sandbox/settings", get(settings).patch(patch_settings))
        .route("/sandbox/webhooks", get(webhooks).patch(patch_webhooks))
        .route(
            "/sandbox/failures",
            get(failures).post(add_failure).delete(clear_failures),
        )
        .route("/sandbox/windows", post(set_window))
        .route("/sandbox/inbound", post(inbound))
        .route("/sandbox/templates", get(templates).post(add_template))
        .route("/sandbox/templates/status", post(template_status))
        .route("/sandbox/counters", get(counters))
        .route("/sandbox/messages", get(messages))
        .route("/sandbox/reset", post(reset))
}

/// A control error: `{"error":{"message"}}` with 400.
fn bad(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "message": message.to_string() } })),
    )
        .into_response()
}

fn ok(v: impl serde::Serialize) -> Response {
    Json(v).into_response()
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn overview(State(sb): State<MetaSandbox>) -> Response {
    ok(json!({
        "sandbox": true,
        "settings": sb.settings(),
        "webhooks": sb.webhook_behaviour(),
        "numbers": sb.numbers(),
        "failures": sb.failures(),
        "templates": sb.templates(None).len(),
    }))
}

async fn numbers(State(sb): State<MetaSandbox>) -> Response {
    ok(sb.numbers())
}

async fn upsert_number(State(sb): State<MetaSandbox>, body: JsonBody<NumberConfig>) -> Response {
    match body {
        Ok(Json(n)) if n.messages_per_second == 0 => bad("messages_per_second must be at least 1"),
        Ok(Json(n)) => {
            sb.upsert_number(n.clone());
            ok(n)
        }
        Err(e) => rejected(e),
    }
}

/// Applies the fields of `patch` over `current` (a JSON object merge), so
/// a PATCH names only what it changes; unknown fields are refused.
fn merge<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: Value,
) -> Result<T, String> {
    let Value::Object(fields) = patch else {
        return Err("expected a JSON object".into());
    };
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    for (k, v) in fields {
        merged[k] = v;
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

async fn settings(State(sb): State<MetaSandbox>) -> Response {
    ok(sb.settings())
}

async fn patch_settings(State(sb): State<MetaSandbox>, body: JsonBody<Value>) -> Response {
    let mut patch = match body {
        Ok(Json(p)) => p,
        Err(e) => return rejected(e),
    };
    // The secret is never serialised, so it is carried over by hand.
    let secret = patch.as_object_mut().and_then(|o| o.remove("app_secret"));
    if secret.is_some() && sb.locked() {
        return locked("the signing secret");
    }
    // The mount's Graph access token is the server's own; an empty list
    // would let any token send.
    if sb.locked() && patch.get("tokens").is_some() {
        return locked("the accepted access tokens");
    }
    let current = sb.settings();
    let mut next: SandboxSettings = match merge(&current, patch) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    next.app_secret = match secret {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return bad("app_secret must be a non-empty string"),
        None => current.app_secret,
    };
    sb.update_settings(|s| *s = next.clone());
    ok(next)
}

async fn webhooks(State(sb): State<MetaSandbox>) -> Response {
    ok(sb.webhook_behaviour())
}

async fn patch_webhooks(State(sb): State<MetaSandbox>, body: JsonBody<Value>) -> Response {
    let patch = match body {
        Ok(Json(p)) => p,
        Err(e) => return rejected(e),
    };
    if sb.locked() && patch.get("url").is_some() {
        return locked("the webhook URL");
    }
    match merge::<WebhookBehaviour>(&sb.webhook_behaviour(), patch) {
        Ok(next) => {
            sb.update_webhooks(|w| *w = next.clone());
            ok(next)
        }
        Err(e) => bad(e),
    }
}

async fn failures(State(sb): State<MetaSandbox>) -> Response {
    ok(sb.failures())
}

async fn add_failure(State(sb): State<MetaSandbox>, body: JsonBody<FailureRule>) -> Response {
    match body {
        Ok(Json(rule)) => ok(json!({ "id": sb.add_failure(rule) })),
        Err(e) => rejected(e),
    }
}

async fn clear_failures(
    State(sb): State<MetaSandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = match q.get("id").map(|i| i.parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return bad("id must be a number"),
    };
    sb.clear_failures(id);
    ok(json!({ "success": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRequest {
    #[serde(default)]
    phone_number_id: Option<String>,
    wa_id: String,
    #[serde(default = "yes")]
    open: bool,
}

fn yes() -> bool {
    true
}

async fn set_window(State(sb): State<MetaSandbox>, body: JsonBody<WindowRequest>) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return rejected(e),
    };
    let Some(wa_id) = wa_id_of(&r.wa_id) else {
        return bad("wa_id is not a phone number");
    };
    let number = r
        .phone_number_id
        .unwrap_or_else(|| DEV_PHONE_NUMBER_ID.to_owned());
    sb.set_window(&number, &wa_id, r.open);
    ok(
        json!({ "phone_number_id": number, "wa_id": wa_id, "open": sb.window_open(&number, &wa_id) }),
    )
}

async fn inbound(State(sb): State<MetaSandbox>, body: JsonBody<InboundMessage>) -> Response {
    let m = match body {
        Ok(Json(m)) => m,
        Err(e) => return rejected(e),
    };
    match sb.inbound(m) {
        Ok(id) => ok(json!({ "id": id })),
        Err(e) => bad(e),
    }
}

async fn templates(
    State(sb): State<MetaSandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let list: Vec<Value> = sb
        .templates(q.get("waba_id").map(String::as_str))
        .into_iter()
        .map(|t| {
            let waba = t.waba_id.clone();
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["waba_id"] = json!(waba);
            v
        })
        .collect();
    ok(list)
}

async fn add_template(State(sb): State<MetaSandbox>, body: JsonBody<TemplateSeed>) -> Response {
    let seed = match body {
        Ok(Json(s)) => s,
        Err(e) => return rejected(e),
    };
    match sb.add_template(seed) {
        Ok(t) => ok(t),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    #[serde(default)]
    waba_id: Option<String>,
    name: String,
    #[serde(default)]
    language: Option<String>,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn template_status(State(sb): State<MetaSandbox>, body: JsonBody<StatusRequest>) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return rejected(e),
    };
    let waba = r.waba_id.unwrap_or_else(|| DEV_WABA_ID.to_owned());
    match sb.set_template_status(
        &waba,
        &r.name,
        r.language.as_deref(),
        &r.status,
        r.reason.as_deref(),
    ) {
        Ok(changed) => ok(changed),
        Err(e) => bad(e),
    }
}

async fn counters(
    State(sb): State<MetaSandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut c = sb.counters();
    // Narrow the (possibly huge) maps to the keys asked about.
    if let Some(r) = q.get("recipient") {
        c.accepted_by_recipient.retain(|k, _| k == r);
    }
    if let Some(d) = q.get("callback_data") {
        c.accepted_by_callback_data.retain(|k, _| k == d);
    }
    ok(c)
}

async fn messages(
    State(sb): State<MetaSandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let to = q.get("to").and_then(|t| wa_id_of(t));
    let data = q.get("callback_data");
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100);
    let list: Vec<_> = sb
        .messages()
        .into_iter()
        .filter(|m| to.as_ref().is_none_or(|t| &m.wa_id == t))
        .filter(|m| data.is_none_or(|d| m.biz_opaque_callback_data.as_ref() == Some(d)))
        .collect();
    let skip = list.len().saturating_sub(limit);
    ok(json!({ "data": &list[skip..], "total": list.len() }))
}

async fn reset(State(sb): State<MetaSandbox>) -> Response {
    sb.reset();
    ok(json!({ "success": true }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::meta::{SandboxConfig, router};

    const TOKEN: &str = "control-token-for-unit-tests";

    async fn call(req: Request<Body>) -> (StatusCode, Value) {
        let app = router(MetaSandbox::new(
            SandboxConfig::default().with_control_token(TOKEN).locked(),
        ));
        let r = app.oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn request(method: &str, path: &str, token: Option<&str>, id: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(id) = id {
            b = b.header(REQUEST_ID_HEADER, id);
        }
        b.body(Body::from("{}")).unwrap()
    }

    // Mounted in the server, the request id arrives in `x-request-id`; every
    // control error names it, as the server's own errors do.
    #[tokio::test]
    async fn control_errors_have_the_api_shape_and_the_request_id() {
        let (s, b) = call(request("GET", "/sandbox", None, Some("req-1.a_B"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error"]["code"], "sandbox_token_required");
        assert_eq!(b["error"]["request_id"], "req-1.a_B");

        // Raised inside a handler (the task-local, not the header, carries it).
        let mut req = request("PATCH", "/sandbox/webhooks", Some(TOKEN), Some("req-2"));
        *req.body_mut() = Body::from(r#"{"url":"http://elsewhere.example/hook"}"#);
        let (s, b) = call(req).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["error"]["code"], "sandbox_setting_locked");
        assert_eq!(b["error"]["request_id"], "req-2");

        let mut req = request("POST", "/sandbox/inbound", Some(TOKEN), Some("req-3"));
        req.headers_mut().insert(
            header::CONTENT_LENGTH,
            (CONTROL_BODY_LIMIT + 1).to_string().parse().unwrap(),
        );
        let (s, b) = call(req).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b["error"]["code"], "payload_too_large");
        assert_eq!(b["error"]["message"], PAYLOAD_TOO_LARGE_MESSAGE);
        assert_eq!(b["error"]["request_id"], "req-3");
    }

    #[tokio::test]
    async fn a_missing_or_malformed_request_id_is_left_empty() {
        let long = "x".repeat(65);
        for id in [None, Some("has space"), Some(long.as_str())] {
            let (s, b) = call(request("GET", "/sandbox", None, id)).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{id:?}");
            assert_eq!(b["error"]["request_id"], "", "{id:?}");
        }
    }
}
