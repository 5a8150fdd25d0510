//! The inbox over conversations: listing and reading them with their
//! messages and notes, status, assignment and read state, quick replies,
//! and the raw facts inbox analytics are computed from.
//!
//! A conversation is one (contact, business number); its messages are the
//! messages of that pair (outbound sends carry no conversation id), and its
//! unread count is derived from the inbound messages newer than
//! `last_read_at`, so a redelivered webhook never counts twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// A conversation as the inbox lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub phone_number_id: String,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub unread_count: i64,
    pub last_message_preview: Option<String>,
    pub last_message_at: Option<DateTime<Utc>>,
    /// The customer-service window is open until then (absent: never opened).
    pub window_expires_at: Option<DateTime<Utc>>,
    pub last_read_at: Option<DateTime<Utc>>,
    pub first_reply_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Last activity in epoch ms: the list's order and cursor.
    #[serde(skip)]
    pub activity_ms: i64,
    #[serde(skip)]
    pub opened_at_ms: i64,
    #[serde(skip)]
    pub auto_assigned: bool,
    #[serde(skip)]
    pub window_expires_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    contact_id: Uuid,
    phone_number_id: String,
    status: String,
    assigned_member_id: Option<Uuid>,
    last_message_at: Option<i64>,
    window_expires_at: Option<i64>,
    last_read_at: Option<i64>,
    opened_at: Option<i64>,
    first_reply_at: Option<i64>,
    auto_assigned_at: Option<i64>,
    resolved_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    unread: i64,
    preview: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    activity: i64,
}

fn to_conversation(r: Row) -> Conversation {
    let name = [r.first_name.as_deref(), r.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Conversation {
        id: r.id,
        contact_id: r.contact_id,
        contact_name: (!name.is_empty()).then_some(name),
        contact_phone: r.phone,
        phone_number_id: r.phone_number_id,
        status: r.status,
        assignee_id: r.assigned_member_id,
        unread_count: r.unread,
        last_message_preview: r.preview,
        last_message_at: r.last_message_at.map(from_ms),
        window_expires_at: r.window_expires_at.map(from_ms),
        last_read_at: r.last_read_at.map(from_ms),
        first_reply_at: r.first_reply_at.map(from_ms),
        resolved_at: r.resolved_at.map(from_ms),
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        activity_ms: r.activity,
        opened_at_ms: r.opened_at.unwrap_or(r.created_at),
        auto_assigned: r.auto_assigned_at.is_some(),
        window_expires_ms: r.window_expires_at,
    }
}

macro_rules! select {
    () => {
        "SELECT cv.id, cv.contact_id, cv.phone_number_id, cv.status, cv.assigned_member_id,
        cv.last_message_at, cv.window_expires_at, cv.last_read_at, cv.opened_at, cv.first_reply_at,
        cv.auto_assigned_at, cv.resolved_at, cv.created_at, cv.updated_at,
        (SELECT COUNT(*) FROM messages m WHERE m.contact_id = cv.contact_id AND m.phone_number_id = cv.phone_number_id
            AND m.direction = 'inbound' AND m.created_at > COALESCE(cv.last_read_at, 0)) AS unread,
        (SELECT m.body FROM messages m WHERE m.contact_id = cv.contact_id AND m.phone_number_id = cv.phone_number_id
            ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS preview,
        ct.first_name, ct.last_name, ct.phone,
        COALESCE(cv.last_message_at, cv.created_at) AS activity
    FROM conversations cv JOIN contacts ct ON ct.id = cv.contact_id"
    };
}

/// Whose conversations to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Assignee {
    #[default]
    Anyone,
    Unassigned,
    Member(Uuid),
}

/// Filters of [`list`]; `after` is the (activity, id) of the last row seen.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub assignee: Assignee,
    pub unread_only: bool,
    pub q: Option<String>,
    pub after: Option<(i64, Uuid)>,
    pub limit: u32,
}

