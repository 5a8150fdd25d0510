//! Validating and queueing a send. Everything that can be known before the
//! call is checked here, in the transaction that records the message as
//! QUEUED and enqueues its `message.send` job: a refused send leaves no
//! trace. Campaigns, automations and back-in-stock notices queue through
//! [`queue_message`] too.

use chrono::{DateTime, Utc};
use galantis_core::billing::is_billable;
use galantis_core::templates::{ParamSpec, TemplateStatus};
use galantis_core::{MarketingState, PhoneE164, TenantId};
use galantis_store::tenant::sending::{self as store, Outbound};
use galantis_store::tenant::{contacts, messaging, templates};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::connection;
use super::credits;
use super::job::SendMessage;
use crate::error::AppError;
use crate::state::AppState;

/// Free-form message types Galantis sends.
pub const FREE_FORM_TYPES: [&str; 8] = [
    "text",
    "interactive",
    "image",
    "video",
    "document",
    "audio",
    "location",
    "sticker",
];

/// Where a send comes from.
pub const SOURCES: [&str; 5] = ["api", "inbox", "campaign", "automation", "back_in_stock"];

/// A send as the API (or an internal caller) asks for it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewSend {
    pub contact_id: Uuid,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// `api` (default), `inbox`, `campaign`, `automation`, `back_in_stock`.
    #[serde(default)]
    pub source: Option<String>,
    /// Makes the request idempotent: the same key returns the same message.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Optional explicit type; otherwise the one content field present.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub template: Option<TemplateSend>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub interactive: Option<Value>,
    #[serde(default)]
    pub image: Option<Value>,
    #[serde(default)]
    pub video: Option<Value>,
    #[serde(default)]
    pub document: Option<Value>,
    #[serde(default)]
    pub audio: Option<Value>,
    #[serde(default)]
    pub location: Option<Value>,
    #[serde(default)]
    pub sticker: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSend {
    pub name: String,
    pub language: String,
    /// Meta's send shape: `header`, `body` and `button` entries with
    /// `parameters` (positional, or named with `parameter_name`).
    #[serde(default)]
    pub components: Value,
}

/// The outcome of queueing.
pub struct Queued {
    pub message: Outbound,
    /// The idempotency key had been used: this is the earlier message.
    pub duplicate: bool,
}

fn refuse(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::unprocessable(code, message)
}

