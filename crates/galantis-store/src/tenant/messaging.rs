//! Conversations, messages, status history and template status.

use galantis_core::MessageStatus;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// The customer-service window lasts 24 hours from each inbound message.
pub const SERVICE_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy)]
pub struct ConversationTouch {
    pub id: Uuid,
    pub created: bool,
    /// It was RESOLVED or PENDING and is OPEN again.
    pub reopened: bool,
}

/// An inbound message arrived at `at_ms`: the conversation exists and is
/// OPEN, and its service window runs 24 h from the newest inbound message.
pub async fn touch_conversation_inbound(
    tx: &mut TenantTx,
    contact: Uuid,
    phone_number_id: &str,
    at_ms: i64,
    now_ms: i64,
) -> Result<ConversationTouch, StoreError> {
    let existing: Option<(Uuid, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, status FROM conversations WHERE contact_id = $1 AND phone_number_id = $2",
        )
        .bind(contact)
        .bind(phone_number_id)
        .fetch_optional(&mut *c)
        .await?
    });
    match existing {
        None => {
            let id = Uuid::now_v7();
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "INSERT INTO conversations (id, contact_id, phone_number_id, status, last_inbound_at, window_expires_at,
                                                last_message_at, opened_at, created_at, updated_at)
                     VALUES ($1, $2, $3, 'OPEN', $4, $5, $4, $4, $6, $6)",
                )
                .bind(id).bind(contact).bind(phone_number_id).bind(at_ms).bind(at_ms + SERVICE_WINDOW_MS).bind(now_ms)
                .execute(&mut *c).await?.rows_affected()
            });
            Ok(ConversationTouch {
                id,
                created: true,
                reopened: false,
            })
        }
        Some((id, status)) => {
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "UPDATE conversations SET status = 'OPEN',
                        opened_at = CASE WHEN status = 'RESOLVED' OR opened_at IS NULL THEN $1 ELSE opened_at END,
                        last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < $1 THEN $1 ELSE last_inbound_at END,
                        window_expires_at = CASE WHEN window_expires_at IS NULL OR window_expires_at < $2 THEN $2 ELSE window_expires_at END,
                        last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < $1 THEN $1 ELSE last_message_at END,
                        updated_at = $3
                     WHERE id = $4",
                )
                .bind(at_ms).bind(at_ms + SERVICE_WINDOW_MS).bind(now_ms).bind(id)
                .execute(&mut *c).await?.rows_affected()
            });
            Ok(ConversationTouch {
                id,
                created: false,
                reopened: status != "OPEN",
            })
        }
    }
}

/// An inbound message to store.
#[derive(Debug, Clone)]
pub struct InboundMessage<'a> {
    pub conversation_id: Uuid,
    pub contact_id: Uuid,
    pub phone_number_id: &'a str,
    pub wamid: &'a str,
    pub kind: &'a str,
    pub body: Option<&'a str>,
    pub content: &'a Value,
    pub context_wamid: Option<&'a str>,
    pub at_ms: i64,
}

/// Stores an inbound message once per wamid; `None` for a duplicate. Its
/// media id and type (from `content`, as Meta sent it) are kept for a later
/// download, and reactions, edits or a revoke that arrived before it apply.
pub async fn insert_inbound(
    tx: &mut TenantTx,
    m: &InboundMessage<'_>,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    let id = Uuid::now_v7();
    let media = galantis_core::messaging::inbound::media(m.content);
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, contact_id, phone_number_id, direction, wamid, kind, body, content,
                                   context_wamid, status, media_id, media_mime_type, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7, $8, $9, 'RECEIVED', $10, $11, $12, $13)
             ON CONFLICT (wamid) WHERE wamid IS NOT NULL DO NOTHING",
        )
        .bind(id).bind(m.conversation_id).bind(m.contact_id).bind(m.phone_number_id).bind(m.wamid).bind(m.kind)
        .bind(m.body).bind(Json(m.content)).bind(m.context_wamid).bind(media.as_ref().map(|x| x.id))
        .bind(media.as_ref().and_then(|x| x.mime_type)).bind(m.at_ms).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 1 {
        apply_amendments(tx, m.wamid, now_ms).await?;
    }
    Ok((n == 1).then_some(id))
}

