//! A contact's phone number moving (WhatsApp's `user_changed_number`), with
//! its history.

use serde::Serialize;
use uuid::Uuid;

use super::{Contact, by_phone};
use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

/// What a number change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberChange {
    /// The contact that held the old number now holds the new one.
    Moved(Uuid),
    /// Another contact already held the new number: it keeps it, and the
    /// contact of the old number loses that number (it is no longer the
    /// person's), so one number still means one contact.
    NewNumberHeld { previous: Uuid, holder: Uuid },
    /// Nobody held the old number (or it was applied already).
    Nothing,
}

/// Moves the contact holding `old` to `new` (both E.164), recording the
/// change with `reference` (the system message's wamid) as proof.
pub async fn change_number(
    tx: &mut TenantTx,
    old: &str,
    new: &str,
    reference: &str,
    occurred_at: i64,
    now_ms: i64,
) -> Result<NumberChange, StoreError> {
    let Some(from) = by_phone(tx, old).await? else {
        return Ok(NumberChange::Nothing);
    };
    if old == new {
        return Ok(NumberChange::Nothing);
    }
    let holder: Option<Contact> = by_phone(tx, new).await?;
    let (phone, note, outcome) = match &holder {
        Some(h) => (
            None,
            Some(format!("new number already held by contact {}", h.id)),
            NumberChange::NewNumberHeld {
                previous: from.id,
                holder: h.id,
            },
        ),
        None => (Some(new), None, NumberChange::Moved(from.id)),
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET phone = $1, phone_raw = $1, phone_status = CASE WHEN $1 IS NULL THEN NULL ELSE 'valid' END,
                    updated_at = $2
             WHERE id = $3",
        )
        .bind(phone).bind(now_ms).bind(from.id)
        .execute(&mut *c).await?;
        sqlx::query(
            "INSERT INTO contact_phone_changes (id, contact_id, previous_phone, phone, source, reference, note, occurred_at, created_at)
             VALUES ($1, $2, $3, $4, 'whatsapp_user_changed_number', $5, $6, $7, $8)",
        )
        .bind(Uuid::now_v7()).bind(from.id).bind(old).bind(phone).bind(reference).bind(note).bind(occurred_at).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(outcome)
}

/// One phone change of a contact.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneChange {
    pub previous_phone: Option<String>,
    pub phone: Option<String>,
    pub source: String,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// A contact's phone changes, oldest first.
pub async fn phone_history(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<PhoneChange>, StoreError> {
    type Row = (
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT previous_phone, phone, source, reference, note, occurred_at FROM contact_phone_changes
             WHERE contact_id = $1 ORDER BY occurred_at, id",
        )
        .bind(contact).fetch_all(&mut *c).await?
    });
    Ok(rows
        .into_iter()
        .map(|r| PhoneChange {
            previous_phone: r.0,
            phone: r.1,
            source: r.2,
            reference: r.3,
            note: r.4,
            occurred_at: from_ms(r.5),
        })
        .collect())
}

/// Erasure: the history's numbers and notes go with the contact's.
pub(crate) async fn scrub(tx: &mut TenantTx, contact: Uuid) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contact_phone_changes SET previous_phone = NULL, phone = NULL, reference = NULL, note = NULL
             WHERE contact_id = $1",
        )
        .bind(contact).execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}
