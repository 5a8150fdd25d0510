//! `customers/*`, the tag topics (`customer.tags_*` and the seed's
//! `customer_tags/*`) and the marketing consent topics, in Shopify's current
//! shapes (API 2025-01+, consent and tags on their own topics) and the
//! seed's older ones (inline in the customer).

use galantis_core::{ConsentSource, CountryCode, DomainEvent, MarketingState};
use galantis_store::TenantTx;
use galantis_store::tenant::contacts::{self, Contact, CustomerFields, ShopifyConsent, Upserted};
use serde_json::Value;

use super::super::parse::{phone, phone_in, string, tags as tag_list, time_ms};
use super::{HandlerError, Outcome, id_of};
use crate::audience::contact_changed;

/// A consent `state`, `None` when absent or null (Shopify's samples send
/// `"state": null`): unknown, so nothing changes.
fn consent_state(p: &Value, pointer: &str) -> Option<MarketingState> {
    p.pointer(pointer)
        .and_then(Value::as_str)
        .map(MarketingState::from_shopify_sms)
}

pub(super) fn customer_fields(p: &Value, version: i64) -> Result<CustomerFields, HandlerError> {
    // Since API 2025-01 the top-level `phone` is often absent while the
    // default address has one, typically in national format.
    let raw_phone = p
        .get("phone")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .or_else(|| p.pointer("/default_address/phone").and_then(Value::as_str));
    let country = CountryCode::first_of([
        p.pointer("/default_address/country_code")
            .and_then(Value::as_str),
        p.pointer("/addresses/0/country_code")
            .and_then(Value::as_str),
    ]);
    let (phone_e164, phone_raw, phone_status) = phone_in(raw_phone, country);
    // Since API 2025-01 a customer carries no `tags`, `sms_marketing_consent`
    // or `email_marketing_consent`: absent is unknown, never empty.
    let tags = p.get("tags").filter(|t| !t.is_null());
    Ok(CustomerFields {
        shopify_customer_id: id_of(p, "id")?,
        first_name: string(p.get("first_name")),
        last_name: string(p.get("last_name")),
        email: string(p.get("email")).map(|e| e.to_lowercase()),
        phone: phone_e164,
        phone_raw,
        phone_status,
        locale: string(p.get("locale")),
        country: string(p.pointer("/default_address/country_code")),
        tags: tag_list(tags),
        tags_absent: tags.is_none(),
        marketing_state: consent_state(p, "/sms_marketing_consent/state"),
        consent_updated_at: time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")),
        email_marketing_state: consent_state(p, "/email_marketing_consent/state"),
        email_consent_updated_at: time_ms(p.pointer("/email_marketing_consent/consent_updated_at")),
        updated_at: version,
    })
}

/// A key absent from the payload is unknown: the stored value stays (a
/// present `null` or `""` does clear it). Tags and consent are handled by
/// the store ([`CustomerFields::tags_absent`], `None` consent).
fn keep_absent(p: &Value, f: &mut CustomerFields, known: &Contact) {
    let absent = |key: &str| p.get(key).is_none();
    if absent("first_name") {
        f.first_name.clone_from(&known.first_name);
    }
    if absent("last_name") {
        f.last_name.clone_from(&known.last_name);
    }
    if absent("email") {
        f.email.clone_from(&known.email);
    }
    if absent("locale") {
        f.locale.clone_from(&known.locale);
    }
    // No phone key and no address phone to fall back on: unknown, keep it.
    if absent("phone") && p.pointer("/default_address/phone").is_none() {
        // The raw form is not kept on the contact; the E.164 one is what
        // was derived from it.
        f.phone.clone_from(&known.phone);
        f.phone_raw.clone_from(&known.phone);
        f.phone_status = match known.phone_status.as_deref() {
            Some("valid") => Some("valid"),
            Some("missing_calling_code") => Some("missing_calling_code"),
            Some("invalid") => Some("invalid"),
            _ => None,
        };
    }
}