/// The conversation of a contact on a number, created OPEN if there is none,
/// without touching the service window: for messages that are not the
/// customer writing (system notices).
pub async fn ensure_conversation(
    tx: &mut TenantTx,
    contact: Uuid,
    phone_number_id: &str,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let existing: Option<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT id FROM conversations WHERE contact_id = $1 AND phone_number_id = $2",
        )
        .bind(contact)
        .bind(phone_number_id)
        .fetch_optional(&mut *c)
        .await?
    });
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO conversations (id, contact_id, phone_number_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'OPEN', $4, $4)",
        )
        .bind(id).bind(contact).bind(phone_number_id).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(id)
}

/// A reaction, edit or revoke: its own wamid, changing `target_wamid`.
#[derive(Debug, Clone)]
pub struct Amendment<'a> {
    pub wamid: &'a str,
    pub target_wamid: &'a str,
    pub contact_id: Uuid,
    /// `reaction`, `edit` or `revoke`.
    pub kind: &'a str,
    /// The reaction's emoji (`None` removes it) or the edit's new summary.
    pub text: Option<&'a str>,
    /// As Meta sent it (the edit's new message object).
    pub payload: &'a Value,
    pub at_ms: i64,
}

/// Keeps an amendment once per wamid and applies it if its message is
/// known; `false` for a duplicate.
pub async fn amend(tx: &mut TenantTx, a: &Amendment<'_>, now_ms: i64) -> Result<bool, StoreError> {
    let payload = serde_json::json!({"text": a.text, "message": a.payload});
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO message_amendments (id, wamid, target_wamid, contact_id, kind, payload, occurred_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (wamid) DO NOTHING",
        )
        .bind(Uuid::now_v7()).bind(a.wamid).bind(a.target_wamid).bind(a.contact_id).bind(a.kind)
        .bind(Json(&payload)).bind(a.at_ms).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 1 {
        apply_amendments(tx, a.target_wamid, now_ms).await?;
    }
    Ok(n == 1)
}

