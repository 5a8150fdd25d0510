//! `POST /api/v1/messages` (validated, then queued), message reads, and the
//! WhatsApp connection settings.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galantis_core::SecretName;
use galantis_core::sending::{MAX_MESSAGES_PER_SECOND, SendError};
use galantis_store::control::phone_numbers;
use galantis_store::control::tenants::PhoneNumberLink;
use galantis_store::tenant::billing;
use galantis_store::tenant::sending::{self as store, Connection, NumberSettings, Outbound};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::sending::connection;
use crate::sending::job::SendMessage;
use crate::sending::queue::{NewSend, queue_message};
use crate::state::AppState;

fn view(m: &Outbound) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("direction".into(), json!("outbound"));
        o.insert("type".into(), json!(m.kind));
    }
    v
}

/// 202 with the QUEUED message (200 with the earlier one for a repeated
/// idempotency key).
#[utoipa::path(
    post,
    path = "/messages",
    tag = "messages",
    summary = "Queue a message (template or free-form) to a contact",
    request_body = Object,
    responses((status = 202, description = "queued", body = Object), (status = 200, description = "the message of an idempotency key already used", body = Object))
)]
pub async fn send(
    State(state): State<AppState>,
    auth: Authed<perm::MessagesSend>,
    headers: axum::http::HeaderMap,
    Json(mut req): Json<NewSend>,
) -> Result<Response, AppError> {
    if req.idempotency_key.is_none()
        && let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
    {
        req.idempotency_key = Some(k.to_owned());
    }
    let q = queue_message(&state, auth.tenant_id, req).await?;
    let status = if q.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(view(&q.message))).into_response())
}

