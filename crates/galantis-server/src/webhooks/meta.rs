//! Meta change handlers: inbound messages, status updates, template status.

use galantis_core::templates::TemplateCategory;
use galantis_core::{DomainEvent, MessageSource, MessageStatus, PhoneE164};
use galantis_store::TenantTx;
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::contacts;
use galantis_store::tenant::messaging::{self, MessagePricing, StatusRecorded, StatusUpdate};
use galantis_store::tenant::sending::connection as conn_store;
use galantis_store::tenant::templates;
use galantis_store::tenant::webhook_events::WebhookEvent;
use serde_json::Value;

use super::outcome::{HandlerError, Outcome};
use super::parse::{int, string};
use crate::jobs::JobContext;

mod inbound;
use inbound::inbound;

/// A `messages` change that carries delivery statuses and nothing else
/// (no inbound message, no contact profile): applying it needs only the
/// locks of its wamids, not the tenant's (see `process::apply`).
pub fn statuses_only(e: &WebhookEvent) -> bool {
    e.source == "meta" && statuses_only_change(&e.topic, &e.payload)
}

/// [`statuses_only`] of a change not stored yet (its field and routed
/// payload).
pub fn statuses_only_change(field: &str, payload: &Value) -> bool {
    field == "messages"
        && payload
            .pointer("/change/value")
            .and_then(Value::as_object)
            .is_some_and(|v| {
                v.contains_key("statuses")
                    && v.keys().all(|k| {
                        matches!(k.as_str(), "messaging_product" | "metadata" | "statuses")
                    })
            })
}

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
            for w in &status_wamids(&value) {
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
            statuses(tx, &value, now, &mut out).await?;
        }
        // Meta's reference shows quality changes under this field too: a
        // value with a quality score and no event is one.
        "message_template_status_update"
            if value.get("event").is_none() && value.get("new_quality_score").is_some() =>
        {
            template_quality(tx, &value, now, &mut out).await?;
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
            // A rejection's details (reason and Meta's recommendation) stay
            // with it; any other status clears them.
            let info = value
                .get("rejection_info")
                .filter(|_| status == "REJECTED")
                .filter(|v| v.is_object());
            templates::set_rejection_info(tx, id, info).await?;
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
        "message_template_quality_update" => template_quality(tx, &value, now, &mut out).await?,
        "template_category_update" => template_category(tx, &value, now, &mut out).await?,
        "message_template_components_update" => {
            template_components(tx, &value, now, &mut out).await?;
        }
        "account_update" => account_update(tx, &value, now, &mut out).await?,
        "phone_number_quality_update" => number_quality(ctx, tx, &value, now, &mut out).await?,
        "smb_message_echoes" => {
            let pnid = string(value.pointer("/metadata/phone_number_id")).unwrap_or_default();
            for m in value
                .get("message_echoes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                echo(tx, &pnid, m, now).await?;
            }
        }
        // A marketing stop/resume took effect at ingress, with the event as proof.
        "user_preferences" => {}
        other => out.ignored = Some(format!("no handler for field {other}")),
    }
    Ok(out)
}

/// The wamids of a `messages` change's statuses, sorted, each once: the
/// order their locks are taken in.
pub(super) fn status_wamids(value: &Value) -> Vec<String> {
    let mut wamids: Vec<String> = value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| string(s.get("id")))
        .collect();
    wamids.sort_unstable();
    wamids.dedup();
    wamids
}