/// Conversations, most recent activity first.
pub async fn list(tx: &mut TenantTx, f: &ListFilter) -> Result<Vec<Conversation>, StoreError> {
    let (mode, member) = match f.assignee {
        Assignee::Anyone => (0_i64, None),
        Assignee::Unassigned => (1, None),
        Assignee::Member(m) => (2, Some(m)),
    };
    let q = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let name_pattern = q.map(|q| crate::like::like_contains(&q.to_lowercase()));
    // Phones are stored in E.164: "+34 612 345" finds "+34612345678".
    let digits: Option<String> = q
        .map(|q| q.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| d.len() >= 3);
    let phone_pattern = digits.map(|d| crate::like::like_contains(&d));
    const SQL: &str = concat!(
        select!(),
        " WHERE ct.deleted_at IS NULL
           AND ($1 IS NULL OR cv.status = $1)
           AND ($2 = 0 OR ($2 = 1 AND cv.assigned_member_id IS NULL) OR ($2 = 2 AND cv.assigned_member_id = $3))
           AND ($4 = 0 OR EXISTS (SELECT 1 FROM messages m WHERE m.contact_id = cv.contact_id
                 AND m.phone_number_id = cv.phone_number_id AND m.direction = 'inbound'
                 AND m.created_at > COALESCE(cv.last_read_at, 0)))
           AND ($5 IS NULL OR LOWER(COALESCE(ct.first_name, '') || ' ' || COALESCE(ct.last_name, '')) LIKE $5 ESCAPE '\\'
                OR ($6 IS NOT NULL AND COALESCE(ct.phone, '') LIKE $6 ESCAPE '\\'))
           AND ($7 IS NULL OR COALESCE(cv.last_message_at, cv.created_at) < $7
                OR (COALESCE(cv.last_message_at, cv.created_at) = $7 AND cv.id < $8))
         ORDER BY activity DESC, cv.id DESC LIMIT $9"
    );
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(SQL)
            .bind(&f.status)
            .bind(mode)
            .bind(member)
            .bind(i64::from(f.unread_only))
            .bind(&name_pattern)
            .bind(&phone_pattern)
            .bind(f.after.map(|a| a.0))
            .bind(f.after.map(|a| a.1))
            .bind(i64::from(f.limit))
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows.into_iter().map(to_conversation).collect())
}

/// One conversation, `None` if it is not this tenant's.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Conversation>, StoreError> {
    const SQL: &str = concat!(select!(), " WHERE cv.id = $1");
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(SQL).bind(id).fetch_optional(&mut *c).await?
    });
    Ok(row.map(to_conversation))
}

/// A message of a conversation, inbound or outbound.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationMessage {
    pub id: Uuid,
    pub direction: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub body: Option<String>,
    pub content: serde_json::Value,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_reason: Option<String>,
    pub source: Option<String>,
    pub template_name: Option<String>,
    pub sent_by_member_id: Option<Uuid>,
    pub is_sandbox: bool,
    pub created_at: DateTime<Utc>,
}