/// `customers/create` and `customers/update`.
pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let mut f = customer_fields(p, version)?;
    if let Some(known) = contacts::by_shopify_id(tx, f.shopify_customer_id).await? {
        keep_absent(p, &mut f, &known);
    }
    match contacts::upsert_customer(tx, &f, now).await? {
        Upserted::Created(c) => {
            let ev = DomainEvent::CustomerCreated {
                contact_id: c.id,
                shopify_customer_id: f.shopify_customer_id,
            };
            out.event(tx, ev).await?;
            for t in &c.tags {
                let ev = DomainEvent::CustomerTagged {
                    contact_id: c.id,
                    tag: t.clone(),
                };
                out.event(tx, ev).await?;
            }
            contact_changed(tx, c.id, now, out.cause()).await?;
        }
        Upserted::Updated { before, after } => {
            let mut changed = Vec::new();
            macro_rules! diff {
                ($($field:ident),*) => { $( if before.$field != after.$field { changed.push(stringify!($field).to_owned()); } )* };
            }
            diff!(
                first_name,
                last_name,
                email,
                phone,
                locale,
                country,
                tags,
                marketing_state
            );
            if !changed.is_empty() {
                let ev = DomainEvent::CustomerUpdated {
                    contact_id: after.id,
                    changed,
                };
                out.event(tx, ev).await?;
            }
            for t in after
                .tags
                .iter()
                .filter(|t| !before.tags.iter().any(|b| b.eq_ignore_ascii_case(t)))
            {
                let ev = DomainEvent::CustomerTagged {
                    contact_id: after.id,
                    tag: t.clone(),
                };
                out.event(tx, ev).await?;
            }
            if before.marketing_state != after.marketing_state {
                let ev = DomainEvent::MarketingConsentChanged {
                    contact_id: after.id,
                    from: Some(before.marketing_state.to_string()),
                    to: after.marketing_state.to_string(),
                    source: None,
                };
                out.event(tx, ev).await?;
            }
            contact_changed(tx, after.id, now, out.cause()).await?;
        }
        Upserted::Skipped => out.ignored = Some("stale update, or the customer was deleted".into()),
    }
    Ok(())
}

/// `customers/delete`.
pub(super) async fn delete(
    tx: &mut TenantTx,
    p: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    if contacts::by_shopify_id(tx, id)
        .await?
        .is_some_and(|c| c.deleted)
    {
        out.ignored = Some(format!("customer {id} is already deleted"));
        return Ok(());
    }
    let contact = contacts::mark_deleted(tx, id, now).await?;
    let ev = DomainEvent::CustomerDeleted {
        contact_id: contact,
        shopify_customer_id: id,
    };
    out.event(tx, ev).await?;
    if let Some(c) = contact {
        contact_changed(tx, c, now, out.cause()).await?;
    }
    Ok(())
}

/// The seed's `customer_tags/added` (`added`) and `customer_tags/removed`:
/// a numeric `customer_id` and `tags_added` / `tags_removed`.
pub(super) async fn seed_tags(
    tx: &mut TenantTx,
    p: &Value,
    added: bool,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "customer_id")?;
    let list = tag_list(p.get(if added { "tags_added" } else { "tags_removed" }));
    change_tags(tx, id, list, added, now, out).await
}

/// `customer.tags_added` (`added`) and `customer.tags_removed` (API 2023-07+,
/// the only tag source since 2025-01): `customerId` as a GraphQL gid and
/// `tags`. `occurredAt` is not used: tag changes are deltas that commute
/// (an add and a remove of the same tag are distinct events Shopify sends in
/// order of occurrence per customer), and a retry keeps the delta idempotent.
pub(super) async fn tags(
    tx: &mut TenantTx,
    p: &Value,
    added: bool,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let id = p
        .get("customerId")
        .and_then(Value::as_str)
        .and_then(|g| g.strip_prefix("gid://shopify/Customer/"))
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| {
            HandlerError::Invalid("payload has no `customerId` gid://shopify/Customer/<id>".into())
        })?;
    change_tags(tx, id, tag_list(p.get("tags")), added, now, out).await
}

