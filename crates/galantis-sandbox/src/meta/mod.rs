//! The Meta Cloud API sandbox: a faithful simulator of the WhatsApp Cloud
//! API endpoints Galantis uses, for tests, benchmarks and the embedded demo
//! (design §7). Nothing it accepts ever reaches WhatsApp: every response
//! carries `x-galantis-sandbox: true` and every logged message `sandbox: true`.
//!
//! # Running it
//!
//! In process: [`MetaSandbox::spawn`] binds `SandboxConfig::bind` (default
//! `127.0.0.1:0`) and returns a [`SandboxHandle`] with the base URL; the
//! handle derefs to [`MetaSandbox`], whose methods are the control API.
//! [`router`] mounts the same routes into another axum app. Standalone:
//! `galantis sandbox meta --bind 127.0.0.1:9100 --webhook-url … --app-secret …`.
//!
//! `galantis serve` mounts it at `/sandbox-meta` only in embedded development
//! mode or with `[sandbox] enabled` (`Config::sandbox_mounted`; ADR 0007),
//! built by the server's `Sending::new` with [`SandboxConfig::locked`], an
//! operator token (the server's `sandbox::operator_token`), a per-process
//! Graph access token and its own webhook secret ([`webhook_secret_for`]),
//! never the Meta app secret.
//!
//! # Graph API (bearer token required; `access_token=` also accepted)
//!
//! | route | does |
//! |---|---|
//! | `POST /{version}/{phone_number_id}/messages` | send (`text`, `template`, `interactive`, media by `link`/`id`, `location`, `contacts`, `reaction`) |
//! | `GET /{version}/{phone_number_id}` | number info (`verified_name`, `display_phone_number`, `quality_rating`, `throughput.level`; `fields=` projects) |
//! | `GET /{version}/{waba_id}` · `GET /{version}/{template_id}` | WABA or template |
//! | `GET /{version}/{waba_id}/phone_numbers` | the WABA's numbers |
//! | `GET /{version}/{waba_id}/message_templates` | list (`name`, `status`, `language`, `category` filters, `limit`, `after` cursor) |
//! | `POST /{version}/{waba_id}/message_templates` | submit (`name`, `language`, `category`, `components`) → `{"id","status":"PENDING","category"}`, reviewed after `template_review_ms` |
//! | `DELETE /{version}/{waba_id}/message_templates?name=…[&hsm_id=…]` | delete |
//!
//! Enforced on sends, each with Meta's error envelope and code: token (190,
//! HTTP 401), number and token access (100/33), body (100; 413 when too
//! large), template existence and approval (132001; 132015 paused, 132016
//! disabled), parameter counts (132000) and kinds (132012), 24 h window for
//! free-form (131047), configured failures, per-number throughput (130429)
//! and pair rate (131056) by exact GCRA arithmetic on the injected clock.
//!
//! # Control API (JSON; operator token when configured)
//!
//! With `SandboxConfig::control_token` set (always in `galantis serve`;
//! `--control-token` standalone) every route below needs `Authorization:
//! Bearer <token>`, else 401 `sandbox_token_required`. Without one the API is
//! open, which the standalone command allows only on a loopback address.
//! Bodies are limited to [`CONTROL_BODY_LIMIT`] (413). The routes are listed
//! once, in [`CONTROL_ROUTES`]. When [`SandboxConfig::locked`], the webhook
//! `url`, the `app_secret` and the accepted `tokens` cannot be patched (403
//! `sandbox_setting_locked`).
//!
//! | route | body / query | does |
//! |---|---|---|
//! | `GET /sandbox` | | settings, webhook behaviour, numbers, failure rules |
//! | `GET·POST /sandbox/numbers` | `NumberConfig` | add or replace a number (`messages_per_second`, `access_tokens`, …) |
//! | `GET·PATCH /sandbox/settings` | any `SandboxSettings` fields | tokens, pair rate, window, review, throttle status, `app_secret` |
//! | `GET·PATCH /sandbox/webhooks` | any `WebhookBehaviour` fields | URL, status delays, duplication, reordering, retries |
//! | `GET·POST·DELETE /sandbox/failures` | `FailureRule` / `?id=` | "sends to X (or from number N) fail with code C, sync or async, n times" |
//! | `POST /sandbox/windows` | `{phone_number_id?, wa_id, open?}` | open or close a service window |
//! | `POST /sandbox/inbound` | `InboundMessage` | a user writes in: posts the `messages` webhook, opens the window |
//! | `GET·POST /sandbox/templates` | `TemplateSeed` | list, or add with a given status (no review) |
//! | `POST /sandbox/templates/status` | `{waba_id?, name, language?, status, reason?}` | set status (e.g. PAUSED) and send the webhook |
//! | `GET /sandbox/counters` | `?recipient=&callback_data=` | requests, accepted, errors by code, per recipient and per `biz_opaque_callback_data`, webhooks |
//! | `GET /sandbox/messages` | `?to=&callback_data=&limit=` | the log of accepted messages |
//! | `POST /sandbox/reset` | | forget counters, log, limiter state and windows |
//!
//! Omitted `phone_number_id`/`waba_id` mean the development number
//! ([`DEV_PHONE_NUMBER_ID`], [`DEV_WABA_ID`]).
//!
//! # Webhooks out
//!
//! POSTed to `WebhookBehaviour::url`, signed `X-Hub-Signature-256:
//! sha256=<hex HMAC-SHA256(app_secret, raw body)>`, in Meta's shapes:
//! statuses (`sent` → `delivered` → `read`, `played` for audio/video, or
//! `failed` with `errors[]`; `biz_opaque_callback_data` echoed), inbound
//! `messages`, and `message_template_status_update`. Delivery runs on
//! background tasks, retried with exponential backoff on non-2xx.

