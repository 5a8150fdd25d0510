//! Validating and queueing a send. Everything that can be known before the
//! call is checked here, in the caller's transaction, which records the
//! message as QUEUED and enqueues its `message.send` job: a refused send
//! leaves no trace. The checks themselves are pure
//! (`galantis_core::sending::check_send`); this module gathers their facts.
//!
//! - [`queue_message`]: one send in its own transaction, refusals as
//!   `AppError` (`POST /api/v1/messages`).
//! - [`queue_in`]: one send inside the caller's transaction (a flow action).
//! - [`queue_many`]: a batch inside the caller's transaction (a campaign),
//!   a refusal per recipient, the tenant lock taken once per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use galantis_core::billing::is_billable;
use galantis_core::sending::check::Credits;
use galantis_core::sending::{SendFacts, SendRefusal, check_send};
use galantis_core::{MessageKind, MessageSource, TenantId};
use galantis_store::jobs::enqueue_many;
use galantis_store::tenant::sending::{self as store, Outbound};
use galantis_store::tenant::templates::{self as templates_store, TemplateRecord};
use galantis_store::tenant::{contacts, messaging};
use galantis_store::{StoreError, TenantTx};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::connection::{self, Resolved};
use super::credits;
use super::facts;
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

/// A send validated at the edge: what to send, from where, with which key.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub contact_id: Uuid,
    pub phone_number_id: Option<String>,
    pub source: MessageSource,
    /// Given by the caller (a repeat returns the earlier message) or made up.
    pub idempotency_key: String,
    pub key_given: bool,
    pub kind: MessageKind,
    /// Meta's field for the type: `{"text": {...}}`, `{"template": {...}}`.
    pub content: Value,
    pub template: Option<TemplateSend>,
}

impl NewSend {
    /// Checks the request's shape (`invalid_field` otherwise).
    pub fn validate(self) -> Result<Outgoing, AppError> {
        let source = match self.source.as_deref() {
            None => MessageSource::Api,
            Some(s) => s.parse().map_err(|_| {
                refuse(
                    "invalid_field",
                    format!("source must be one of {}", SOURCES.join(", ")),
                )
            })?,
        };
        if let Some(k) = &self.idempotency_key
            && (k.is_empty() || k.len() > 200)
        {
            return Err(refuse(
                "invalid_field",
                "idempotency_key must have 1 to 200 characters",
            ));
        }
        let (kind, content) = content_of(&self)?;
        Ok(Outgoing {
            contact_id: self.contact_id,
            phone_number_id: self.phone_number_id,
            source,
            key_given: self.idempotency_key.is_some(),
            idempotency_key: self
                .idempotency_key
                .unwrap_or_else(|| format!("msg:{}", Uuid::now_v7())),
            kind,
            content,
            template: self.template,
        })
    }
}

/// The outcome of queueing.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message: Outbound,
    /// The idempotency key had been used: this is the earlier message.
    pub duplicate: bool,
}

fn refuse(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::unprocessable(code, message)
}

/// The HTTP face of a refusal (the only place one becomes an `AppError`).
pub fn refusal_error(r: &SendRefusal) -> AppError {
    if r.is_payment() {
        AppError::PaymentRequired {
            code: r.code(),
            message: r.to_string(),
        }
    } else {
        refuse(r.code(), r.to_string())
    }
}

/// Validates and queues one send for `tenant` in its own transaction.
pub async fn queue_message(
    app: &AppState,
    tenant: TenantId,
    req: NewSend,
) -> Result<Queued, AppError> {
    let send = req.validate()?;
    let conn = connection::resolve(app, tenant)
        .await
        .map_err(AppError::Internal)?;
    let mut tx = app.db.tenant_tx(tenant).await?;
    match queue_in(&mut tx, &conn, app.clock.now(), &send).await? {
        Ok(q) => {
            tx.commit().await?;
            Ok(q)
        }
        Err(r) => Err(refusal_error(&r)),
    }
}

