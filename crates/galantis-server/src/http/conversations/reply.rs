//! `POST /conversations/{id}/messages`: a reply through the one send path,
//! or an internal note that is never sent.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use galantis_store::tenant::conversations as store;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{load, record_updated};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::sending::connection;
use crate::sending::queue::{NewSend, TemplateSend, queue_in, refusal_error};
use crate::state::AppState;

/// Media by a public link or an uploaded media id.
#[derive(Deserialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct MediaRef {
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    caption: Option<String>,
}

/// Exactly one of `text`, `template`, `image`, `document`, `audio`,
/// `video` (a message to the customer) or `note` (for members only).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default)]
    text: Option<String>,
    /// `{"name", "language", "components"?}` in Meta's send shape.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    template: Option<TemplateSend>,
    #[serde(default)]
    image: Option<MediaRef>,
    #[serde(default)]
    document: Option<MediaRef>,
    #[serde(default)]
    audio: Option<MediaRef>,
    #[serde(default)]
    video: Option<MediaRef>,
    #[serde(default)]
    note: Option<String>,
    /// Makes the request idempotent (also the `Idempotency-Key` header).
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", message)
}

/// Typed text (a reply, a note, a caption): 1 to 4,096 characters, line
/// breaks allowed, no other control or bidi-override characters.
pub(crate) fn text_field<'a>(field: &str, value: &'a str) -> Result<&'a str, AppError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    galantis_core::text::check_multiline(field, value, 4096).map_err(|e| invalid(e.to_string()))
}

/// Meta's media object, checked: one of `link` (http or https) and `id`.
fn media(kind: &str, m: &MediaRef) -> Result<Value, AppError> {
    let mut out = json!({});
    match (&m.link, &m.id) {
        (Some(link), None) => {
            let ok = (link.starts_with("https://") || link.starts_with("http://"))
                && link.len() <= 2048
                && reqwest::Url::parse(link).is_ok();
            if !ok {
                return Err(invalid(format!("{kind}.link must be an http(s) URL")));
            }
            out["link"] = json!(link);
        }
        (None, Some(id)) => {
            if id.trim().is_empty() || id.len() > 128 {
                return Err(invalid(format!("{kind}.id must be a media id")));
            }
            out["id"] = json!(id);
        }
        _ => return Err(invalid(format!("{kind} needs exactly one of link and id"))),
    }
    if let Some(c) = &m.caption {
        if kind == "audio" {
            return Err(invalid("audio takes no caption"));
        }
        if c.chars().count() > 1024 {
            return Err(invalid(format!(
                "{kind}.caption must have at most 1,024 characters"
            )));
        }
        out["caption"] = json!(text_field("caption", c)?);
    }
    Ok(out)
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/messages",
    tag = "inbox",
    summary = "Reply in a conversation (text and media inside the service window, templates any time) or add an internal note",
    params(("id" = uuid::Uuid, Path, description = "conversation id")),
    request_body = Reply,
    responses(
        (status = 202, description = "the reply, queued", body = Object),
        (status = 200, description = "the reply of an idempotency key already used", body = Object),
        (status = 201, description = "the note", body = Object),
        (status = 422, description = "e.g. `outside_service_window`: free-form outside the window", body = Object)
    )
)]
pub async fn post(
    State(state): State<AppState>,
    auth: Authed<perm::InboxReply>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(req): Json<Reply>,
) -> Result<Response, AppError> {
    let given = [
        req.text.is_some(),
        req.template.is_some(),
        req.image.is_some(),
        req.document.is_some(),
        req.audio.is_some(),
        req.video.is_some(),
        req.note.is_some(),
    ]
    .into_iter()
    .filter(|g| *g)
    .count();
    if given != 1 {
        return Err(invalid(
            "give exactly one of text, template, image, document, audio, video, note",
        ));
    }
    let member = auth.member_id.as_uuid();
    let now = state.clock.now();
    if let Some(note) = &req.note {
        let note = text_field("note", note)?;
        let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
        let conv = load(&mut tx, id).await?;
        let n = store::add_note(&mut tx, conv.id, member, note, now.timestamp_millis()).await?;
        tx.commit().await?;
        let mut v = serde_json::to_value(&n).unwrap_or_default();
        v["type"] = json!("note");
        return Ok((StatusCode::CREATED, axum::Json(v)).into_response());
    }
    let key = req.idempotency_key.clone().or_else(|| {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let mut send = NewSend {
        source: Some("inbox".into()),
        idempotency_key: key,
        template: req.template.clone(),
        ..Default::default()
    };
    if let Some(t) = &req.text {
        send.text = Some(json!({"body": text_field("text", t)?}));
    }
    for (kind, m, slot) in [
        ("image", &req.image, &mut send.image),
        ("document", &req.document, &mut send.document),
        ("audio", &req.audio, &mut send.audio),
        ("video", &req.video, &mut send.video),
    ] {
        if let Some(m) = m {
            *slot = Some(media(kind, m)?);
        }
    }
    let conn = connection::resolve(&state, auth.tenant_id)
        .await
        .map_err(AppError::Internal)?;
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let conv = load(&mut tx, id).await?;
    send.contact_id = conv.contact_id;
    send.phone_number_id = Some(conv.phone_number_id.clone());
    let outgoing = send.validate()?;
    let queued = match queue_in(&mut tx, &conn, now, &outgoing).await? {
        Ok(q) => q,
        // Dropping the transaction leaves no trace of the refused reply.
        Err(r) => return Err(refusal_error(&r)),
    };
    let mut auto_assigned = false;
    if !queued.duplicate {
        auto_assigned = store::after_reply(
            &mut tx,
            &conv,
            queued.message.id,
            member,
            now.timestamp_millis(),
        )
        .await?;
        if auto_assigned {
            record_updated(&state, &mut tx, conv.id, "auto_assignment", Some(member)).await?;
        }
    }
    tx.commit().await?;
    let mut v = serde_json::to_value(&queued.message).unwrap_or_default();
    v["direction"] = json!("outbound");
    v["type"] = json!(queued.message.kind);
    v["conversation_id"] = json!(conv.id);
    v["auto_assigned"] = json!(auto_assigned);
    let status = if queued.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(v)).into_response())
}