/// Applies the pending amendments of `target` in the order they happened:
/// the latest reaction wins, an edit keeps the text it replaces, a deleted
/// message is neither edited nor shown again. Only the contact's own
/// messages (and, for a reaction, those sent to the contact) are changed.
async fn apply_amendments(tx: &mut TenantTx, target: &str, now_ms: i64) -> Result<(), StoreError> {
    type Pending = (Uuid, Uuid, String, Json<Value>, i64);
    let pending: Vec<Pending> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, contact_id, kind, payload, occurred_at FROM message_amendments
             WHERE target_wamid = $1 AND applied_at IS NULL ORDER BY occurred_at, id",
        )
        .bind(target)
        .fetch_all(&mut *c)
        .await?
    });
    for (id, contact, kind, Json(payload), at) in pending {
        type Target = (Uuid, String, Option<String>, Option<i64>, Option<i64>);
        let row: Option<Target> = on_tx!(tx.tx(), |c| {
            sqlx::query_as(
                "SELECT id, direction, body, edited_at, deleted_at FROM messages WHERE wamid = $1 AND contact_id = $2",
            )
            .bind(target).bind(contact).fetch_optional(&mut *c).await?
        });
        let Some((message, direction, body, edited_at, deleted_at)) = row else {
            continue;
        };
        let text = payload.get("text").and_then(Value::as_str);
        let mut previous_body = None;
        on_tx!(tx.tx(), |c| {
            match kind.as_str() {
                "reaction" => {
                    sqlx::query(
                        "UPDATE messages SET reaction = $1, reacted_at = $2, updated_at = $3
                         WHERE id = $4 AND (reacted_at IS NULL OR reacted_at <= $2)",
                    )
                    .bind(text)
                    .bind(at)
                    .bind(now_ms)
                    .bind(message)
                    .execute(&mut *c)
                    .await?;
                }
                "edit"
                    if direction == "inbound"
                        && deleted_at.is_none()
                        && edited_at.is_none_or(|e| e <= at) =>
                {
                    previous_body = body;
                    sqlx::query(
                        "UPDATE messages SET body = $1, edited_at = $2, updated_at = $3 WHERE id = $4",
                    )
                    .bind(text).bind(at).bind(now_ms).bind(message)
                    .execute(&mut *c).await?;
                }
                "revoke" if direction == "inbound" => {
                    // The sender deleted it for everyone: the text goes, from
                    // the message and from the edits that kept older text.
                    sqlx::query(
                        "UPDATE messages SET body = NULL, content = $1, media_id = NULL, deleted_at = COALESCE(deleted_at, $2),
                                updated_at = $3
                         WHERE id = $4",
                    )
                    .bind(Json(serde_json::json!({"revoked": true}))).bind(at).bind(now_ms).bind(message)
                    .execute(&mut *c).await?;
                    sqlx::query(
                        "UPDATE message_amendments SET previous_body = NULL, payload = $1
                         WHERE target_wamid = $2 AND kind = 'edit'",
                    )
                    .bind(Json(serde_json::json!({})))
                    .bind(target)
                    .execute(&mut *c)
                    .await?;
                }
                _ => {}
            }
            sqlx::query(
                "UPDATE message_amendments SET applied_at = $1, previous_body = COALESCE($2, previous_body) WHERE id = $3",
            )
            .bind(now_ms).bind(&previous_body).bind(id)
            .execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// Erasure: amendments keep text (reactions, edits) of the contact.
pub async fn scrub_amendments_for(tx: &mut TenantTx, contact: Uuid) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE message_amendments SET payload = $1, previous_body = NULL WHERE contact_id = $2",
        )
        .bind(Json(serde_json::json!({})))
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// An inbound message's type-specific state, beyond [`MessageView`].
#[derive(Debug, Clone, Serialize)]
pub struct InboundDetail {
    pub contact_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub kind: String,
    pub body: Option<String>,
    pub content: Value,
    pub media_id: Option<String>,
    pub media_mime_type: Option<String>,
    pub reaction: Option<String>,
    pub edited: bool,
    pub deleted: bool,
    /// Texts an edit replaced, oldest first.
    pub previous_bodies: Vec<String>,
}

pub async fn inbound_detail(
    tx: &mut TenantTx,
    wamid: &str,
) -> Result<Option<InboundDetail>, StoreError> {
    type Row = (
        Uuid,
        Option<Uuid>,
        String,
        Option<String>,
        Json<Value>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT contact_id, conversation_id, kind, body, content, media_id, media_mime_type, reaction, edited_at, deleted_at
             FROM messages WHERE wamid = $1",
        )
        .bind(wamid).fetch_optional(&mut *c).await?
    });
    let Some(r) = row else {
        return Ok(None);
    };
    let previous: Vec<Option<String>> =
        on_tx!(tx.tx(), |c| {
            sqlx::query_scalar(
            "SELECT previous_body FROM message_amendments WHERE target_wamid = $1 AND kind = 'edit'
             AND applied_at IS NOT NULL ORDER BY occurred_at, id",
        )
        .bind(wamid).fetch_all(&mut *c).await?
        });
    Ok(Some(InboundDetail {
        contact_id: r.0,
        conversation_id: r.1,
        kind: r.2,
        body: r.3,
        content: r.4.0,
        media_id: r.5,
        media_mime_type: r.6,
        reaction: r.7,
        edited: r.8.is_some(),
        deleted: r.9.is_some(),
        previous_bodies: previous.into_iter().flatten().collect(),
    }))
}

/// A status update from Meta.
#[derive(Debug, Clone)]
pub struct StatusUpdate<'a> {
    pub wamid: &'a str,
    pub status: MessageStatus,
    pub at_ms: i64,
    pub error_code: Option<i64>,
    pub error_title: Option<&'a str>,
    pub error_detail: Option<&'a str>,
}

/// The outcome of applying a status to its message.
#[derive(Debug, Clone, Serialize)]
pub struct StatusApplied {
    pub message_id: Uuid,
    pub contact_id: Uuid,
    pub previous: String,
    pub status: String,
    /// Whether the message's status moved (timestamps may fill in regardless).
    pub advanced: bool,
    /// The message's source (`campaign`, `automation`…).
    pub source: Option<String>,
}