#[utoipa::path(
    get,
    path = "/messages/{id}",
    tag = "messages",
    summary = "A message with its status",
    params(("id" = uuid::Uuid, Path, description = "message id")),
    responses((status = 200, description = "the message", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::InboxRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let m = store::outbound(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("message"))?;
    let ledger = billing::entries_for_message(&mut tx, id).await?;
    tx.commit().await?;
    let mut v = view(&m);
    v["credits"] = json!(
        ledger
            .iter()
            .map(|(k, c)| json!({"kind": k, "credits": c}))
            .collect::<Vec<_>>()
    );
    Ok(axum::Json(v))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    contact_id: Option<Uuid>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/messages",
    tag = "messages",
    summary = "Messages, newest first",
    params(ListQuery),
    responses((status = 200, description = "a page of messages", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::InboxRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page<Value>>, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list_outbound(
        &mut tx,
        &store::OutboundFilter {
            status: q.status.map(|s| s.to_ascii_uppercase()),
            contact_id: q.contact_id,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    tx.commit().await?;
    let page = Page::from_rows(rows, limit as usize, |m| m.id);
    Ok(axum::Json(Page {
        data: page.data.iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/settings/whatsapp",
    tag = "settings",
    summary = "The WhatsApp connection",
    responses((status = 200, description = "the connection", body = Object))
)]
pub async fn get_whatsapp(
    State(state): State<AppState>,
    auth: Authed<perm::SettingsRead>,
) -> Result<axum::Json<Value>, AppError> {
    state.sending.invalidate(auth.tenant_id);
    let r = connection::resolve(&state, auth.tenant_id)
        .await
        .map_err(AppError::Internal)?;
    Ok(axum::Json(connection::view(&r)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberInput {
    phone_number_id: String,
    #[serde(default)]
    messages_per_second: Option<u32>,
    #[serde(default)]
    default: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    /// The system-user token; omitted: keep the stored one (or, with none
    /// stored, use the sandbox).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    access_token: Option<SecretString>,
    waba_id: String,
    phone_numbers: Vec<NumberInput>,
}

fn meta_refusal(e: SendError) -> AppError {
    match e {
        SendError::Meta(m) => AppError::unprocessable(
            "meta_verification_failed",
            format!(
                "Meta refused these credentials: {} (error {})",
                m.reason(),
                m.code
            ),
        ),
        other => {
            AppError::unavailable("Meta could not be reached to verify the credentials", other)
        }
    }
}

/// Connects (or reconnects) WhatsApp: verified by calling Meta with the
/// token for the WABA and every number before anything is stored. A
/// reconnect releases held sends at once.
#[utoipa::path(
    put,
    path = "/settings/whatsapp",
    tag = "settings",
    summary = "Connect WhatsApp (verified with Meta before anything is stored)",
    request_body = WhatsAppSettings,
    responses((status = 200, description = "the connection", body = Object))
)]
pub async fn put_whatsapp(
    State(state): State<AppState>,
    auth: Authed<perm::SettingsWrite>,
    Json(req): Json<WhatsAppSettings>,
) -> Result<axum::Json<Value>, AppError> {
    let tenant = auth.tenant_id;
    let ids_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !ids_ok(&req.waba_id) {
        return Err(AppError::unprocessable(
            "invalid_field",
            "waba_id must be Meta's id",
        ));
    }
    if req.phone_numbers.is_empty() || req.phone_numbers.len() > 20 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "phone_numbers needs 1 to 20 numbers",
        ));
    }
    for n in &req.phone_numbers {
        if !ids_ok(&n.phone_number_id) {
            return Err(AppError::unprocessable(
                "invalid_field",
                "phone_number_id must be Meta's id",
            ));
        }
        if let Some(m) = n.messages_per_second
            && !(1..=MAX_MESSAGES_PER_SECOND).contains(&m)
        {
            return Err(AppError::unprocessable(
                "invalid_field",
                format!("messages_per_second must be between 1 and {MAX_MESSAGES_PER_SECOND}"),
            ));
        }
    }
    let defaults = req.phone_numbers.iter().filter(|n| n.default).count();
    if defaults > 1 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "at most one default number",
        ));
    }
    let default_id = req
        .phone_numbers
        .iter()
        .find(|n| n.default)
        .unwrap_or(&req.phone_numbers[0])
        .phone_number_id
        .clone();
    let stored = state
        .secrets
        .get(tenant, SecretName::MetaAccessToken)
        .await?;
    let token = req.access_token.clone().or(stored);
    let has_token = token.is_some();
    let token_text = token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_else(|| connection::sandbox_token(&state).expose_secret().to_owned());
    if token_text.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_field",
            "access_token is empty",
        ));
    }
    if !has_token && !state.sending.has_sandbox() {
        return Err(AppError::unprocessable(
            "access_token_required",
            connection::NO_SANDBOX,
        ));
    }
    let Some(base) = state.sending.base_url(has_token) else {
        return Err(AppError::unavailable_plain(
            "the Meta sandbox is not listening yet",
        ));
    };
    let api = state.sending.api(&base);
    api.get(&req.waba_id, &token_text)
        .await
        .map_err(meta_refusal)?;
    let default_mps = state.sending.config().default_messages_per_second;
    let mut numbers = Vec::new();
    for n in &req.phone_numbers {
        let info = api
            .number_info(&n.phone_number_id, &token_text)
            .await
            .map_err(meta_refusal)?;
        numbers.push(NumberSettings {
            phone_number_id: n.phone_number_id.clone(),
            waba_id: req.waba_id.clone(),
            display_phone_number: info["display_phone_number"].as_str().map(str::to_owned),
            verified_name: info["verified_name"].as_str().map(str::to_owned),
            quality_rating: info["quality_rating"].as_str().map(str::to_owned),
            messages_per_second: i64::from(n.messages_per_second.unwrap_or(default_mps)),
        });
    }
    // Verified: store.
    let links: Vec<PhoneNumberLink> = numbers
        .iter()
        .map(|n| PhoneNumberLink {
            phone_number_id: n.phone_number_id.clone(),
            waba_id: n.waba_id.clone(),
        })
        .collect();
    let mut ctl = state.db.control_tx().await?;
    phone_numbers::replace_for_tenant(&mut ctl, tenant, &links, &default_id).await?;
    ctl.commit().await?;
    if let Some(t) = &req.access_token {
        state
            .secrets
            .put(tenant, SecretName::MetaAccessToken, t)
            .await?;
    }
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(tenant).await?;
    store::replace_numbers(&mut tx, &numbers, now).await?;
    store::put_connection(
        &mut tx,
        &Connection {
            state: "connected".into(),
            reason: None,
            error_code: None,
            waba_id: Some(req.waba_id.clone()),
            credentials: if has_token { "meta" } else { "sandbox" }.into(),
            verified_at: Some(now),
            halted_at: None,
            updated_at: now,
        },
    )
    .await?;
    let released = crate::jobs::wake::<SendMessage>(&mut tx, state.clock.now()).await?;
    tx.commit().await?;
    state.sending.invalidate(tenant);
    let r = connection::resolve(&state, tenant)
        .await
        .map_err(AppError::Internal)?;
    let mut v = connection::view(&r);
    v["released_sends"] = json!(released);
    Ok(axum::Json(v))
}

/// Disconnects WhatsApp: the token is deleted and the numbers unlinked.
/// Queued sends wait until a number is connected again.
#[utoipa::path(
    delete,
    path = "/settings/whatsapp",
    tag = "settings",
    summary = "Disconnect WhatsApp",
    responses((status = 204, description = "disconnected"))
)]
pub async fn delete_whatsapp(
    State(state): State<AppState>,
    auth: Authed<perm::SettingsWrite>,
) -> Result<StatusCode, AppError> {
    let tenant = auth.tenant_id;
    let mut ctl = state.db.control_tx().await?;
    phone_numbers::replace_for_tenant(&mut ctl, tenant, &[], "").await?;
    ctl.commit().await?;
    state
        .secrets
        .delete(tenant, SecretName::MetaAccessToken)
        .await?;
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(tenant).await?;
    store::replace_numbers(&mut tx, &[], now).await?;
    store::put_connection(
        &mut tx,
        &Connection {
            state: "disconnected".into(),
            reason: Some("disconnected by a team member".into()),
            error_code: None,
            waba_id: None,
            credentials: "sandbox".into(),
            verified_at: None,
            halted_at: None,
            updated_at: now,
        },
    )
    .await?;
    tx.commit().await?;
    state.sending.invalidate(tenant);
    Ok(StatusCode::NO_CONTENT)
}
