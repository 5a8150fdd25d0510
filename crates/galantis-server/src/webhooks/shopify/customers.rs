//! `customers/*`, `customer_tags/*` and the marketing consent topics.

use galantis_core::{ConsentSource, CountryCode, DomainEvent, MarketingState};
use galantis_store::TenantTx;
use galantis_store::tenant::contacts::{self, CustomerFields, Upserted};
use serde_json::Value;

use super::super::parse::{phone_in, string, tags as tag_list, time_ms};
use super::{HandlerError, Outcome, id_of};
use crate::audience::contact_changed;

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
    let state = p
        .pointer("/sms_marketing_consent/state")
        .and_then(Value::as_str)
        .map(MarketingState::from_shopify_sms);
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
        tags: tag_list(p.get("tags")),
        marketing_state: state,
        consent_updated_at: time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")),
        updated_at: version,
    })
}

/// `customers/create` and `customers/update`.
pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let f = customer_fields(p, version)?;
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
    out: &Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
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

/// `customer_tags/added` (`added`) and `customer_tags/removed`.
pub(super) async fn tags(
    tx: &mut TenantTx,
    p: &Value,
    added: bool,
    now: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "customer_id")?;
    let Some(contact) = contacts::by_shopify_id(tx, id).await? else {
        // Tags can arrive before the customer itself: retry later,
        // when customers/create has been processed.
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "customer {id} is not synced yet"
        )));
    };
    let list = tag_list(p.get(if added { "tags_added" } else { "tags_removed" }));
    let (add, remove) = if added {
        (list.clone(), vec![])
    } else {
        (vec![], list.clone())
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

/// `customers/marketing_consent_update(d)`.
pub(super) async fn consent(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    let Some(state) = p
        .pointer("/sms_marketing_consent/state")
        .and_then(Value::as_str)
    else {
        out.ignored = Some("no SMS consent in payload".into());
        return Ok(());
    };
    let state = MarketingState::from_shopify_sms(state);
    let contact = match contacts::by_shopify_id(tx, id).await? {
        Some(c) => c,
        // Consent before the customer itself: create the contact from what we have.
        None => match contacts::upsert_customer(tx, &customer_fields(p, 0)?, now).await? {
            Upserted::Created(c) => *c,
            _ => return Ok(()),
        },
    };
    let at = time_ms(p.pointer("/sms_marketing_consent/consent_updated_at")).unwrap_or(version);
    if contacts::set_marketing_state(
        tx,
        contact.id,
        state,
        ConsentSource::ShopifyCustomer,
        Some(&format!("customer:{id}")),
        at,
        now,
    )
    .await?
    {
        let ev = DomainEvent::MarketingConsentChanged {
            contact_id: contact.id,
            from: Some(contact.marketing_state.to_string()),
            to: state.as_str().to_owned(),
            source: None,
        };
        out.event(tx, ev).await?;
    }
    contact_changed(tx, contact.id, now, out.cause()).await?;
    Ok(())
}
