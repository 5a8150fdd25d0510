//! What the send path reads about a send, shared by queueing (`queue`)
//! and the send job (`job`), which re-checks before calling Meta.

use chrono::{DateTime, Utc};
use galantis_core::PhoneE164;
use galantis_core::sending::check::{
    ConnectionFacts, ContactFacts, NumberFacts, StoredTemplate, TemplateFacts,
};
use galantis_core::templates::ParamSpec;
use galantis_store::tenant::contacts::Contact;
use galantis_store::tenant::{messaging, templates};
use galantis_store::{StoreError, TenantTx};
use serde_json::Value;
use uuid::Uuid;

use super::connection::{Number, Resolved};

/// The 24 h customer-service window with this number is open.
pub async fn window_open(
    tx: &mut TenantTx,
    contact: Uuid,
    phone_number_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(messaging::conversation_of(tx, contact)
        .await?
        .iter()
        .any(|c| {
            c.phone_number_id == phone_number_id && c.window_expires_at.is_some_and(|w| w > now)
        }))
}

pub fn contact(c: &Contact) -> ContactFacts {
    ContactFacts {
        redacted: c.redacted,
        marketing_state: c.marketing_state,
        has_e164_phone: c
            .phone
            .as_deref()
            .is_some_and(|p| PhoneE164::stored(p).is_ok()),
    }
}

pub fn connection(conn: &Resolved) -> ConnectionFacts {
    match conn.state.as_str() {
        "connected" => ConnectionFacts::Connected,
        "needs_attention" => ConnectionFacts::NeedsAttention {
            reason: conn.reason.clone(),
        },
        _ => ConnectionFacts::NotConnected {
            reason: conn.reason.clone(),
        },
    }
}

/// The number a send goes from: the requested one, else the default.
pub fn number<'a>(
    conn: &'a Resolved,
    requested: Option<&str>,
) -> (NumberFacts, Option<&'a Number>) {
    match requested {
        Some(id) => match conn.number(id) {
            Some(n) => (NumberFacts::Found, Some(n)),
            None => (NumberFacts::UnknownRequested, None),
        },
        None => match conn.default_number() {
            Some(n) => (NumberFacts::Found, Some(n)),
            None => (NumberFacts::None, None),
        },
    }
}

/// The stored template a send names, with its parameters checked.
pub async fn template(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
    components: &Value,
) -> Result<TemplateFacts, StoreError> {
    let stored = templates::by_name(tx, name, language).await?;
    Ok(template_of(stored.as_ref(), name, language, components))
}

/// [`template`] from a template already read (a batch reads each once).
pub fn template_of(
    stored: Option<&templates::TemplateRecord>,
    name: &str,
    language: &str,
    components: &Value,
) -> TemplateFacts {
    TemplateFacts {
        name: name.to_owned(),
        language: language.to_owned(),
        stored: stored.map(|r| StoredTemplate {
            parameters: ParamSpec::of(&r.components).check(components),
            status: r.status.clone(),
            category: r.category,
        }),
    }
}
