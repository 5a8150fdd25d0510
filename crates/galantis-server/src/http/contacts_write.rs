//! `PATCH /contacts/{id}`: consent (with its proof), tags and the
//! `exclude_from_galantis` flag. Consent and tag changes are written back to
//! Shopify (a job enqueued in the same transaction); segments are
//! re-evaluated and entries emitted as `USER_ADDED_TO_SEGMENT`.

use axum::extract::State;
use galantis_core::audience::consent_change_allowed;
use galantis_core::text::{FieldError, check_field};
use galantis_core::{ConsentSource, DomainEvent, MarketingState};
use galantis_store::events::record;
use galantis_store::tenant::contacts::{self, Contact};
use serde::Deserialize;
use uuid::Uuid;

use crate::audience;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::jobs::kinds::audience::{WriteBackField, enqueue_write_back};
use crate::state::AppState;

const MAX_TAGS: usize = 250;
const MAX_TAG_CHARS: usize = 255;
const MAX_CONSENT_REFERENCE_CHARS: usize = 255;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// SUBSCRIBED, PENDING, NOT_SUBSCRIBED or UNSUBSCRIBED.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::SettableMarketingState>)]
    marketing_state: Option<String>,
    /// `api` (default) or `manual_import`: the only sources a team member can
    /// honestly claim. The others (`shopify_checkout`, the widgets,
    /// `stop_reply`, `start_reply`, …) record what the customer did through a
    /// system, and only Galantis's ingress writes them.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::ManualConsentSource>)]
    consent_source: Option<String>,
    /// The proof or the reason (e.g. "asked by phone to stop", a form id):
    /// at most 255 characters, single line.
    #[serde(default)]
    consent_reference: Option<String>,
    /// Replaces every tag.
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    add_tags: Option<Vec<String>>,
    #[serde(default)]
    remove_tags: Option<Vec<String>>,
    #[serde(default)]
    exclude_from_galantis: Option<bool>,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", message)
}

fn field_error(e: FieldError) -> AppError {
    invalid(e.to_string())
}