mod catalog;
pub mod config;
mod control;
pub mod errors;
mod inbound;
pub mod limits;
mod messages;
mod params;
mod payloads;
mod routes;
mod state;
mod templates;
mod validate;
mod webhooks;

use std::net::SocketAddr;
use std::ops::Deref;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::Response;
use tokio::sync::oneshot;

pub use config::{
    DEV_APP_SECRET, DEV_DISPLAY_PHONE_NUMBER, DEV_PHONE_NUMBER_ID, DEV_WABA_ID, FailureMode,
    FailureRule, NumberConfig, SandboxConfig, SandboxSettings, TemplateSeed, WebhookBehaviour,
};
pub use control::{CONTROL_BODY_LIMIT, CONTROL_ROUTES};
pub use errors::GraphError;
pub use inbound::{InboundMessage, Reply, TemplateButton};
pub use state::{ActiveFailure, Counters, MetaSandbox, SentMessage};
pub use templates::Template;
pub use webhooks::{WebhookCounters, signature};

/// The header marking every sandbox response.
pub const SANDBOX_HEADER: &str = "x-galantis-sandbox";

/// The secret the mounted sandbox signs its webhooks with, derived from the
/// operator token: every node of a deployment (which share the token) accepts
/// every node's sandbox deliveries, and it is never the Meta app secret.
pub fn webhook_secret_for(operator_token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(operator_token.as_bytes())
        .expect("HMAC takes any key");
    mac.update(b"galantis sandbox webhook secret v1");
    hex::encode(mac.finalize().into_bytes())
}

/// All sandbox routes (Graph API and `/sandbox/…` control), ready to serve
/// or to nest into another router.
pub fn router(sandbox: MetaSandbox) -> axum::Router {
    routes::graph_routes()
        .merge(control::control_routes(sandbox.clone()))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::wrong_method)
        .with_state(sandbox)
        .layer(DefaultBodyLimit::max(routes::HARD_BODY_CAP))
        .layer(axum::middleware::map_response(mark))
}

async fn mark(mut r: Response) -> Response {
    r.headers_mut()
        .insert(SANDBOX_HEADER, HeaderValue::from_static("true"));
    r
}

/// A running sandbox. Dropping it stops the server and pending webhooks.
pub struct SandboxHandle {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` — Graph paths go below it (`{base_url}/v23.0/…`).
    pub base_url: String,
    sandbox: MetaSandbox,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl MetaSandbox {
    /// Binds `config.bind` and serves the sandbox on a background task.
    pub async fn spawn(config: SandboxConfig) -> anyhow::Result<SandboxHandle> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("the Meta sandbox cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let sandbox = MetaSandbox::new(config);
        let app = router(sandbox.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "Meta sandbox server failed");
            }
        });
        tracing::info!(%addr, "Meta Cloud API sandbox listening");
        Ok(SandboxHandle {
            addr,
            base_url: format!("http://{addr}"),
            sandbox,
            shutdown: Some(tx),
            server: Some(server),
        })
    }
}

impl SandboxHandle {
    /// `{base_url}/{version}/{path}`, e.g. `graph_url("v23.0", "123/messages")`.
    pub fn graph_url(&self, version: &str, path: &str) -> String {
        format!("{}/{version}/{path}", self.base_url)
    }

    pub fn sandbox(&self) -> &MetaSandbox {
        &self.sandbox
    }

    /// Stops accepting requests and webhook delivery, and waits for the
    /// server task.
    pub async fn shutdown(mut self) {
        self.sandbox.shared.delivery.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

impl Deref for SandboxHandle {
    type Target = MetaSandbox;

    fn deref(&self) -> &MetaSandbox {
        &self.sandbox
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.sandbox.shared.delivery.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}