/// Applies the delivery statuses of a `messages` change's `value`, in
/// order; the caller holds their wamids' locks.
pub(super) async fn statuses(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    for s in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        status(tx, s, now, out).await?;
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
    // What the message cost and under which conversation: kept from any
    // status that carries it (usually `sent`, again on `delivered`).
    let pricing = MessagePricing {
        billable: s.pointer("/pricing/billable").and_then(Value::as_bool),
        category: string(s.pointer("/pricing/category")),
        pricing_model: string(s.pointer("/pricing/pricing_model")),
        conversation_id: string(s.pointer("/conversation/id")),
        conversation_origin: string(s.pointer("/conversation/origin/type")),
        conversation_expires_at: int(s.pointer("/conversation/expiration_timestamp"))
            .map(|t| t * 1000),
    };
    // Duplicates (same wamid and status) are harmless: kept once, applied once.
    let StatusRecorded::New(mut applied) =
        messaging::record_and_apply(tx, &update, &pricing, now).await?
    else {
        return Ok(());
    };
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
                        // Unknown here: the wake-up looks (see `automations::wake`).
                        source: None,
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
        // Only a run can await a status, and only a waiting run needs the
        // wake-up job: asked here, after the status is written (ADR 0036).
        let sent_by_runs = applied
            .source
            .as_deref()
            .and_then(|s| s.parse::<MessageSource>().ok())
            .is_none_or(MessageSource::is_sent_by_runs);
        let awaited = sent_by_runs && runs::awaits_status(tx, applied.message_id).await?;
        let ev = DomainEvent::MessageStatusUpdated {
            message_id: applied.message_id,
            wamid: wamid.to_string(),
            from: applied.previous,
            to: applied.status,
            error_code: update.error_code,
            source: applied.source,
            awaited,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}

/// The Meta fields whose processing changes the tenant's connection (the
/// send path's cached view of it is dropped after they commit).
pub fn changes_connection(field: &str) -> bool {
    matches!(field, "account_update" | "phone_number_quality_update")
}

/// The template a template webhook names, or why there is none.
async fn named_template(
    tx: &mut TenantTx,
    value: &Value,
) -> Result<Result<(uuid::Uuid, String), String>, HandlerError> {
    let Some(name) = string(value.get("message_template_name")) else {
        return Err(HandlerError::Invalid(
            "template event without a name".into(),
        ));
    };
    let language = string(value.get("message_template_language")).unwrap_or_else(|| "en".into());
    let meta_id = string(value.get("message_template_id"));
    Ok(
        templates::find_for_meta(tx, &name, &language, meta_id.as_deref())
            .await?
            .ok_or_else(|| format!("template {name} ({language}) is not known here")),
    )
}

async fn template_quality(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let Some(score) = string(value.get("new_quality_score")).map(|s| s.to_ascii_uppercase()) else {
        return Err(HandlerError::Invalid(
            "quality update without new_quality_score".into(),
        ));
    };
    match named_template(tx, value).await? {
        Ok((id, _)) => templates::set_quality(tx, id, &score, now).await?,
        Err(why) => out.ignored = Some(why),
    }
    Ok(())
}

async fn template_category(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let parse = |key: &str| -> Result<Option<TemplateCategory>, HandlerError> {
        string(value.get(key))
            .map(|c| {
                c.to_ascii_uppercase()
                    .parse::<TemplateCategory>()
                    .map_err(|_| HandlerError::Invalid(format!("unknown template category `{c}`")))
            })
            .transpose()
    };
    let new = parse("new_category")?;
    let correct = parse("correct_category")?;
    let (id, current) = match named_template(tx, value).await? {
        Ok(t) => t,
        Err(why) => {
            out.ignored = Some(why);
            return Ok(());
        }
    };
    match (correct, new) {
        // Announced a day ahead: `new_category` is still the current one.
        (Some(upcoming), _) => {
            let at = int(value.get("category_update_timestamp")).map(|t| t * 1000);
            templates::set_upcoming_category(tx, id, upcoming, at, now).await?;
        }
        (None, Some(new)) if new.as_str() != current => {
            let previous = string(value.get("previous_category")).unwrap_or(current);
            templates::set_category(tx, id, new, &previous, now).await?;
        }
        (None, Some(_)) => out.ignored = Some("the category is unchanged".into()),
        (None, None) => {
            return Err(HandlerError::Invalid(
                "category update without a category".into(),
            ));
        }
    }
    Ok(())
}

async fn template_components(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    match named_template(tx, value).await? {
        Ok((id, _)) => {
            // Meta's shape, kept whole: title (header), element (body),
            // footer and buttons are what the template now says.
            let keep: serde_json::Map<String, Value> = value
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "message_template_title"
                            | "message_template_element"
                            | "message_template_footer"
                            | "message_template_buttons"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            templates::set_meta_components(tx, id, &Value::Object(keep), now).await?;
        }
        Err(why) => out.ignored = Some(why),
    }
    Ok(())
}

/// `account_update`: the events that stop the account from sending halt
/// the connection; the rest are informational and recorded as ignored.
async fn account_update(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let event = string(value.get("event")).unwrap_or_default();
    let halt_reason = match event.as_str() {
        "ACCOUNT_VIOLATION" => Some(format!(
            "Meta reports a policy violation on the WhatsApp Business Account ({})",
            string(value.pointer("/violation_info/violation_type")).unwrap_or("unspecified".into())
        )),
        "ACCOUNT_RESTRICTION" => {
            let kinds: Vec<String> = value
                .get("restriction_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let t = string(r.get("restriction_type"))?;
                    Some(match string(r.get("expiration")) {
                        Some(until) => format!("{t} until {until}"),
                        None => t,
                    })
                })
                .collect();
            Some(format!(
                "Meta restricted the WhatsApp Business Account: {}",
                if kinds.is_empty() { "unspecified".into() } else { kinds.join(", ") }
            ))
        }
        "DISABLED_UPDATE" => match string(value.pointer("/ban_info/waba_ban_state")).as_deref() {
            Some("REINSTATE") => {
                conn_store::reinstate_account(tx, now).await?;
                None
            }
            state => Some(format!(
                "Meta {} the WhatsApp Business Account{}",
                if state == Some("SCHEDULE_FOR_DISABLE") {
                    "scheduled to disable"
                } else {
                    "disabled"
                },
                string(value.pointer("/ban_info/waba_ban_date"))
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
        },
        "ACCOUNT_DELETED" => Some("the WhatsApp Business Account was deleted".to_owned()),
        "PARTNER_APP_UNINSTALLED" | "PARTNER_REMOVED" => Some(
            "the business removed Galantis's access to its WhatsApp Business Account (reconnect it)"
                .to_owned(),
        ),
        "" => return Err(HandlerError::Invalid("account_update without an event".into())),
        other => {
            out.ignored = Some(format!("account_update {other}: informational, nothing to change"));
            return Ok(());
        }
    };
    if let Some(reason) = halt_reason
        && conn_store::halt_for_account(tx, &reason, now).await?
    {
        metrics::counter!("galantis_whatsapp_connection_needs_attention_total").increment(1);
        tracing::warn!(event = %event, "WhatsApp connection needs attention after an account update: sends are held");
    }
    Ok(())
}

/// Meta's higher throughput (messages per second per number).
pub const HIGH_THROUGHPUT_MPS: i64 = 1_000;

async fn number_quality(
    ctx: &JobContext,
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let Some(display) = string(value.get("display_phone_number")) else {
        return Err(HandlerError::Invalid(
            "quality update without display_phone_number".into(),
        ));
    };
    let event = string(value.get("event")).unwrap_or_default();
    // `current_limit` is being replaced by `max_daily_conversations_per_business`.
    let limit = string(value.get("max_daily_conversations_per_business"))
        .or(string(value.get("current_limit")));
    let standard = i64::from(ctx.app.config.sending.default_messages_per_second);
    let mps = match event.as_str() {
        "THROUGHPUT_UPGRADE" => Some(HIGH_THROUGHPUT_MPS),
        "THROUGHPUT_DOWNGRADE" => Some(standard),
        _ => None,
    };
    let q = conn_store::NumberQuality {
        display_phone_number: &display,
        event: &event,
        messaging_limit: limit.as_deref(),
        messages_per_second: mps,
    };
    if conn_store::set_number_quality(tx, &q, now).await?.is_none() {
        out.ignored = Some(format!("no number {display} is connected here"));
    }
    Ok(())
}

/// A message the merchant sent from the WhatsApp Business app (coexistence).
async fn echo(tx: &mut TenantTx, pnid: &str, m: &Value, now: i64) -> Result<(), HandlerError> {
    let (Some(to), Some(wamid)) = (string(m.get("to")), string(m.get("id"))) else {
        return Err(HandlerError::Invalid(
            "message echo without `to` or `id`".into(),
        ));
    };
    let digits = to.trim_start_matches('+');
    let phone = PhoneE164::parse(&format!("+{digits}"))
        .map_err(|err| HandlerError::Invalid(format!("echo recipient: {err}")))?;
    let at = int(m.get("timestamp")).map(|s| s * 1000).unwrap_or(now);
    let contact = match contacts::by_phone(tx, phone.as_str()).await? {
        Some(c) => c,
        None => contacts::create_from_whatsapp(tx, phone.as_str(), None, now).await?,
    };
    let conversation =
        messaging::touch_conversation_outbound(tx, contact.id, pnid, at, now).await?;
    let kind = string(m.get("type")).unwrap_or_else(|| "unknown".into());
    let body = match kind.as_str() {
        "text" => string(m.pointer("/text/body")),
        _ => string(m.pointer(&format!("/{kind}/caption"))),
    };
    messaging::insert_echo(
        tx,
        &messaging::EchoMessage {
            conversation_id: conversation,
            contact_id: contact.id,
            phone_number_id: pnid,
            wamid: &wamid,
            kind: &kind,
            body: body.as_deref(),
            content: m,
            source: "whatsapp_business_app",
            at_ms: at,
        },
        now,
    )
    .await?;
    Ok(())
}
