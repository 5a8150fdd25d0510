//! `GET /api/v1/realtime`: the WebSocket that pushes a tenant's events.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use galantis_store::control::tokens::{self, Principal};
use secrecy::SecretString;

use crate::error::AppError;
use crate::realtime::hub::{Dropped, Subscription};
use crate::state::AppState;

/// Close code: the node is shutting down (reconnect, with `since`).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the token was revoked, or the member removed or re-roled.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client fell behind by more than its buffer.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code: no pong nor message for two heartbeat intervals.
pub const CLOSE_TIMEOUT: u16 = 4009;

/// The query string of `/realtime`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RealtimeParams {
    /// The member's API token, for clients that cannot set
    /// `Sec-WebSocket-Protocol` (prefer the header: URLs get logged).
    token: Option<String>,
    /// The last `seq` this client received: events after it are sent first
    /// (what was missed while disconnected), then live ones.
    since: Option<i64>,
}

struct Params {
    token: Option<SecretString>,
    since: Option<i64>,
}

fn parse_query(query: HashMap<String, String>) -> Result<Params, AppError> {
    let mut p = Params {
        token: None,
        since: None,
    };
    for (k, v) in query {
        match k.as_str() {
            "token" => p.token = Some(SecretString::from(v)),
            "since" => {
                let n = v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    AppError::BadRequest {
                        code: "invalid_since",
                        message: "`since` must be a sequence number (an integer, 0 or more)".into(),
                    }
                })?;
                p.since = Some(n);
            }
            _ => {}
        }
    }
    Ok(p)
}

/// `Sec-WebSocket-Protocol: bearer, <token>` (browsers cannot set headers on
/// a WebSocket; the subprotocol list is the one they can).
fn protocol_token(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?;
    let mut parts = value.split(',').map(str::trim);
    let first = parts.next()?;
    if !first.eq_ignore_ascii_case("bearer") {
        return None;
    }
    parts
        .next()
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_owned()))
}

/// `Authorization: Bearer …`, for clients that can set headers.
fn authorization_token(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| SecretString::from(token.trim().to_owned()))
}

#[utoipa::path(
    get,
    path = "/realtime",
    tag = "realtime",
    summary = "WebSocket of the tenant's events",
    description = "Upgrades to a WebSocket (`Upgrade: websocket`). Authenticate with \
`Sec-WebSocket-Protocol: bearer, <token>` (the server answers the `bearer` subprotocol) or \
`?token=` (or `Authorization: Bearer`). Each text message is `{\"type\",\"seq\",\"data\"}` with `type` one of \
`conversation.message_created`, `conversation.updated`, `message.status_updated`, \
`template.status_updated`, `campaign.progress` (those the member's role may read); `seq` \
increases per tenant. Reconnect with `?since=<last seq>` to receive exactly what was missed. \
The server pings; a client that falls behind is closed with 4008, a revoked token with 4001.",
    params(RealtimeParams),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade, or a bad `since`"),
        (status = 401, description = "missing, invalid or revoked token"),
    )
)]
pub async fn connect(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(|e| AppError::BadRequest {
        code: "invalid_query",
        message: e.body_text(),
    })?;
    let params = parse_query(query)?;
    let token = protocol_token(&headers)
        .or(params.token)
        .or_else(|| authorization_token(&headers))
        .ok_or(AppError::Unauthenticated)?;
    let principal = tokens::authenticate(&state.db, &token)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    tracing::Span::current().record("tenant_id", tracing::field::display(principal.tenant_id));
    let ws = ws.map_err(|e| AppError::BadRequest {
        code: "websocket_upgrade_required",
        message: format!("this route is a WebSocket: {e}"),
    })?;
    let after = match params.since {
        Some(s) => s,
        None => state
            .realtime
            .last_seq(principal.tenant_id)
            .await
            .map_err(AppError::from)?,
    };
    let sub = state
        .realtime
        .subscribe(principal.tenant_id, principal.role, after);
    Ok(ws
        .protocols(["bearer"])
        .on_upgrade(move |socket| run(state, socket, principal, token, sub)))
}

async fn shutting_down(closing: &mut tokio::sync::watch::Receiver<bool>) {
    if closing.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn still_authorized(state: &AppState, token: &SecretString, was: &Principal) -> bool {
    match tokens::authenticate(&state.db, token).await {
        Ok(Some(p)) => p.member_id == was.member_id && p.role == was.role,
        Ok(None) => false,
        // The database being briefly unreachable is not a revocation.
        Err(_) => true,
    }
}

async fn run(
    state: AppState,
    socket: WebSocket,
    principal: Principal,
    token: SecretString,
    mut sub: Subscription,
) {
    metrics::gauge!("galantis_realtime_clients").increment(1.0);
    let settings = state.config.realtime.clone();
    let (mut sink, mut stream) = socket.split();
    let mut ping = tokio::time::interval(Duration::from_secs(settings.heartbeat_secs));
    ping.tick().await;
    let mut recheck = tokio::time::interval(Duration::from_secs(settings.auth_recheck_secs));
    recheck.tick().await;
    let mut missed_pings = 0u32;
    let mut closing = state.realtime.closing();
    let close = loop {
        tokio::select! {
            frame = sub.rx.recv() => match frame {
                Some(text) => {
                    if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
                        break None;
                    }
                }
                None => break sub
                    .dropped()
                    .map(|Dropped::TooSlow| (CLOSE_TOO_SLOW, "too slow: reconnect with since")),
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                // Any message (a pong, a client ping, text) shows it is alive.
                Some(Ok(_)) => missed_pings = 0,
            },
            _ = ping.tick() => {
                missed_pings += 1;
                if missed_pings > 2 {
                    break Some((CLOSE_TIMEOUT, "no pong"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            },
            () = shutting_down(&mut closing) => break Some((CLOSE_GOING_AWAY, "server shutting down")),
            _ = recheck.tick() => {
                if !still_authorized(&state, &token, &principal).await {
                    break Some((CLOSE_UNAUTHORIZED, "token revoked"));
                }
            },
        }
    };
    drop(sub);
    if let Some((code, reason)) = close {
        // A client too slow to read may not take the close frame either.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))),
        )
        .await;
    }
    metrics::gauge!("galantis_realtime_clients").decrement(1.0);
}
