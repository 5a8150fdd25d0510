//! Group commit for Meta webhook ingest (`crate::group_commit`): the
//! changes of each delivery, already routed to their tenant by
//! `ingress::meta`, are stored with their processing jobs — and consent
//! replies applied — in one transaction per group of deliveries to that
//! tenant. Under a campaign's status webhooks (two or three per message)
//! this is what keeps the tenant's writer free for the sends.
//!
//! A group that fails is written again one delivery per transaction, so a
//! delivery that cannot be stored fails alone (503: Meta retries it) and
//! never takes its neighbours with it.

use std::sync::Arc;

use futures::future::BoxFuture;
use galantis_core::{ConsentSource, MarketingState, PhoneE164, TenantId};
use galantis_store::jobs::NewJob;
use galantis_store::tenant::{contacts, sending, webhook_events};
use galantis_store::{Db, StoreError, TenantTx};
use serde_json::Value;
use uuid::Uuid;

use super::job::ProcessWebhook;
use super::outcome::{HandlerError, Outcome};
use super::{meta_status, topics};
use crate::config::Config;
use crate::group_commit::{GroupCommit, GroupWrite};

/// One change of a delivery, for one tenant.
pub struct RoutedChange {
    pub field: String,
    pub external_id: String,
    pub payload: Value,
}

/// The changes of one delivery that belong to one tenant.
pub struct MetaDelivery {
    pub changes: Vec<RoutedChange>,
    pub received_at: i64,
}

pub struct MetaIngestWrite {
    db: Db,
    config: Arc<Config>,
}

/// Group commit of Meta deliveries, one writer per tenant. Each delivery's
/// outcome: how many of its changes were accepted for processing, or why
/// it could not be stored.
pub type MetaIngest = GroupCommit<MetaIngestWrite>;

pub fn meta_ingest(db: Db, config: Arc<Config>) -> MetaIngest {
    GroupCommit::new(MetaIngestWrite { db, config })
}

/// Largest number of deliveries written in one transaction.
const MAX_BATCH: usize = 128;

impl GroupWrite for MetaIngestWrite {
    type Item = MetaDelivery;
    type Out = Result<u64, String>;
    const NAME: &'static str = "meta_ingest";
    const MAX_BATCH: usize = MAX_BATCH;

    fn write<'a>(
        &'a self,
        tenant: TenantId,
        items: &'a [MetaDelivery],
    ) -> BoxFuture<'a, Result<Vec<Self::Out>, String>> {
        Box::pin(async move {
            match self.store_all(tenant, items, true).await {
                Ok(counts) => return Ok(counts.into_iter().map(Ok).collect()),
                Err(e) if items.len() > 1 => {
                    tracing::warn!(tenant = %tenant, error = %e, size = items.len(), "storing a group of Meta deliveries failed; storing each alone");
                }
                Err(_) => {}
            }
            let mut out = Vec::with_capacity(items.len());
            for d in items {
                out.push(
                    self.store_all(tenant, std::slice::from_ref(d), false)
                        .await
                        .map(|c| c[0])
                        .map_err(|e| {
                            tracing::error!(tenant = %tenant, error = %e, "storing a Meta delivery failed; not acknowledged");
                            e.to_string()
                        }),
                );
            }
            Ok(out)
        })
    }
}

impl MetaIngestWrite {
    /// `statuses_at_once`: apply delivery statuses here (see [`store`]);
    /// off when a failed group is written again one delivery at a time, so
    /// that a status that cannot be applied is stored and left to its job.
    async fn store_all(
        &self,
        tenant: TenantId,
        items: &[MetaDelivery],
        statuses_at_once: bool,
    ) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.db.tenant_tx(tenant).await?;
        let mut counts = Vec::with_capacity(items.len());
        for d in items {
            counts.push(store(&self.config, &mut tx, d, statuses_at_once).await?);
        }
        tx.commit().await?;
        Ok(counts)
    }
}