async fn change_tags(
    tx: &mut TenantTx,
    id: i64,
    list: Vec<String>,
    added: bool,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let Some(contact) = contacts::by_shopify_id(tx, id).await? else {
        // Tags can arrive before the customer itself: retry later,
        // when customers/create has been processed.
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "customer {id} is not synced yet"
        )));
    };
    let (add, remove) = if added {
        (list, vec![])
    } else {
        (vec![], list)
    };
    let before = contact.tags.clone();
    contacts::change_tags(tx, contact.id, &add, &remove, now).await?;
    for t in add
        .iter()
        .filter(|t| !before.iter().any(|b| b.eq_ignore_ascii_case(t)))
    {
        let ev = DomainEvent::CustomerTagged {
            contact_id: contact.id,
            tag: t.clone(),
        };
        out.event(tx, ev).await?;
    }
    if !remove.is_empty() {
        let ev = DomainEvent::CustomerUntagged {
            contact_id: contact.id,
            tags: remove,
        };
        out.event(tx, ev).await?;
    }
    contact_changed(tx, contact.id, now, out.cause()).await?;
    Ok(())
}

/// The contact a consent payload is about; created from what the payload
/// gives when consent arrives before the customer itself. `None` for a
/// deleted customer.
async fn consent_contact(
    tx: &mut TenantTx,
    id: i64,
    raw_phone: Option<&str>,
    now: i64,
) -> Result<Option<Contact>, HandlerError> {
    if let Some(c) = contacts::by_shopify_id(tx, id).await? {
        return Ok((!c.deleted).then_some(c));
    }
    let (phone_e164, phone_raw, phone_status) = phone(raw_phone);
    let f = CustomerFields {
        shopify_customer_id: id,
        phone: phone_e164,
        phone_raw,
        phone_status,
        tags_absent: true,
        // The customer payload, whenever it comes, is newer than nothing.
        updated_at: 0,
        ..Default::default()
    };
    Ok(match contacts::upsert_customer(tx, &f, now).await? {
        Upserted::Created(c) => Some(*c),
        Upserted::Updated { after, .. } => Some(*after),
        Upserted::Skipped => None,
    })
}

/// The proof's reference: the customer, and how Shopify says consent was
/// given (`opt_in_level`, where it was collected) when it says so.
fn reference(id: i64, consent: Option<&Value>, collected_key: &str) -> String {
    let mut r = format!("customer:{id}");
    for key in ["opt_in_level", collected_key] {
        if let Some(v) = consent.and_then(|c| c.get(key)).and_then(Value::as_str) {
            r.push_str(&format!(" {key}={v}"));
        }
    }
    r
}

async fn consent_changed(
    tx: &mut TenantTx,
    contact: &Contact,
    to: MarketingState,
    source: ConsentSource,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let ev = DomainEvent::MarketingConsentChanged {
        contact_id: contact.id,
        from: Some(contact.marketing_state.to_string()),
        to: to.as_str().to_owned(),
        source: Some(source.as_str().to_owned()),
    };
    out.event(tx, ev).await?;
    contact_changed(tx, contact.id, now, out.cause()).await?;
    Ok(())
}

