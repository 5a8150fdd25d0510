//! Inbound messages of every type: a new message gets a readable `body`
//! (the structured message stays in `content`); a reaction, edit or revoke
//! changes the message it names instead of becoming a new one; a
//! `user_changed_number` notice moves the contact to the new number.

use galantis_core::messaging::inbound::{self, InboundEffect};
use galantis_core::{DomainEvent, PhoneE164};
use galantis_store::TenantTx;
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::contacts::phone_changes::{self, NumberChange};
use galantis_store::tenant::contacts::{self, Contact};
use galantis_store::tenant::messaging::{self, Amendment, InboundMessage};
use serde_json::Value;

use crate::webhooks::outcome::{HandlerError, Outcome};
use crate::webhooks::parse::{int, string};

fn wa_phone(wa_id: &str, what: &str) -> Result<PhoneE164, HandlerError> {
    PhoneE164::from_wa_id(wa_id).map_err(|err| HandlerError::Invalid(format!("{what}: {err}")))
}

/// The contact of `phone`, created from its WhatsApp profile if unknown.
async fn contact_for(
    tx: &mut TenantTx,
    phone: &PhoneE164,
    profile: Option<&str>,
    now: i64,
    out: &mut Outcome,
) -> Result<Contact, HandlerError> {
    if let Some(c) = contacts::by_phone(tx, phone.as_str()).await? {
        return Ok(c);
    }
    let c = contacts::create_from_whatsapp(tx, phone.as_str(), profile, now).await?;
    let ev = DomainEvent::ContactCreated {
        contact_id: c.id,
        source: "whatsapp".into(),
    };
    out.event(tx, ev).await?;
    Ok(c)
}

pub(super) async fn inbound(
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
    let phone = wa_phone(&from, "sender")?;
    let at = int(m.get("timestamp")).map(|s| s * 1000).unwrap_or(now);
    let profile = profiles
        .iter()
        .find(|(w, _)| *w == from)
        .map(|(_, n)| n.as_str());
    let kind = string(m.get("type")).unwrap_or_else(|| "unknown".into());
    let effect = inbound::effect(m);

    // Validated before anything is written, so a bad new number changes nothing.
    let new_phone = match &effect {
        InboundEffect::ChangedNumber { new_wa_id } => Some(wa_phone(new_wa_id, "new number")?),
        _ => None,
    };
    if let Some(new_phone) = &new_phone {
        let change =
            phone_changes::change_number(tx, phone.as_str(), new_phone.as_str(), &wamid, at, now)
                .await?;
        if let NumberChange::NewNumberHeld { previous, holder } = change {
            tracing::info!(%previous, %holder, "user_changed_number: the new number already has a contact, which keeps it");
        }
    }
    let contact = contact_for(tx, new_phone.as_ref().unwrap_or(&phone), profile, now, out).await?;

    let amendment = match effect {
        InboundEffect::React { target, emoji } => Some(("reaction", target, emoji, m)),
        InboundEffect::Edit { target, message } => Some(("edit", target, None, message)),
        InboundEffect::Revoke { target } => Some(("revoke", target, None, m)),
        InboundEffect::New | InboundEffect::ChangedNumber { .. } => None,
    };
    if let Some((kind, target, emoji, payload)) = amendment {
        // A reaction, edit or revoke is the customer writing: it keeps the
        // service window open, but it is not a message of its own.
        messaging::touch_conversation_inbound(tx, contact.id, pnid, at, now).await?;
        let summary = if kind == "edit" {
            inbound::summary(payload)
        } else {
            emoji.map(str::to_owned)
        };
        messaging::amend(
            tx,
            &Amendment {
                wamid: &wamid,
                target_wamid: target,
                contact_id: contact.id,
                kind,
                text: summary.as_deref(),
                payload,
                at_ms: at,
            },
            now,
        )
        .await?;
        return Ok(());
    }

    // A system notice is Meta writing, not the customer: it is kept in the
    // conversation but opens no service window.
    let (conversation_id, reopened) = if kind == "system" {
        (
            messaging::ensure_conversation(tx, contact.id, pnid, now).await?,
            false,
        )
    } else {
        let t = messaging::touch_conversation_inbound(tx, contact.id, pnid, at, now).await?;
        (t.id, t.reopened)
    };
    let body = inbound::summary(m);
    // A run writing its wait for this contact's reply sees this message,
    // or its wake-up sees the wait (`runs::hold_replies`).
    runs::hold_replies(tx, contact.id).await?;
    let inserted = messaging::insert_inbound(
        tx,
        &InboundMessage {
            conversation_id,
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
            conversation_id,
            message_id,
            contact_id: contact.id,
            wamid: wamid.to_string(),
            message_type: kind,
            button_reply_id: inbound::button_reply_id(m),
            context_wamid: text("/context/id"),
            reopened,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}