/// Applies a status to the message with that wamid: the status moves only
/// forward; the per-status timestamp is filled in even when it does not
/// (a `delivered` arriving after `read`). `None` when the message is unknown.
pub async fn apply_status(
    tx: &mut TenantTx,
    s: &StatusUpdate<'_>,
    now_ms: i64,
) -> Result<Option<StatusApplied>, StoreError> {
    let Some(row) = status_target(tx, s.wamid).await? else {
        return Ok(None);
    };
    let applied = write_status(tx, row, s, None, now_ms).await?;
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE message_status_events SET applied = $1 WHERE wamid = $2 AND status = $3",
        )
        .bind(true)
        .bind(s.wamid)
        .bind(s.status.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(Some(applied))
}

/// What [`record_and_apply`] did with a status.
#[derive(Debug, Clone)]
pub enum StatusRecorded {
    /// Seen before (same wamid and status): nothing changed but pricing.
    Duplicate,
    /// Kept; applied to its message when that is known (else kept
    /// unapplied for [`apply_pending`]).
    New(Option<StatusApplied>),
}

/// A webhook's status in three statements: the message row (locked on
/// PostgreSQL), the status event (once per wamid and status, marked
/// applied when its message is known) and the message's update with the
/// status's pricing. A duplicate keeps its pricing only (the first copy
/// may have come before the message had its wamid).
pub async fn record_and_apply(
    tx: &mut TenantTx,
    s: &StatusUpdate<'_>,
    pricing: &MessagePricing,
    now_ms: i64,
) -> Result<StatusRecorded, StoreError> {
    let row = status_target(tx, s.wamid).await?;
    let known = row.is_some();
    let inserted = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO message_status_events (id, wamid, status, occurred_at, error_code, error_title, error_detail, received_at, applied)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (wamid, status) DO NOTHING",
        )
        .bind(Uuid::now_v7()).bind(s.wamid).bind(s.status.as_str()).bind(s.at_ms).bind(s.error_code)
        .bind(s.error_title).bind(s.error_detail).bind(now_ms).bind(known)
        .execute(&mut *c).await?.rows_affected()
    });
    let new = inserted == 1;
    let priced = (*pricing != MessagePricing::default()).then_some(pricing);
    match (new, row) {
        (false, _) => {
            if let Some(p) = priced {
                set_pricing(tx, s.wamid, p, now_ms).await?;
            }
            Ok(StatusRecorded::Duplicate)
        }
        (true, None) => Ok(StatusRecorded::New(None)),
        (true, Some(row)) => Ok(StatusRecorded::New(Some(
            write_status(tx, row, s, priced, now_ms).await?,
        ))),
    }
}

/// An outbound message's id, contact, status and source.
type StatusTarget = (Uuid, Uuid, String, Option<String>);

/// The outbound message with `wamid`. PostgreSQL: the row is locked before
/// its status is read, so two transactions applying statuses to one
/// message (a webhook, and a send applying those that overtook its answer)
/// cannot both read the old status and move it backwards. SQLite's single
/// writer already serialises them.
async fn status_target(tx: &mut TenantTx, wamid: &str) -> Result<Option<StatusTarget>, StoreError> {
    Ok(on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query_as("SELECT id, contact_id, status, source FROM messages WHERE wamid = $1 AND direction = 'outbound'")
                .bind(wamid).fetch_optional(&mut *c).await?
            },
        postgres
            | c
            | {
                sqlx::query_as(
                "SELECT id, contact_id, status, source FROM messages WHERE wamid = $1 AND direction = 'outbound' FOR UPDATE",
            )
            .bind(wamid).fetch_optional(&mut *c).await?
            }
    ))
}