/// Stores one delivery's changes: each as a webhook event (a redelivery is
/// kept once), known fields with their processing job, consent replies
/// applied at once. With `statuses_at_once`, a change of delivery statuses
/// alone whose messages no other transaction holds is applied here and
/// stored processed, without a job (ADR 0042). Returns how many were
/// accepted for processing.
async fn store(
    config: &Config,
    tx: &mut TenantTx,
    d: &MetaDelivery,
    statuses_at_once: bool,
) -> Result<u64, StoreError> {
    let mut accepted = 0;
    for c in &d.changes {
        let (status, reason) = match topics::meta_handling(&c.field) {
            Some(topics::MetaHandling::Process) => ("received", None),
            Some(topics::MetaHandling::Ignore(why)) => ("ignored", Some(why)),
            None => ("ignored", Some("unknown field")),
        };
        let known = status == "received";
        let origin = c
            .payload
            .pointer("/change/value/metadata/phone_number_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let raw = serde_json::value::to_raw_value(&c.payload)
            .map_err(|e| StoreError::Config(format!("webhook payload: {e}")))?;
        let inserted = webhook_events::insert(
            tx,
            &webhook_events::NewWebhookEvent {
                source: "meta",
                topic: &c.field,
                external_id: &c.external_id,
                origin,
                payload: &raw,
                triggered_at: None,
                received_at: d.received_at,
                status,
                failure_reason: reason,
            },
        )
        .await?;
        if let (Some(id), true) = (inserted, known) {
            if statuses_at_once
                && meta_status::statuses_only_change(&c.field, &c.payload)
                && apply_statuses(tx, id, &c.payload).await?
            {
                accepted += 1;
                continue;
            }
            if c.field == "messages" || c.field == "user_preferences" {
                apply_consent_replies(config, tx, &c.payload, d.received_at).await?;
            }
            let job = NewJob::of(
                &ProcessWebhook {
                    event_id: id,
                    replay: None,
                },
                tx.now(),
            )
            .map_err(|e| StoreError::Config(format!("job payload: {e}")))?;
            galantis_store::jobs::enqueue(tx, &job).await?;
            accepted += 1;
        }
    }
    Ok(accepted)
}

/// Applies a change of delivery statuses alone, as its `webhook.process`
/// job would (`meta::statuses` under its wamids' locks), and marks the
/// event processed: `false`, with nothing written beyond the event row,
/// when another transaction holds one of the wamids (a send recording Meta's answer, or
/// another status of the message) — the job then applies it, waiting as
/// it may. A handler error fails the group, which is written again with
/// jobs only.
async fn apply_statuses(
    tx: &mut TenantTx,
    event_id: Uuid,
    routed: &Value,
) -> Result<bool, StoreError> {
    let value = routed.pointer("/change/value").unwrap_or(&Value::Null);
    for w in meta_status::status_wamids(value) {
        if !sending::try_lock_wamid(tx, &w).await? {
            return Ok(false);
        }
    }
    let now = tx.now();
    let mut out = Outcome::new(event_id, now);
    let now_ms = now.timestamp_millis();
    meta_status::statuses(tx, value, now_ms, &mut out)
        .await
        .map_err(|e| match e {
            HandlerError::Transient(e) => StoreError::Unavailable(format!("{e:#}")),
            HandlerError::Invalid(why) => StoreError::Config(why),
        })?;
    webhook_events::set_status(tx, event_id, "processed", None, now_ms).await?;
    Ok(true)
}

/// An opt-out (STOP, a tap on a stop button such as Meta's "Stop promotions",
/// or "stop" in WhatsApp's marketing preferences) or an
/// opt-in (START, "resume") takes effect in the same transaction that stores
/// the change, before any later send can be prepared (processing then
/// stores the message). The message or preference event is the proof.
async fn apply_consent_replies(
    config: &Config,
    tx: &mut TenantTx,
    routed: &Value,
    now: i64,
) -> Result<(), StoreError> {
    let stop = &config.stop_keywords;
    let start = &config.start_keywords;
    let value = routed.pointer("/change/value");
    let each = |key: &str| -> Vec<Value> {
        value
            .and_then(|v| v.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // (wa_id, new state, source, reference, seconds)
    let mut changes = Vec::new();
    let stop_buttons = &config.consent.stop_button_payloads;
    for m in each("messages") {
        let str_at = |p: &str| m.pointer(p).and_then(Value::as_str);
        // A quick-reply tap: `button` on a template, `interactive` on a
        // session message. Either its payload (id) or its label may be the
        // configured one; Meta's own opt-out button carries "Stop promotions".
        let tapped = match m.get("type").and_then(Value::as_str) {
            Some("button") => vec![str_at("/button/payload"), str_at("/button/text")],
            Some("interactive") => vec![
                str_at("/interactive/button_reply/id"),
                str_at("/interactive/button_reply/title"),
            ],
            _ => vec![],
        };
        let stop_tap = tapped.into_iter().flatten().any(|t| {
            stop_buttons
                .iter()
                .any(|p| p.trim().to_lowercase() == t.trim().to_lowercase())
        });
        let text = if stop_tap {
            ""
        } else if m.get("type").and_then(Value::as_str) == Some("text") {
            str_at("/text/body").unwrap_or_default()
        } else {
            continue;
        };
        let (next, source) = if stop_tap || galantis_core::consent::is_stop_reply(text, stop) {
            (MarketingState::Unsubscribed, ConsentSource::StopReply)
        } else if galantis_core::consent::is_start_reply(text, start) {
            (MarketingState::Subscribed, ConsentSource::StartReply)
        } else {
            continue;
        };
        let reference = m
            .get("id")
            .and_then(Value::as_str)
            .map(|w| format!("message:{w}"));
        changes.push((
            m.get("from").cloned(),
            next,
            source,
            reference,
            m.get("timestamp").cloned(),
        ));
    }
    for p in each("user_preferences") {
        if p.get("category").and_then(Value::as_str) != Some("marketing_messages") {
            continue;
        }
        let next = match p.get("value").and_then(Value::as_str) {
            Some("stop") => MarketingState::Unsubscribed,
            Some("resume") => MarketingState::Subscribed,
            _ => continue,
        };
        let reference = p
            .get("timestamp")
            .map(|t| format!("user_preferences:{}", t.to_string().trim_matches('"')));
        changes.push((
            p.get("wa_id").cloned(),
            next,
            ConsentSource::MetaUserPreferences,
            reference,
            p.get("timestamp").cloned(),
        ));
    }
    for (from, next, source, reference, timestamp) in changes {
        let Some(from) = from.as_ref().and_then(Value::as_str) else {
            continue;
        };
        // Contact lookups and creation must not interleave with webhook
        // processing of the same tenant (which may create the same contact).
        tx.serialize_tenant_writes().await?;
        let Ok(phone) = PhoneE164::from_wa_id(from) else {
            continue;
        };
        let contact = match contacts::by_phone(tx, phone.as_str()).await? {
            Some(c) => c,
            None => contacts::create_from_whatsapp(tx, phone.as_str(), None, now).await?,
        };
        let current = contact.marketing_state;
        if galantis_core::audience::consent_change_allowed(current, next, source).is_err() {
            continue;
        }
        let at = super::parse::int(timestamp.as_ref())
            .map(|s| s * 1000)
            .unwrap_or(now);
        if contacts::set_marketing_state(
            tx,
            contact.id,
            next,
            source,
            reference.as_deref(),
            at,
            now,
        )
        .await?
        {
            tracing::info!(contact = %contact.id, source = source.as_str(), to = next.as_str(), "consent changed by the customer");
        }
        // Back in stock with confirmation mode `whatsapp`: the customer's
        // opt-in confirms their pending subscriptions (ADR 0027).
        if next == MarketingState::Subscribed {
            galantis_store::tenant::back_in_stock::activate_pending_for_contact(
                tx, contact.id, now,
            )
            .await?;
        }
    }
    Ok(())
}
