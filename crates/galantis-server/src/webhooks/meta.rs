//! Meta change handlers: inbound messages, status updates, template status.

use galantis_core::{DomainEvent, MessageStatus, PhoneE164};
use galantis_store::TenantTx;
use galantis_store::tenant::contacts;
use galantis_store::tenant::messaging::{self, InboundMessage, StatusUpdate};
use galantis_store::tenant::webhook_events::WebhookEvent;
use serde_json::Value;

use super::outcome::{HandlerError, Outcome};
use super::parse::{int, string};
use crate::jobs::JobContext;

pub async fn handle(
    ctx: &JobContext,
    tx: &mut TenantTx,
    e: &WebhookEvent,
) -> Result<Outcome, HandlerError> {
    let now = ctx.now().timestamp_millis();
    let value = e
        .payload
        .pointer("/change/value")
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = Outcome::new(e.id, ctx.now());
    match e.topic.as_str() {
        "messages" => {
            let pnid = value
                .pointer("/metadata/phone_number_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let profiles: Vec<(String, String)> = value
                .get("contacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((string(c.get("wa_id"))?, string(c.pointer("/profile/name"))?))
                })
                .collect();
            // The wamids of this event's statuses, locked at once in sorted
            // order before anything else (PostgreSQL): a send recording
            // Meta's answer for one of them either committed already (its
            // wamid is found) or waits, and sees these statuses when it
            // looks for early ones. Taken together and first, they never
            // deadlock with a send (see `sending::lock_wamid`).
            let mut wamids: Vec<String> = value
                .get("statuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| string(s.get("id")))
                .collect();
            wamids.sort_unstable();
            wamids.dedup();
            for w in &wamids {
                galantis_store::tenant::sending::lock_wamid(tx, w).await?;
            }
            for m in value
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                inbound(tx, &pnid, m, &profiles, now, &mut out).await?;
            }
            for s in value
                .get("statuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                status(tx, s, now, &mut out).await?;
            }
        }
        "message_template_status_update" => {
            let name = string(value.get("message_template_name"))
                .ok_or_else(|| HandlerError::Invalid("template event without a name".into()))?;
            let language =
                string(value.get("message_template_language")).unwrap_or_else(|| "en".into());
            let event = string(value.get("event"))
                .unwrap_or_default()
                .to_ascii_uppercase();
            if ![
                "APPROVED",
                "REJECTED",
                "PAUSED",
                "DISABLED",
                "PENDING",
                "PENDING_DELETION",
                "FLAGGED",
                "REINSTATED",
            ]
            .contains(&event.as_str())
            {
                out.ignored = Some(format!("unknown template event {event}"));
                return Ok(out);
            }
            let status = if event == "REINSTATED" {
                "APPROVED".to_owned()
            } else {
                event
            };
            let reason = string(value.get("reason")).filter(|r| r != "NONE");
            let meta_id = string(value.get("message_template_id"));
            let (id, previous) = messaging::apply_template_status(
                tx,
                &name,
                &language,
                meta_id.as_deref(),
                &status,
                reason.as_deref(),
                now,
            )
            .await?;
            let ev = DomainEvent::TemplateStatusUpdated {
                template_id: id,
                name,
                language,
                from: previous,
                to: status,
                reason,
                source: None,
            };
            out.event(tx, ev).await?;
        }
        // A marketing stop/resume took effect at ingress, with the event as proof.
        "user_preferences" => {}
        other => out.ignored = Some(format!("no handler for field {other}")),
    }
    Ok(out)
}