/// Moves the message of `row` to `s` (forward only; each status's first
/// time kept) and keeps `pricing` where given.
async fn write_status(
    tx: &mut TenantTx,
    row: StatusTarget,
    s: &StatusUpdate<'_>,
    pricing: Option<&MessagePricing>,
    now_ms: i64,
) -> Result<StatusApplied, StoreError> {
    let (id, contact_id, current, source) = row;
    let current_status: MessageStatus = current.parse().unwrap_or(MessageStatus::Queued);
    let advanced = current_status.advances_to(s.status);
    let (error_code, error_reason) = if advanced && s.status == MessageStatus::Failed {
        (s.error_code, s.error_title.or(s.error_detail))
    } else {
        (None, None)
    };
    let status = if advanced {
        s.status.as_str().to_owned()
    } else {
        current.clone()
    };
    let p = pricing.cloned().unwrap_or_default();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET status = $1,
                sent_at = CASE WHEN $2 = 'SENT' AND sent_at IS NULL THEN $3 ELSE sent_at END,
                delivered_at = CASE WHEN $2 = 'DELIVERED' AND delivered_at IS NULL THEN $3 ELSE delivered_at END,
                read_at = CASE WHEN $2 = 'READ' AND read_at IS NULL THEN $3 ELSE read_at END,
                played_at = CASE WHEN $2 = 'PLAYED' AND played_at IS NULL THEN $3 ELSE played_at END,
                failed_at = CASE WHEN $4 AND $2 = 'FAILED' THEN $3 ELSE failed_at END,
                error_code = COALESCE($5, error_code), error_reason = COALESCE($6, error_reason), updated_at = $7,
                pricing_billable = COALESCE($9, pricing_billable),
                pricing_category = COALESCE($10, pricing_category), pricing_model = COALESCE($11, pricing_model),
                meta_conversation_id = COALESCE($12, meta_conversation_id),
                conversation_origin = COALESCE($13, conversation_origin),
                conversation_expires_at = COALESCE($14, conversation_expires_at)
             WHERE id = $8",
        )
        .bind(&status).bind(s.status.as_str()).bind(s.at_ms).bind(advanced).bind(error_code).bind(error_reason)
        .bind(now_ms).bind(id)
        .bind(p.billable).bind(&p.category).bind(&p.pricing_model).bind(&p.conversation_id)
        .bind(&p.conversation_origin).bind(p.conversation_expires_at)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(StatusApplied {
        message_id: id,
        contact_id,
        previous: current,
        status,
        advanced,
        source,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub contact_id: Uuid,
    pub direction: String,
    pub wamid: Option<String>,
    pub kind: String,
    pub body: Option<String>,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

type MessageRow = (
    Uuid,
    Option<Uuid>,
    Uuid,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
    i64,
);

pub async fn message_by_wamid(
    tx: &mut TenantTx,
    wamid: &str,
) -> Result<Option<MessageView>, StoreError> {
    let r: Option<MessageRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, conversation_id, contact_id, direction, wamid, kind, body, status, error_code, error_reason, created_at
             FROM messages WHERE wamid = $1",
        )
        .bind(wamid).fetch_optional(&mut *c).await?
    });
    Ok(r.map(|r| MessageView {
        id: r.0,
        conversation_id: r.1,
        contact_id: r.2,
        direction: r.3,
        wamid: r.4,
        kind: r.5,
        body: r.6,
        status: r.7,
        error_code: r.8,
        error_reason: r.9,
        created_at: from_ms(r.10),
    }))
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub phone_number_id: String,
    pub status: String,
    pub window_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn conversation_of(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<ConversationView>, StoreError> {
    let rows: Vec<(Uuid, Uuid, String, String, Option<i64>)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, contact_id, phone_number_id, status, window_expires_at FROM conversations WHERE contact_id = $1")
            .bind(contact).fetch_all(&mut *c).await?
    });
    Ok(rows
        .into_iter()
        .map(|r| ConversationView {
            id: r.0,
            contact_id: r.1,
            phone_number_id: r.2,
            status: r.3,
            window_expires_at: r.4.map(from_ms),
        })
        .collect())
}

/// Sets a template's status from Meta (creating the record if Galantis did
/// not know the template). Returns (template id, previous status).
pub async fn apply_template_status(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
    meta_template_id: Option<&str>,
    status: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(Uuid, Option<String>), StoreError> {
    let existing: Option<(Uuid, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT id, status FROM templates WHERE (name = $1 AND language = $2) OR ($3 IS NOT NULL AND meta_template_id = $3)")
            .bind(name).bind(language).bind(meta_template_id).fetch_optional(&mut *c).await?
    });
    let id = existing.as_ref().map(|e| e.0).unwrap_or_else(Uuid::now_v7);
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO templates (id, name, language, status, rejection_reason, meta_template_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (name, language) DO UPDATE SET status = excluded.status, rejection_reason = excluded.rejection_reason,
                 meta_template_id = COALESCE(excluded.meta_template_id, templates.meta_template_id), updated_at = excluded.updated_at",
        )
        .bind(id).bind(name).bind(language).bind(status).bind(reason).bind(meta_template_id).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok((id, existing.map(|e| e.1)))
}