/// The newest `limit` messages of a conversation, oldest first.
pub async fn messages(
    tx: &mut TenantTx,
    conv: &Conversation,
    limit: u32,
) -> Result<Vec<ConversationMessage>, StoreError> {
    let rows: Vec<(
        Uuid,
        String,
        String,
        Option<String>,
        sqlx::types::Json<serde_json::Value>,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Uuid>,
        bool,
        i64,
    )> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, direction, kind, body, content, status, error_code, error_reason, source, template_name,
                    sent_by_member_id, is_sandbox, created_at
             FROM messages WHERE contact_id = $1 AND phone_number_id = $2
             ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(conv.contact_id)
        .bind(&conv.phone_number_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    let mut out: Vec<ConversationMessage> = rows
        .into_iter()
        .map(|r| ConversationMessage {
            id: r.0,
            direction: r.1,
            kind: r.2,
            body: r.3,
            content: r.4.0,
            status: r.5,
            error_code: r.6,
            error_reason: r.7,
            source: r.8,
            template_name: r.9,
            sent_by_member_id: r.10,
            is_sandbox: r.11,
            created_at: from_ms(r.12),
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// An internal note on a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub member_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

pub async fn add_note(
    tx: &mut TenantTx,
    conversation: Uuid,
    member: Uuid,
    body: &str,
    now_ms: i64,
) -> Result<Note, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO conversation_notes (id, conversation_id, member_id, body, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(conversation)
        .bind(member)
        .bind(body)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(Note {
        id,
        conversation_id: conversation,
        member_id: member,
        body: body.to_owned(),
        created_at: from_ms(now_ms),
    })
}

pub async fn notes(tx: &mut TenantTx, conversation: Uuid) -> Result<Vec<Note>, StoreError> {
    let rows: Vec<(Uuid, Uuid, String, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, member_id, body, created_at FROM conversation_notes
             WHERE conversation_id = $1 ORDER BY created_at, id",
        )
        .bind(conversation)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| Note {
            id: r.0,
            conversation_id: conversation,
            member_id: r.1,
            body: r.2,
            created_at: from_ms(r.3),
        })
        .collect())
}

async fn activity(
    tx: &mut TenantTx,
    conversation: Uuid,
    member: Option<Uuid>,
    action: &str,
    duration_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO conversation_activity (id, conversation_id, member_id, action, duration_ms, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(conversation)
        .bind(member)
        .bind(action)
        .bind(duration_ms)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Sets the status; resolving records how long the conversation was open.
/// `false` when it already had that status.
pub async fn set_status(
    tx: &mut TenantTx,
    conv: &Conversation,
    status: &str,
    member: Uuid,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if conv.status == status {
        return Ok(false);
    }
    let resolving = status == "RESOLVED";
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE conversations SET status = $1,
                resolved_at = CASE WHEN $2 = 1 THEN $3 ELSE resolved_at END,
                opened_at = CASE WHEN status = 'RESOLVED' AND $1 <> 'RESOLVED' THEN $3 ELSE opened_at END,
                updated_at = $3
             WHERE id = $4",
        )
        .bind(status)
        .bind(i64::from(resolving))
        .bind(now_ms)
        .bind(conv.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if resolving {
        let took = (now_ms - conv.opened_at_ms).max(0);
        activity(tx, conv.id, Some(member), "resolved", Some(took), now_ms).await?;
    }
    Ok(true)
}

/// Assigns (or with `None` unassigns). `false` when nothing changed.
pub async fn set_assignee(
    tx: &mut TenantTx,
    conv: &Conversation,
    assignee: Option<Uuid>,
    member: Uuid,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if conv.assignee_id == assignee {
        return Ok(false);
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE conversations SET assigned_member_id = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(assignee)
        .bind(now_ms)
        .bind(conv.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    activity(tx, conv.id, Some(member), "assigned", None, now_ms).await?;
    Ok(true)
}

/// Everything up to now is read. `false` when nothing was unread.
pub async fn mark_read(
    tx: &mut TenantTx,
    conv: &Conversation,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // Inbound messages carry Meta's timestamp, which may be ahead of ours.
    let newest: Option<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT MAX(created_at) FROM messages
             WHERE contact_id = $1 AND phone_number_id = $2 AND direction = 'inbound'",
        )
        .bind(conv.contact_id)
        .bind(&conv.phone_number_id)
        .fetch_one(&mut *c)
        .await?
    });
    let read_at = newest.unwrap_or(now_ms).max(now_ms);
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE conversations SET last_read_at = $1, updated_at = $2 WHERE id = $3")
            .bind(read_at)
            .bind(now_ms)
            .bind(conv.id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(conv.unread_count > 0)
}

/// A member's reply was queued: it is attributed to them, the first reply
/// is remembered, and an unassigned conversation never auto-assigned before
/// is assigned to them. Returns whether that assignment happened.
pub async fn after_reply(
    tx: &mut TenantTx,
    conv: &Conversation,
    message: Uuid,
    member: Uuid,
    now_ms: i64,
) -> Result<bool, StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE messages SET sent_by_member_id = $1 WHERE id = $2")
            .bind(member)
            .bind(message)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    let assigned = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE conversations SET assigned_member_id = $1, auto_assigned_at = $2, updated_at = $2
             WHERE id = $3 AND assigned_member_id IS NULL AND auto_assigned_at IS NULL",
        )
        .bind(member)
        .bind(now_ms)
        .bind(conv.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE conversations SET first_reply_at = COALESCE(first_reply_at, $1),
                last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < $1 THEN $1 ELSE last_message_at END,
                updated_at = $1
             WHERE id = $2",
        )
        .bind(now_ms)
        .bind(conv.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if assigned == 1 {
        activity(tx, conv.id, Some(member), "assigned", None, now_ms).await?;
    }
    Ok(assigned == 1)
}

/// A saved snippet.
#[derive(Debug, Clone, Serialize)]
pub struct QuickReply {
    pub id: Uuid,
    pub shortcut: String,
    pub body: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

pub async fn quick_replies(tx: &mut TenantTx) -> Result<Vec<QuickReply>, StoreError> {
    let rows: Vec<(Uuid, String, String, Option<Uuid>, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, shortcut, body, created_by, created_at FROM quick_replies ORDER BY shortcut",
        )
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| QuickReply {
            id: r.0,
            shortcut: r.1,
            body: r.2,
            created_by: r.3,
            created_at: from_ms(r.4),
        })
        .collect())
}

/// `None` when the shortcut is taken.
pub async fn add_quick_reply(
    tx: &mut TenantTx,
    shortcut: &str,
    body: &str,
    member: Uuid,
    now_ms: i64,
) -> Result<Option<QuickReply>, StoreError> {
    let id = Uuid::now_v7();
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO quick_replies (id, shortcut, body, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (shortcut) DO NOTHING",
        )
        .bind(id)
        .bind(shortcut)
        .bind(body)
        .bind(member)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok((n == 1).then(|| QuickReply {
        id,
        shortcut: shortcut.to_owned(),
        body: body.to_owned(),
        created_by: Some(member),
        created_at: from_ms(now_ms),
    }))
}

/// `false` when there was no such quick reply.
pub async fn delete_quick_reply(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM quick_replies WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// A message as analytics see it.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub contact_id: Uuid,
    pub phone_number_id: String,
    pub inbound: bool,
    /// Outbound from the inbox (a member's reply).
    pub reply: bool,
    pub member: Option<Uuid>,
    pub at_ms: i64,
}

/// Inbound messages and outbound sends in `[from_ms, to_ms)`, oldest first.
pub async fn traffic(
    tx: &mut TenantTx,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Traffic>, StoreError> {
    let rows: Vec<(Uuid, String, String, Option<String>, Option<Uuid>, i64)> = on_tx!(
        tx.tx(),
        |c| {
            sqlx::query_as(
            "SELECT contact_id, phone_number_id, direction, source, sent_by_member_id, created_at FROM messages
             WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *c)
        .await?
        }
    );
    Ok(rows
        .into_iter()
        .map(|r| Traffic {
            contact_id: r.0,
            phone_number_id: r.1,
            inbound: r.2 == "inbound",
            reply: r.2 == "outbound" && r.3.as_deref() == Some("inbox"),
            member: r.4,
            at_ms: r.5,
        })
        .collect())
}

/// A member's action in `[from_ms, to_ms)`: (member, action, duration).
pub async fn activity_between(
    tx: &mut TenantTx,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(Option<Uuid>, String, Option<i64>)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT member_id, action, duration_ms FROM conversation_activity
             WHERE at >= $1 AND at < $2 ORDER BY at, id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// Notes per member in `[from_ms, to_ms)`.
pub async fn notes_between(
    tx: &mut TenantTx,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(Uuid, i64)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT member_id, COUNT(*) FROM conversation_notes
             WHERE created_at >= $1 AND created_at < $2 GROUP BY member_id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *c)
        .await?
    }))
}
