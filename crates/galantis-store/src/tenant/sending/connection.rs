//! The tenant's WhatsApp connection and its numbers.

use serde::Serialize;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::on_tx;

/// The tenant's WhatsApp connection row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Connection {
    pub state: String,
    pub reason: Option<String>,
    pub error_code: Option<i64>,
    pub waba_id: Option<String>,
    /// `sandbox` or `meta` (a system-user token is stored).
    pub credentials: String,
    pub verified_at: Option<i64>,
    pub halted_at: Option<i64>,
    pub updated_at: i64,
}

pub async fn connection(tx: &mut TenantTx) -> Result<Option<Connection>, StoreError> {
    let r: Option<(
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
        Option<i64>,
        Option<i64>,
        i64,
    )> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT state, reason, error_code, waba_id, credentials, verified_at, halted_at, updated_at
             FROM whatsapp_connection WHERE id = 1",
        )
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(r.map(|r| Connection {
        state: r.0,
        reason: r.1,
        error_code: r.2,
        waba_id: r.3,
        credentials: r.4,
        verified_at: r.5,
        halted_at: r.6,
        updated_at: r.7,
    }))
}

pub async fn put_connection(tx: &mut TenantTx, c0: &Connection) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO whatsapp_connection (id, state, reason, error_code, waba_id, credentials, verified_at, halted_at, updated_at)
             VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, reason = excluded.reason, error_code = excluded.error_code,
                 waba_id = excluded.waba_id, credentials = excluded.credentials, verified_at = excluded.verified_at,
                 halted_at = excluded.halted_at, updated_at = excluded.updated_at",
        )
        .bind(&c0.state).bind(&c0.reason).bind(c0.error_code).bind(&c0.waba_id).bind(&c0.credentials)
        .bind(c0.verified_at).bind(c0.halted_at).bind(c0.updated_at)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(())
}

/// A tenant-halting error: the connection needs attention. Returns whether
/// it changed (it was not already halted).
pub async fn halt(
    tx: &mut TenantTx,
    code: i64,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let current = connection(tx).await?;
    if current
        .as_ref()
        .is_some_and(|c| c.state == "needs_attention")
    {
        return Ok(false);
    }
    let mut c = current.unwrap_or(Connection {
        state: "connected".into(),
        reason: None,
        error_code: None,
        waba_id: None,
        credentials: "sandbox".into(),
        verified_at: None,
        halted_at: None,
        updated_at: now_ms,
    });
    c.state = "needs_attention".into();
    c.reason = Some(reason.to_owned());
    c.error_code = Some(code);
    c.halted_at = Some(now_ms);
    c.updated_at = now_ms;
    put_connection(tx, &c).await?;
    Ok(true)
}

/// Per-number details and pacing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NumberSettings {
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub messages_per_second: i64,
}

pub async fn numbers(tx: &mut TenantTx) -> Result<Vec<NumberSettings>, StoreError> {
    let rows: Vec<(
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    )> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT phone_number_id, waba_id, display_phone_number, verified_name, quality_rating, messages_per_second
             FROM whatsapp_numbers ORDER BY phone_number_id",
        )
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| NumberSettings {
            phone_number_id: r.0,
            waba_id: r.1,
            display_phone_number: r.2,
            verified_name: r.3,
            quality_rating: r.4,
            messages_per_second: r.5,
        })
        .collect())
}

/// Replaces the set of numbers with `list`.
pub async fn replace_numbers(
    tx: &mut TenantTx,
    list: &[NumberSettings],
    now_ms: i64,
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM whatsapp_numbers")
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    for n in list {
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "INSERT INTO whatsapp_numbers (phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
                                               messages_per_second, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&n.phone_number_id).bind(&n.waba_id).bind(&n.display_phone_number).bind(&n.verified_name)
            .bind(&n.quality_rating).bind(n.messages_per_second).bind(now_ms)
            .execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// Meta restricted, disabled or disconnected the account (`account_update`):
/// the connection needs attention, with Meta's event as the reason and no
/// error code (none was returned to a send). Returns whether it changed.
pub async fn halt_for_account(
    tx: &mut TenantTx,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let current = connection(tx).await?;
    if current
        .as_ref()
        .is_some_and(|c| c.state == "needs_attention" && c.reason.as_deref() == Some(reason))
    {
        return Ok(false);
    }
    let mut c = current.unwrap_or(Connection {
        state: "connected".into(),
        reason: None,
        error_code: None,
        waba_id: None,
        credentials: "sandbox".into(),
        verified_at: None,
        halted_at: None,
        updated_at: now_ms,
    });
    c.state = "needs_attention".into();
    c.reason = Some(reason.to_owned());
    c.error_code = None;
    c.halted_at = Some(now_ms);
    c.updated_at = now_ms;
    put_connection(tx, &c).await?;
    Ok(true)
}

/// Meta reinstated the account: a halt that an account event caused (no
/// error code) is lifted; one a send error caused stays until reconnected.
pub async fn reinstate_account(tx: &mut TenantTx, now_ms: i64) -> Result<bool, StoreError> {
    let Some(mut c) = connection(tx).await? else {
        return Ok(false);
    };
    if c.state != "needs_attention" || c.error_code.is_some() {
        return Ok(false);
    }
    c.state = "connected".into();
    c.reason = None;
    c.halted_at = None;
    c.updated_at = now_ms;
    put_connection(tx, &c).await?;
    Ok(true)
}

/// A number's messaging limit and throughput as Meta last reported them
/// (`phone_number_quality_update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberQuality<'a> {
    pub display_phone_number: &'a str,
    pub event: &'a str,
    pub messaging_limit: Option<&'a str>,
    /// Set when Meta raised or lowered the number's throughput.
    pub messages_per_second: Option<i64>,
}

/// Returns the phone number id updated, if the number is one of the tenant's.
pub async fn set_number_quality(
    tx: &mut TenantTx,
    q: &NumberQuality<'_>,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    // Meta sends the display number as digits; stored ones may carry a `+`.
    let digits: String = q
        .display_phone_number
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let found: Option<String> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT phone_number_id FROM whatsapp_numbers
             WHERE REPLACE(REPLACE(REPLACE(display_phone_number, '+', ''), ' ', ''), '-', '') = $1",
        )
        .bind(&digits)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some(id) = found else {
        return Ok(None);
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE whatsapp_numbers SET quality_event = $1, messaging_limit = COALESCE($2, messaging_limit),
                 messages_per_second = COALESCE($3, messages_per_second), updated_at = $4
             WHERE phone_number_id = $5",
        )
        .bind(q.event).bind(q.messaging_limit).bind(q.messages_per_second).bind(now_ms).bind(&id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(Some(id))
}

/// (messaging limit, last quality event) of a number.
pub async fn number_quality(
    tx: &mut TenantTx,
    phone_number_id: &str,
) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT messaging_limit, quality_event FROM whatsapp_numbers WHERE phone_number_id = $1",
        )
        .bind(phone_number_id)
        .fetch_optional(&mut *c)
        .await?
    }))
}