/// Template status by name and language.
pub async fn template_status(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT status, rejection_reason FROM templates WHERE name = $1 AND language = $2",
        )
        .bind(name)
        .bind(language)
        .fetch_optional(&mut *c)
        .await?
    }))
}

/// Status events scrubbed of recipient data for a contact's wamids.
pub async fn scrub_status_events_for(tx: &mut TenantTx, contact: Uuid) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE message_status_events SET error_detail = NULL
             WHERE wamid IN (SELECT wamid FROM messages WHERE contact_id = $1 AND wamid IS NOT NULL)",
        )
        .bind(contact).execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}

/// An outbound message Galantis sent (or is sending).
#[derive(Debug, Clone)]
pub struct OutboundMessage<'a> {
    pub contact_id: Uuid,
    pub phone_number_id: &'a str,
    pub idempotency_key: &'a str,
    pub kind: &'a str,
    pub body: Option<&'a str>,
    pub content: &'a Value,
    pub source: &'a str,
    pub template_name: Option<&'a str>,
    pub template_language: Option<&'a str>,
    pub is_sandbox: bool,
}

/// Records an outbound message as QUEUED, once per idempotency key; returns
/// the message id (the existing one for a repeated key).
pub async fn insert_outbound(
    tx: &mut TenantTx,
    m: &OutboundMessage<'_>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO messages (id, contact_id, phone_number_id, direction, idempotency_key, kind, body, content, source,
                                   template_name, template_language, status, is_sandbox, created_at, updated_at)
             VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, 'QUEUED', $11, $12, $12)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )
        .bind(id).bind(m.contact_id).bind(m.phone_number_id).bind(m.idempotency_key).bind(m.kind).bind(m.body)
        .bind(Json(m.content)).bind(m.source).bind(m.template_name).bind(m.template_language).bind(m.is_sandbox).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT id FROM messages WHERE idempotency_key = $1")
            .bind(m.idempotency_key)
            .fetch_one(&mut *c)
            .await?
    }))
}

/// Meta accepted the message: remember its wamid, and apply any status that
/// arrived before we knew the wamid.
pub async fn set_wamid(
    tx: &mut TenantTx,
    message: Uuid,
    wamid: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE messages SET wamid = $1, updated_at = $2 WHERE id = $3")
            .bind(wamid)
            .bind(now_ms)
            .bind(message)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    apply_pending(tx, wamid, now_ms).await?;
    Ok(())
}

/// Applies the statuses recorded for `wamid` before its message was known
/// (status webhooks that overtook the send's answer), oldest first.
/// Harmless when there are none or they were applied already. Returns how
/// many were applied.
pub async fn apply_pending(
    tx: &mut TenantTx,
    wamid: &str,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let pending: Vec<(String, i64, Option<i64>, Option<String>, Option<String>)> = on_tx!(
        tx.tx(),
        |c| {
            sqlx::query_as(
            "SELECT status, occurred_at, error_code, error_title, error_detail FROM message_status_events
             WHERE wamid = $1 AND applied = $2 ORDER BY occurred_at",
        )
        .bind(wamid).bind(false).fetch_all(&mut *c).await?
        }
    );
    let mut applied = 0;
    for (status, at, code, title, detail) in pending {
        if let Ok(status) = status.parse::<MessageStatus>() {
            let u = StatusUpdate {
                wamid,
                status,
                at_ms: at,
                error_code: code,
                error_title: title.as_deref(),
                error_detail: detail.as_deref(),
            };
            apply_status(tx, &u, now_ms).await?;
            applied += 1;
        }
    }
    Ok(applied)
}