/// SMS consent: the seed's `customers/marketing_consent_update(d)` (`seed`,
/// which may also carry `email_marketing_consent`) and the current
/// `customers_marketing_consent/update`: `id`, `phone` and
/// `sms_marketing_consent {state, opt_in_level, consent_updated_at,
/// consent_collected_from}`. It decides `marketing_state` only while Shopify
/// has sent no WhatsApp consent for the contact (ADR 0018).
pub(super) async fn sms_consent(
    tx: &mut TenantTx,
    p: &Value,
    seed: bool,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    let sms = consent_state(p, "/sms_marketing_consent/state");
    let email = consent_state(p, "/email_marketing_consent/state");
    if sms.is_none() && email.is_none() {
        out.ignored = Some("no consent state in payload".into());
        return Ok(());
    }
    let Some(contact) =
        consent_contact(tx, id, p.get("phone").and_then(Value::as_str), now).await?
    else {
        out.ignored = Some("the customer was deleted".into());
        return Ok(());
    };
    if let Some(state) = email {
        let at =
            time_ms(p.pointer("/email_marketing_consent/consent_updated_at")).unwrap_or(version);
        email_changed(tx, &contact, state, at, now, out).await?;
    }
    let Some(state) = sms else {
        return Ok(());
    };
    let source = if seed {
        ConsentSource::ShopifyCustomer
    } else {
        ConsentSource::ShopifySmsConsent
    };
    let at = time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")).unwrap_or(version);
    let reference = reference(id, p.get("sms_marketing_consent"), "consent_collected_from");
    match contacts::apply_shopify_sms_consent(
        tx,
        contact.id,
        state,
        source,
        Some(&reference),
        at,
        now,
    )
    .await?
    {
        ShopifyConsent::Changed => consent_changed(tx, &contact, state, source, now, out).await?,
        // Not `ignored` when the payload's email consent was stored.
        ShopifyConsent::Superseded if email.is_none() => {
            out.ignored = Some("SMS consent not applied: Shopify's WhatsApp consent decides".into())
        }
        ShopifyConsent::Superseded => {}
        ShopifyConsent::Unchanged => {}
    }
    Ok(())
}

/// `customers_whats_app_marketing_consent/update`: `customer_id`,
/// `phone_number` and `whats_app_marketing_consent {state, opt_in_level,
/// updated_at, collected_from}`. Authoritative for `marketing_state`.
pub(super) async fn whatsapp_consent(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "customer_id")?;
    let Some(state) = consent_state(p, "/whats_app_marketing_consent/state") else {
        out.ignored = Some("no WhatsApp consent state in payload".into());
        return Ok(());
    };
    // `phone_number` is the number the consent is for; it only seeds a
    // contact Shopify has not told us about yet, the customer payload owns it.
    let raw_phone = p.get("phone_number").and_then(Value::as_str);
    let Some(contact) = consent_contact(tx, id, raw_phone, now).await? else {
        out.ignored = Some("the customer was deleted".into());
        return Ok(());
    };
    let at = time_ms(p.pointer("/whats_app_marketing_consent/updated_at")).unwrap_or(version);
    let reference = reference(id, p.get("whats_app_marketing_consent"), "collected_from");
    let applied =
        contacts::apply_shopify_whatsapp_consent(tx, contact.id, state, Some(&reference), at, now)
            .await?;
    if applied == ShopifyConsent::Changed {
        let source = ConsentSource::ShopifyWhatsappConsent;
        consent_changed(tx, &contact, state, source, now, out).await?;
    }
    Ok(())
}

/// `customers_email_marketing_consent/update`: `customer_id`,
/// `email_address` and `email_marketing_consent {state, opt_in_level,
/// consent_updated_at}`. Stored and shown, never used for WhatsApp; the
/// address is the customer's (customers/* own it), so it is not copied.
pub(super) async fn email_consent(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "customer_id")?;
    let Some(state) = consent_state(p, "/email_marketing_consent/state") else {
        out.ignored = Some("no email consent state in payload".into());
        return Ok(());
    };
    let Some(contact) = consent_contact(tx, id, None, now).await? else {
        out.ignored = Some("the customer was deleted".into());
        return Ok(());
    };
    let at = time_ms(p.pointer("/email_marketing_consent/consent_updated_at")).unwrap_or(version);
    email_changed(tx, &contact, state, at, now, out).await
}

async fn email_changed(
    tx: &mut TenantTx,
    contact: &Contact,
    state: MarketingState,
    at: i64,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    if contacts::set_email_consent(tx, contact.id, state, at, now).await? {
        let ev = DomainEvent::CustomerUpdated {
            contact_id: contact.id,
            changed: vec!["email_marketing_state".to_owned()],
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}