/// Queues one send inside the caller's transaction. A refusal changes
/// nothing; the caller decides whether to commit what else it did.
pub async fn queue_in(
    tx: &mut TenantTx,
    conn: &Resolved,
    now: DateTime<Utc>,
    send: &Outgoing,
) -> Result<Result<Queued, SendRefusal>, StoreError> {
    let mut out = queue_many(tx, conn, now, std::slice::from_ref(send)).await?;
    Ok(out.pop().expect("one outcome per send"))
}

/// Where one send of [`queue_many`] stands before its outcome is known.
enum Slot {
    /// Decided without an insert: a key used before, or a refusal.
    Done(Result<(Uuid, bool), SendRefusal>),
    /// Decided by this row of the batch's insert.
    Insert(usize),
    /// The same key as this row, earlier in the batch.
    SameAs(usize),
}

/// Queues `sends` inside the caller's transaction: one outcome per send, in
/// order; a refused send does not stop the others. Billable sends take the
/// tenant lock once for the whole batch and read the balance and the
/// reservations in one statement (ADR 0005's snapshot rule), then spend that
/// availability in memory: the rows inserted are the reservations.
/// Repeating a batch (same keys) returns the earlier messages and queues
/// nothing new.
///
/// What does not change from one send to the next is read once per batch:
/// the given keys already used, the contacts, each template and, after the
/// inserts, the messages; the send jobs go in as one multi-row insert. A
/// send then costs one statement of its own (the message's insert), so a
/// campaign's batch does not hold the tenant's write lock for long.
pub async fn queue_many(
    tx: &mut TenantTx,
    conn: &Resolved,
    now: DateTime<Utc>,
    sends: &[Outgoing],
) -> Result<Vec<Result<Queued, SendRefusal>>, StoreError> {
    let now_ms = now.timestamp_millis();
    let any_billable = sends
        .iter()
        .any(|s| is_billable(s.kind.is_template(), s.source.as_str()));
    let mut credits = Credits::default();
    if any_billable {
        // Credit reservations and the checks before them must not
        // interleave with another send of this tenant.
        tx.serialize_tenant_writes().await?;
        let a = credits::availability(tx, now).await?;
        credits = Credits {
            balance: a.balance,
            reserved: a.reserved,
        };
    }
    let conn_facts = facts::connection(conn);
    let given: Vec<&str> = sends
        .iter()
        .filter(|s| s.key_given)
        .map(|s| s.idempotency_key.as_str())
        .collect();
    let used = if given.is_empty() {
        HashMap::new()
    } else {
        store::message_ids_by_keys(tx, &given).await?
    };
    let mut contact_ids: Vec<Uuid> = sends.iter().map(|s| s.contact_id).collect();
    contact_ids.sort_unstable();
    contact_ids.dedup();
    let people = contacts::get_many(tx, &contact_ids).await?;
    let mut templates: HashMap<(String, String), Option<TemplateRecord>> = HashMap::new();
    // Per send: its outcome, or the row of the one insert that decides it.
    let mut slots: Vec<Slot> = Vec::with_capacity(sends.len());
    let mut rows: Vec<(messaging::OutboundMessage<'_>, bool)> = Vec::new();
    let mut row_of_key: HashMap<&str, usize> = HashMap::new();
    for send in sends {
        if send.key_given
            && let Some(id) = used.get(&send.idempotency_key)
        {
            slots.push(Slot::Done(Ok((*id, true))));
            continue;
        }
        // A key repeated within the batch is the first one's message.
        if let Some(row) = row_of_key.get(send.idempotency_key.as_str()) {
            slots.push(Slot::SameAs(*row));
            continue;
        }
        let contact = people.get(&send.contact_id).filter(|c| !c.deleted);
        let (number_facts, number) = facts::number(conn, send.phone_number_id.as_deref());
        let template = match &send.template {
            Some(t) if send.kind.is_template() => {
                let k = (t.name.clone(), t.language.clone());
                if !templates.contains_key(&k) {
                    let r = templates_store::by_name(tx, &t.name, &t.language).await?;
                    templates.insert(k.clone(), r);
                }
                let stored = templates.get(&k).and_then(Option::as_ref);
                Some(facts::template_of(
                    stored,
                    &t.name,
                    &t.language,
                    &t.components,
                ))
            }
            _ => None,
        };
        // Only free-form sends look at the window, and only once the
        // contact and the number are known.
        let window_open = match (contact, number) {
            (Some(c), Some(n)) if !send.kind.is_template() => {
                facts::window_open(tx, c.id, &n.phone_number_id, now).await?
            }
            _ => false,
        };
        let f = SendFacts {
            kind: send.kind,
            source: send.source,
            contact: contact.map(facts::contact),
            connection: conn_facts.clone(),
            number: number_facts,
            template,
            window_open,
            credits,
        };
        let plan = match check_send(&f) {
            Ok(p) => p,
            Err(r) => {
                slots.push(Slot::Done(Err(r)));
                continue;
            }
        };
        let (Some(contact), Some(number)) = (contact, number) else {
            unreachable!("check_send refuses sends without a contact or a number")
        };
        let body = send
            .content
            .get("text")
            .and_then(|t| t.get("body"))
            .and_then(Value::as_str);
        let tpl = send.template.as_ref().filter(|_| send.kind.is_template());
        row_of_key.insert(&send.idempotency_key, rows.len());
        slots.push(Slot::Insert(rows.len()));
        rows.push((
            messaging::OutboundMessage {
                contact_id: contact.id,
                phone_number_id: &number.phone_number_id,
                idempotency_key: &send.idempotency_key,
                kind: send.kind.as_str(),
                body,
                content: &send.content,
                source: send.source.as_str(),
                template_name: tpl.map(|t| t.name.as_str()),
                template_language: tpl.map(|t| t.language.as_str()),
                is_sandbox: conn.sandbox,
            },
            plan.billable,
        ));
        // Exact: billable sends hold the tenant's write lock, so no other
        // transaction can take one of these keys before the insert.
        if plan.billable {
            credits.reserved += 1;
        }
    }
    let inserted = store::insert_queued_many(tx, &rows, now_ms).await?;
    let mut decided: Vec<(Uuid, bool)> = Vec::with_capacity(rows.len());
    let mut jobs = Vec::new();
    for ((m, _), id) in rows.iter().zip(inserted) {
        match id {
            Some(id) => {
                let job = crate::jobs::new_job(&SendMessage { message_id: id }, now)
                    .map_err(|e| StoreError::Config(format!("job payload: {e}")))?;
                jobs.push(job);
                metrics::counter!("galantis_messages_queued_total", "type" => m.kind.to_owned())
                    .increment(1);
                decided.push((id, false));
            }
            // Another transaction used the key since we looked.
            None => {
                let id = store::message_id_by_key(tx, m.idempotency_key)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                decided.push((id, true));
            }
        }
    }
    let outcomes: Vec<Result<(Uuid, bool), SendRefusal>> = slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Done(o) => o,
            Slot::Insert(row) => Ok(decided[row]),
            Slot::SameAs(row) => Ok((decided[row].0, true)),
        })
        .collect();
    enqueue_many(tx, &jobs).await?;
    let ids: Vec<Uuid> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(id, _)| *id))
        .collect();
    let messages = store::outbound_many(tx, &ids).await?;
    outcomes
        .into_iter()
        .map(|o| match o {
            Ok((id, duplicate)) => Ok(Ok(Queued {
                message: messages.get(&id).cloned().ok_or(StoreError::NotFound)?,
                duplicate,
            })),
            Err(r) => Ok(Err(r)),
        })
        .collect()
}

/// The message type and its stored content (Meta's field for that type).
fn content_of(req: &NewSend) -> Result<(MessageKind, Value), AppError> {
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
    let parsed = kind
        .parse::<MessageKind>()
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    Ok((parsed, json!({ kind: value })))
}