/// What Meta says a message costs and under which conversation it went
/// (a status's `pricing` and `conversation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessagePricing {
    pub billable: Option<bool>,
    pub category: Option<String>,
    pub pricing_model: Option<String>,
    pub conversation_id: Option<String>,
    pub conversation_origin: Option<String>,
    pub conversation_expires_at: Option<i64>,
}

/// Keeps what is known; a later status without pricing clears nothing.
pub async fn set_pricing(
    tx: &mut TenantTx,
    wamid: &str,
    p: &MessagePricing,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE messages SET pricing_billable = COALESCE($1, pricing_billable),
                 pricing_category = COALESCE($2, pricing_category), pricing_model = COALESCE($3, pricing_model),
                 meta_conversation_id = COALESCE($4, meta_conversation_id),
                 conversation_origin = COALESCE($5, conversation_origin),
                 conversation_expires_at = COALESCE($6, conversation_expires_at), updated_at = $7
             WHERE wamid = $8",
        )
        .bind(p.billable).bind(&p.category).bind(&p.pricing_model).bind(&p.conversation_id)
        .bind(&p.conversation_origin).bind(p.conversation_expires_at).bind(now_ms).bind(wamid)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n > 0)
}

pub async fn pricing_of(
    tx: &mut TenantTx,
    wamid: &str,
) -> Result<Option<MessagePricing>, StoreError> {
    type R = (
        Option<bool>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let r: Option<R> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT pricing_billable, pricing_category, pricing_model, meta_conversation_id, conversation_origin,
                    conversation_expires_at FROM messages WHERE wamid = $1",
        )
        .bind(wamid)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(r.map(|r| MessagePricing {
        billable: r.0,
        category: r.1,
        pricing_model: r.2,
        conversation_id: r.3,
        conversation_origin: r.4,
        conversation_expires_at: r.5,
    }))
}

/// A message the merchant sent from the WhatsApp Business app on a
/// coexistence number (Meta's `smb_message_echoes`): outbound, already sent,
/// once per wamid. Returns the new id, or `None` for a repeated echo.
#[derive(Debug, Clone)]
pub struct EchoMessage<'a> {
    pub conversation_id: Uuid,
    pub contact_id: Uuid,
    pub phone_number_id: &'a str,
    pub wamid: &'a str,
    pub kind: &'a str,
    pub body: Option<&'a str>,
    pub content: &'a Value,
    pub source: &'a str,
    pub at_ms: i64,
}

pub async fn insert_echo(
    tx: &mut TenantTx,
    m: &EchoMessage<'_>,
    now_ms: i64,
) -> Result<Option<Uuid>, StoreError> {
    let exists: Option<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT id FROM messages WHERE wamid = $1")
            .bind(m.wamid)
            .fetch_optional(&mut *c)
            .await?
    });
    if exists.is_some() {
        return Ok(None);
    }
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, contact_id, phone_number_id, direction, wamid, kind, body, content,
                                   source, status, sent_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, $8, $9, 'SENT', $10, $11, $11)",
        )
        .bind(id).bind(m.conversation_id).bind(m.contact_id).bind(m.phone_number_id).bind(m.wamid).bind(m.kind)
        .bind(m.body).bind(Json(m.content)).bind(m.source).bind(m.at_ms).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(Some(id))
}

/// A message went out from the business (an echo from the WhatsApp
/// Business app): the conversation exists, its last message moves, and the
/// service window is left alone (only the customer opens it).
pub async fn touch_conversation_outbound(
    tx: &mut TenantTx,
    contact: Uuid,
    phone_number_id: &str,
    at_ms: i64,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = ensure_conversation(tx, contact, phone_number_id, now_ms).await?;
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE conversations SET
                last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < $1 THEN $1 ELSE last_message_at END,
                updated_at = $2
             WHERE id = $3",
        )
        .bind(at_ms).bind(now_ms).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(id)
}

/// Where a message came from (`campaign`, `api`, `whatsapp_business_app`, …).
pub async fn source_of(tx: &mut TenantTx, wamid: &str) -> Result<Option<String>, StoreError> {
    let r: Option<Option<String>> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT source FROM messages WHERE wamid = $1")
            .bind(wamid)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(r.flatten())
}