fn clean_tags(field: &str, tags: &[String]) -> Result<Vec<String>, AppError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!("{field}: at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let t = check_field(&name, t, MAX_TAG_CHARS).map_err(field_error)?;
        if t.contains(',') {
            return Err(invalid(format!("{name}: a tag has no commas")));
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(t)) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

#[utoipa::path(
    patch,
    path = "/contacts/{id}",
    tag = "contacts",
    summary = "Change a contact's consent, tags or language",
    params(("id" = uuid::Uuid, Path, description = "contact id")),
    request_body = ContactPatch,
    responses((status = 200, description = "the contact", body = Object))
)]
pub async fn update_contact(
    State(state): State<AppState>,
    auth: Authed<perm::ContactsWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<ContactPatch>,
) -> Result<axum::Json<Contact>, AppError> {
    // Validate everything before touching anything.
    let consent = match &body.marketing_state {
        None => None,
        Some(s) => {
            let state: MarketingState = s
                .parse()
                .map_err(|e: String| invalid(format!("marketing_state: {e}")))?;
            if !matches!(
                state,
                MarketingState::Subscribed
                    | MarketingState::Pending
                    | MarketingState::NotSubscribed
                    | MarketingState::Unsubscribed
            ) {
                return Err(invalid(
                    "marketing_state: only SUBSCRIBED, PENDING, NOT_SUBSCRIBED or UNSUBSCRIBED can be set",
                ));
            }
            let source = match &body.consent_source {
                None => ConsentSource::Api,
                Some(src) => ConsentSource::parse(src)
                    .filter(|s| !s.is_ingress_only())
                    .ok_or_else(|| {
                        invalid(format!(
                            "consent_source: `{}` is not a source a team member can record (api, manual_import); the customer's own actions are recorded by Galantis when they happen",
                            src.chars().take(40).collect::<String>()
                        ))
                    })?,
            };
            // Refused rather than cut: a truncated proof is a different proof.
            let reference = body
                .consent_reference
                .as_deref()
                .filter(|r| !r.trim().is_empty())
                .map(|r| check_field("consent_reference", r, MAX_CONSENT_REFERENCE_CHARS))
                .transpose()
                .map_err(field_error)?
                .map(str::to_owned);
            Some((state, source, reference))
        }
    };
    if body.consent_source.is_some() && consent.is_none() {
        return Err(invalid("consent_source: only with marketing_state"));
    }
    if body.consent_reference.is_some() && consent.is_none() {
        return Err(invalid("consent_reference: only with marketing_state"));
    }
    if body.tags.is_some() && (body.add_tags.is_some() || body.remove_tags.is_some()) {
        return Err(invalid("tags: give either tags or add_tags/remove_tags"));
    }
    let set_tags = body
        .tags
        .as_deref()
        .map(|t| clean_tags("tags", t))
        .transpose()?;
    let add = clean_tags("add_tags", body.add_tags.as_deref().unwrap_or_default())?;
    let remove = clean_tags(
        "remove_tags",
        body.remove_tags.as_deref().unwrap_or_default(),
    )?;

    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    tx.serialize_tenant_writes().await?;
    let contact = contacts::get(&mut tx, id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or(AppError::NotFound("contact"))?;
    if contact.redacted {
        return Err(AppError::conflict(
            "contact_redacted",
            "the contact's data was erased on request; it cannot be changed",
        ));
    }

    if let Some((next, source, reference)) = consent {
        let current = contact.marketing_state;
        if current != next {
            consent_change_allowed(current, next, source)
                .map_err(|r| AppError::unprocessable(r.code(), r.to_string()))?;
            if contacts::set_marketing_state(
                &mut tx,
                id,
                next,
                source,
                reference.as_deref(),
                now,
                now,
            )
            .await?
            {
                let e = DomainEvent::MarketingConsentChanged {
                    contact_id: id,
                    from: Some(current.as_str().to_owned()),
                    to: next.as_str().to_owned(),
                    source: Some(source.as_str().to_owned()),
                };
                record(&mut tx, &e, audience::at(now)).await?;
                if contact.shopify_customer_id.is_some() {
                    enqueue_write_back(&mut tx, id, WriteBackField::Consent).await?;
                }
            }
        }
    }

    let (add, remove) = match set_tags {
        Some(all) => {
            let add: Vec<String> = all
                .iter()
                .filter(|t| !contact.tags.iter().any(|c| c.eq_ignore_ascii_case(t)))
                .cloned()
                .collect();
            let remove: Vec<String> = contact
                .tags
                .iter()
                .filter(|c| !all.iter().any(|t| t.eq_ignore_ascii_case(c)))
                .cloned()
                .collect();
            (add, remove)
        }
        None => (add, remove),
    };
    if !add.is_empty() || !remove.is_empty() {
        let before = contact.tags.clone();
        let after = contacts::change_tags(&mut tx, id, &add, &remove, now).await?;
        let added: Vec<&String> = after
            .iter()
            .filter(|t| !before.iter().any(|b| b.eq_ignore_ascii_case(t)))
            .collect();
        for t in &added {
            let e = DomainEvent::CustomerTagged {
                contact_id: id,
                tag: (*t).clone(),
            };
            record(&mut tx, &e, audience::at(now)).await?;
        }
        if after != before && contact.shopify_customer_id.is_some() {
            enqueue_write_back(&mut tx, id, WriteBackField::Tags).await?;
        }
    }

    if let Some(flag) = body.exclude_from_galantis {
        contacts::set_excluded(&mut tx, id, flag, now).await?;
    }

    audience::contacts_changed(&mut tx, &[id], now).await?;
    let updated = contacts::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("contact"))?;
    tx.commit().await?;
    Ok(axum::Json(updated))
}
