//! Delivery statuses of Meta `messages` changes: which changes carry
//! statuses alone, the order their wamids are locked in, and applying them
//! (status rows, the message, refunds, `MessageStatusUpdated`). Used by the
//! `webhook.process` job (`meta::handle`) and by the ingest's group commit,
//! which applies a change of statuses alone where it stores it (ADR 0042).

use galantis_core::{DomainEvent, MessageSource, MessageStatus};
use galantis_store::TenantTx;
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::messaging::{self, MessagePricing, StatusRecorded, StatusUpdate};
use galantis_store::tenant::webhook_events::WebhookEvent;
use serde_json::Value;

use super::outcome::{HandlerError, Outcome};
use super::parse::{int, string};

/// A `messages` change that carries delivery statuses and nothing else
/// (no inbound message, no contact profile): applying it needs only the
/// locks of its wamids, not the tenant's (see `process::apply`).
pub fn statuses_only(e: &WebhookEvent) -> bool {
    e.source == "meta" && statuses_only_change(&e.topic, &e.payload)
}

/// [`statuses_only`] of a change not stored yet (its field and routed
/// payload).
pub fn statuses_only_change(field: &str, payload: &Value) -> bool {
    field == "messages"
        && payload
            .pointer("/change/value")
            .and_then(Value::as_object)
            .is_some_and(|v| {
                v.contains_key("statuses")
                    && v.keys().all(|k| {
                        matches!(k.as_str(), "messaging_product" | "metadata" | "statuses")
                    })
            })
}

/// The wamids of a `messages` change's statuses, sorted, each once: the
/// order their locks are taken in.
pub(super) fn status_wamids(value: &Value) -> Vec<String> {
    let mut wamids: Vec<String> = value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| string(s.get("id")))
        .collect();
    wamids.sort_unstable();
    wamids.dedup();
    wamids
}

/// Applies the delivery statuses of a `messages` change's `value`, in
/// order; the caller holds their wamids' locks.
pub(super) async fn statuses(
    tx: &mut TenantTx,
    value: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    for s in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        status(tx, s, now, out).await?;
    }
    Ok(())
}

async fn status(
    tx: &mut TenantTx,
    s: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let Some(wamid) = string(s.get("id")) else {
        return Err(HandlerError::Invalid("status without `id`".into()));
    };
    let Some(st) = s
        .get("status")
        .and_then(Value::as_str)
        .and_then(MessageStatus::from_meta)
    else {
        return Ok(());
    };
    let err = s.pointer("/errors/0");
    let update = StatusUpdate {
        wamid: &wamid,
        status: st,
        at_ms: int(s.get("timestamp")).map(|t| t * 1000).unwrap_or(now),
        error_code: err.and_then(|e| int(e.get("code"))),
        error_title: err.and_then(|e| e.get("title")).and_then(Value::as_str),
        error_detail: err
            .and_then(|e| e.get("message").or(e.pointer("/error_data/details")))
            .and_then(Value::as_str),
    };
    // What the message cost and under which conversation: kept from any
    // status that carries it (usually `sent`, again on `delivered`).
    let pricing = MessagePricing {
        billable: s.pointer("/pricing/billable").and_then(Value::as_bool),
        category: string(s.pointer("/pricing/category")),
        pricing_model: string(s.pointer("/pricing/pricing_model")),
        conversation_id: string(s.pointer("/conversation/id")),
        conversation_origin: string(s.pointer("/conversation/origin/type")),
        conversation_expires_at: int(s.pointer("/conversation/expiration_timestamp"))
            .map(|t| t * 1000),
    };
    // Duplicates (same wamid and status) are harmless: kept once, applied once.
    let StatusRecorded::New(mut applied) =
        messaging::record_and_apply(tx, &update, &pricing, now).await?
    else {
        return Ok(());
    };
    if applied.is_none()
        && let Some(key) = string(s.get("biz_opaque_callback_data"))
    {
        // Our send was accepted but its job has not stored the wamid (it
        // may have died after the call): the echoed idempotency key links it.
        if let Some(id) =
            galantis_store::tenant::sending::link_by_callback_data(tx, &key, &wamid, now).await?
        {
            applied =
                messaging::message_by_wamid(tx, &wamid)
                    .await?
                    .map(|m| messaging::StatusApplied {
                        message_id: id,
                        contact_id: m.contact_id,
                        previous: "QUEUED".into(),
                        status: m.status.clone(),
                        advanced: m.status != "QUEUED",
                        // Unknown here: the wake-up looks (see `automations::wake`).
                        source: None,
                    });
        }
    }
    if st == MessageStatus::Failed
        && let Some(a) = &applied
    {
        // A `failed` without a prior delivery gets its credit back.
        let at = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        crate::sending::credits::refund_if_failed(tx, a.message_id, at).await?;
    }
    if let Some(applied) = applied
        && applied.advanced
    {
        // Only a run can await a status, and only a waiting run needs the
        // wake-up job: asked here, after the status is written (ADR 0036).
        let sent_by_runs = applied
            .source
            .as_deref()
            .and_then(|s| s.parse::<MessageSource>().ok())
            .is_none_or(MessageSource::is_sent_by_runs);
        let awaited = sent_by_runs && runs::awaits_status(tx, applied.message_id).await?;
        let ev = DomainEvent::MessageStatusUpdated {
            message_id: applied.message_id,
            wamid: wamid.to_string(),
            from: applied.previous,
            to: applied.status,
            error_code: update.error_code,
            source: applied.source,
            awaited,
        };
        out.event(tx, ev).await?;
    }
    Ok(())
}