async fn inbound(
    tx: &mut TenantTx,
    pnid: &str,
    m: &Value,
    profiles: &[(String, String)],
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let Some(from) = string(m.get("from")) else {
        return Err(HandlerError::Invalid("message without `from`".into()));
    };
    let Some(wamid) = string(m.get("id")) else {
        return Err(HandlerError::Invalid("message without `id`".into()));
    };
    let phone = PhoneE164::from_wa_id(&from)
        .map_err(|err| HandlerError::Invalid(format!("sender: {err}")))?;
    let at = int(m.get("timestamp")).map(|s| s * 1000).unwrap_or(now);
    let profile = profiles
        .iter()
        .find(|(w, _)| *w == from)
        .map(|(_, n)| n.as_str());
    let contact = match contacts::by_phone(tx, phone.as_str()).await? {
        Some(c) => c,
        None => {
            let c = contacts::create_from_whatsapp(tx, phone.as_str(), profile, now).await?;
            let ev = DomainEvent::ContactCreated {
                contact_id: c.id,
                source: "whatsapp".into(),
            };
            out.event(tx, ev).await?;
            c
        }
    };
    let conversation = messaging::touch_conversation_inbound(tx, contact.id, pnid, at, now).await?;
    let kind = string(m.get("type")).unwrap_or_else(|| "unknown".into());
    let body = match kind.as_str() {
        "text" => string(m.pointer("/text/body")),
        "interactive" => string(m.pointer("/interactive/button_reply/title"))
            .or(string(m.pointer("/interactive/list_reply/title"))),
        "button" => string(m.pointer("/button/text")),
        _ => string(m.pointer(&format!("/{kind}/caption"))),
    };
    let inserted = messaging::insert_inbound(
        tx,
        &InboundMessage {
            conversation_id: conversation.id,
            contact_id: contact.id,
            phone_number_id: pnid,
            wamid: &wamid,
            kind: &kind,
            body: body.as_deref(),
            content: m,
            context_wamid: m.pointer("/context/id").and_then(Value::as_str),
            at_ms: at,
        },
        now,
    )
    .await?;
    if let Some(message_id) = inserted {
        let text = |path: &str| m.pointer(path).and_then(Value::as_str).map(str::to_owned);
        let ev = DomainEvent::ConversationMessageCreated {
            conversation_id: conversation.id,
            message_id,
            contact_id: contact.id,
            wamid: wamid.to_string(),
            message_type: kind,
            button_reply_id: text("/interactive/button_reply/id"),
            context_wamid: text("/context/id"),
            reopened: conversation.reopened,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}

async fn status(
    tx: &mut TenantTx,
    s: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let Some(wamid) = string(s.get("id")) else {
        return Err(HandlerError::Invalid("status without `id`".into()));
    };
    let Some(st) = s
        .get("status")
        .and_then(Value::as_str)
        .and_then(MessageStatus::from_meta)
    else {
        return Ok(());
    };
    let err = s.pointer("/errors/0");
    let update = StatusUpdate {
        wamid: &wamid,
        status: st,
        at_ms: int(s.get("timestamp")).map(|t| t * 1000).unwrap_or(now),
        error_code: err.and_then(|e| int(e.get("code"))),
        error_title: err.and_then(|e| e.get("title")).and_then(Value::as_str),
        error_detail: err
            .and_then(|e| e.get("message").or(e.pointer("/error_data/details")))
            .and_then(Value::as_str),
    };
    // Duplicates (same wamid and status) are harmless: kept once, applied once.
    if !messaging::record_status_event(tx, &update, now).await? {
        return Ok(());
    }
    let mut applied = messaging::apply_status(tx, &update, now).await?;
    if applied.is_none()
        && let Some(key) = string(s.get("biz_opaque_callback_data"))
    {
        // Our send was accepted but its job has not stored the wamid (it
        // may have died after the call): the echoed idempotency key links it.
        if let Some(id) =
            galantis_store::tenant::sending::link_by_callback_data(tx, &key, &wamid, now).await?
        {
            applied =
                messaging::message_by_wamid(tx, &wamid)
                    .await?
                    .map(|m| messaging::StatusApplied {
                        message_id: id,
                        contact_id: m.contact_id,
                        previous: "QUEUED".into(),
                        status: m.status.clone(),
                        advanced: m.status != "QUEUED",
                    });
        }
    }
    if st == MessageStatus::Failed
        && let Some(a) = &applied
    {
        // A `failed` without a prior delivery gets its credit back.
        let at = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        crate::sending::credits::refund_if_failed(tx, a.message_id, at).await?;
    }
    if let Some(applied) = applied
        && applied.advanced
    {
        let ev = DomainEvent::MessageStatusUpdated {
            message_id: applied.message_id,
            wamid: wamid.to_string(),
            from: applied.previous,
            to: applied.status,
            error_code: update.error_code,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}
