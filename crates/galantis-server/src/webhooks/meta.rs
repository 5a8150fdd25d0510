//! Meta change handlers: inbound messages, template status, account and
//! number events. Delivery statuses are applied by `meta_status`.

use galantis_core::templates::TemplateCategory;
use galantis_core::{DomainEvent, PhoneE164};
use galantis_store::TenantTx;
use galantis_store::tenant::contacts;
use galantis_store::tenant::messaging;
use galantis_store::tenant::sending::connection as conn_store;
use galantis_store::tenant::templates;
use galantis_store::tenant::webhook_events::WebhookEvent;
use serde_json::Value;

use super::meta_status;
use super::outcome::{HandlerError, Outcome};
use super::parse::{int, string};
use crate::jobs::JobContext;

mod inbound;
use inbound::inbound;

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
            for w in &meta_status::status_wamids(&value) {
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
            meta_status::statuses(tx, &value, now, &mut out).await?;
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