/// Validates and queues one send for `tenant`.
pub async fn queue_message(
    app: &AppState,
    tenant: TenantId,
    req: NewSend,
) -> Result<Queued, AppError> {
    let now = app.clock.now();
    let now_ms = now.timestamp_millis();
    let source = req.source.clone().unwrap_or_else(|| "api".into());
    if !SOURCES.contains(&source.as_str()) {
        return Err(refuse(
            "invalid_field",
            format!("source must be one of {}", SOURCES.join(", ")),
        ));
    }
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > 200)
    {
        return Err(refuse(
            "invalid_field",
            "idempotency_key must have 1 to 200 characters",
        ));
    }
    let (kind, content) = content_of(&req)?;
    let conn = connection::resolve(app, tenant)
        .await
        .map_err(AppError::Internal)?;

    let mut tx = app.db.tenant_tx(tenant).await?;
    // Credit reservations and the checks before them must not interleave
    // with another send of this tenant.
    tx.serialize_tenant_writes().await?;
    let key = req
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("msg:{}", Uuid::now_v7()));
    if req.idempotency_key.is_some()
        && let Some(existing) = find_by_key(&mut tx, &key).await?
    {
        tx.commit().await?;
        return Ok(Queued {
            message: existing,
            duplicate: true,
        });
    }

    // The contact and its phone.
    let contact = contacts::get(&mut tx, req.contact_id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| refuse("unknown_contact", "no contact with this id"))?;
    if contact.redacted || contact.marketing_state == MarketingState::Redacted {
        return Err(refuse(
            "contact_redacted",
            "this contact's data was erased; it cannot be messaged",
        ));
    }
    let Some(phone) = contact
        .phone
        .as_deref()
        .and_then(|p| PhoneE164::parse(p).ok())
    else {
        return Err(refuse(
            "CUSTOMER_IS_MISSING_CALLING_CODE",
            "the contact has no phone number in E.164 form with a country calling code",
        ));
    };
    let _ = phone;

    // The connection and the number.
    match conn.state.as_str() {
        "connected" => {}
        "needs_attention" => {
            return Err(refuse(
                "whatsapp_needs_attention",
                format!(
                    "the WhatsApp connection needs attention: {}",
                    conn.reason.as_deref().unwrap_or("see the settings")
                ),
            ));
        }
        _ => {
            return Err(refuse(
                "whatsapp_not_connected",
                conn.reason
                    .as_deref()
                    .unwrap_or("no WhatsApp number is connected (PUT /api/v1/settings/whatsapp)")
                    .to_owned(),
            ));
        }
    }
    let number = match &req.phone_number_id {
        Some(id) => conn.number(id).ok_or_else(|| {
            refuse(
                "unknown_phone_number",
                "this WhatsApp number is not connected to the store",
            )
        })?,
        None => conn
            .default_number()
            .ok_or_else(|| refuse("whatsapp_not_connected", "no WhatsApp number is connected"))?,
    }
    .clone();

    // Content rules.
    let marketing_source = matches!(source.as_str(), "campaign" | "automation" | "back_in_stock");
    let (template_name, template_language) = if kind == "template" {
        let t = req.template.as_ref().expect("template kind has a template");
        let record = templates::by_name(&mut tx, &t.name, &t.language).await?;
        let Some(record) = record else {
            return Err(refuse(
                "template_not_approved",
                format!("there is no template {} in {}", t.name, t.language),
            ));
        };
        if TemplateStatus::from_meta(&record.status) != Some(TemplateStatus::Approved) {
            return Err(refuse(
                "template_not_approved",
                format!(
                    "template {} ({}) is {}, only APPROVED templates can be sent",
                    t.name, t.language, record.status
                ),
            ));
        }
        ParamSpec::of(&record.components)
            .check(&t.components)
            .map_err(|e| refuse("invalid_template_parameters", e))?;
        if (record.category.eq_ignore_ascii_case("MARKETING") || marketing_source)
            && contact.marketing_state != MarketingState::Subscribed
        {
            return Err(refuse(
                "not_opted_in",
                format!(
                    "the contact's WhatsApp consent is {}; marketing messages go to SUBSCRIBED contacts only",
                    contact.marketing_state
                ),
            ));
        }
        (Some(t.name.clone()), Some(t.language.clone()))
    } else {
        if marketing_source && contact.marketing_state != MarketingState::Subscribed {
            return Err(refuse(
                "not_opted_in",
                "campaign, automation and back-in-stock sends go to SUBSCRIBED contacts only",
            ));
        }
        if !window_open(&mut tx, contact.id, &number.phone_number_id, now).await? {
            return Err(refuse(
                "outside_service_window",
                "the customer has not written in the last 24 hours: only approved templates can be sent",
            ));
        }
        (None, None)
    };

    // Credits.
    let billable = is_billable(kind == "template", &source);
    if billable {
        let a = credits::availability(&mut tx, now).await?;
        if a.available() < 1 {
            return Err(AppError::PaymentRequired {
                code: "insufficient_credits",
                message: format!(
                    "no conversation credits left (balance {}, {} held by queued messages): buy a credit pack or wait for the monthly reset",
                    a.balance, a.reserved
                ),
            });
        }
    }

    let body = content
        .get("text")
        .and_then(|t| t.get("body"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = messaging::insert_outbound(
        &mut tx,
        &messaging::OutboundMessage {
            contact_id: contact.id,
            phone_number_id: &number.phone_number_id,
            idempotency_key: &key,
            kind: &kind,
            body: body.as_deref(),
            content: &content,
            source: &source,
            template_name: template_name.as_deref(),
            template_language: template_language.as_deref(),
            is_sandbox: conn.sandbox,
        },
        now_ms,
    )
    .await?;
    store::set_billable(&mut tx, id, billable).await?;
    crate::jobs::enqueue(&mut tx, &SendMessage { message_id: id }, now).await?;
    let message = store::outbound(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("message"))?;
    tx.commit().await?;
    metrics::counter!("galantis_messages_queued_total", "type" => kind).increment(1);
    Ok(Queued {
        message,
        duplicate: false,
    })
}

async fn find_by_key(
    tx: &mut galantis_store::TenantTx,
    key: &str,
) -> Result<Option<Outbound>, AppError> {
    // Reuse the list query: keys are unique, so at most one matches.
    let id = messaging_id_by_key(tx, key).await?;
    match id {
        Some(id) => Ok(store::outbound(tx, id).await?),
        None => Ok(None),
    }
}

async fn messaging_id_by_key(
    tx: &mut galantis_store::TenantTx,
    key: &str,
) -> Result<Option<Uuid>, AppError> {
    Ok(store::message_id_by_key(tx, key).await?)
}

/// The 24 h customer-service window with this number is open.
pub async fn window_open(
    tx: &mut galantis_store::TenantTx,
    contact: Uuid,
    phone_number_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, AppError> {
    Ok(messaging::conversation_of(tx, contact)
        .await?
        .iter()
        .any(|c| {
            c.phone_number_id == phone_number_id && c.window_expires_at.is_some_and(|w| w > now)
        }))
}

/// The message type and its stored content (Meta's field for that type).
fn content_of(req: &NewSend) -> Result<(String, Value), AppError> {
    let mut present: Vec<(&str, Value)> = Vec::new();
    if let Some(t) = &req.template {
        if t.name.is_empty() || t.language.is_empty() {
            return Err(refuse(
                "invalid_field",
                "template.name and template.language are required",
            ));
        }
        let mut tpl = json!({"name": t.name, "language": {"code": t.language}});
        if !t.components.is_null() {
            tpl["components"] = t.components.clone();
        }
        present.push(("template", tpl));
    }
    for (k, v) in [
        ("text", &req.text),
        ("interactive", &req.interactive),
        ("image", &req.image),
        ("video", &req.video),
        ("document", &req.document),
        ("audio", &req.audio),
        ("location", &req.location),
        ("sticker", &req.sticker),
    ] {
        if let Some(v) = v {
            present.push((k, v.clone()));
        }
    }
    if present.len() != 1 {
        return Err(refuse(
            "invalid_field",
            "give exactly one of template, text, interactive, image, video, document, audio, location, sticker",
        ));
    }
    let (kind, value) = present.pop().expect("one");
    if let Some(k) = &req.kind
        && k != kind
    {
        return Err(refuse(
            "invalid_field",
            format!("type is {k} but the content is {kind}"),
        ));
    }
    if kind == "text" {
        let body = value.get("body").and_then(Value::as_str).unwrap_or("");
        if body.trim().is_empty() || body.chars().count() > 4096 {
            return Err(refuse(
                "invalid_field",
                "text.body must have 1 to 4,096 characters",
            ));
        }
    } else if kind != "template" && !value.is_object() {
        return Err(refuse("invalid_field", format!("{kind} must be an object")));
    }
    Ok((kind.to_owned(), json!({ kind: value })))
}
