//! Meta's webhook payloads: statuses (with conversation and pricing),
//! inbound messages and template status updates, and the status plan of an
//! accepted message (`sent` → `delivered` → `read`, or `failed`).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config::{NumberConfig, WebhookBehaviour};
use super::errors::webhook_error;
use super::state::SentMessage;
use super::templates::Template;
use super::webhooks::roll;

/// The `{"object":"whatsapp_business_account","entry":[…]}` wrapper.
pub(super) fn envelope(waba_id: &str, value: Value, field: &str) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": waba_id, "changes": [{ "value": value, "field": field }] }]
    })
}

fn metadata(n: &NumberConfig) -> Value {
    json!({ "display_phone_number": n.display_phone_number, "phone_number_id": n.phone_number_id })
}

/// A `messages` webhook carrying one status of `m`.
pub(super) fn status_payload(
    n: &NumberConfig,
    m: &SentMessage,
    status: &str,
    at: i64,
    error: Option<Value>,
) -> Value {
    let mut s = json!({
        "id": m.id,
        "status": status,
        "timestamp": at.to_string(),
        "recipient_id": m.wa_id,
    });
    if let Some(data) = &m.biz_opaque_callback_data {
        s["biz_opaque_callback_data"] = json!(data);
    }
    if matches!(status, "sent" | "delivered") {
        let digest = Sha256::digest(format!("{}|{}|{}", m.phone_number_id, m.wa_id, m.category));
        let mut conversation =
            json!({ "id": hex::encode(&digest[..16]), "origin": { "type": m.category } });
        if status == "sent" {
            conversation["expiration_timestamp"] =
                json!((m.accepted_at.timestamp() + 86_400).to_string());
        }
        s["conversation"] = conversation;
        let service = m.category == "service";
        s["pricing"] = json!({
            "billable": !service,
            "pricing_model": "PMP",
            "category": m.category,
            "type": if service { "free_customer_service" } else { "regular" },
        });
    }
    if let Some(e) = error {
        s["errors"] = json!([e]);
    }
    let value =
        json!({ "messaging_product": "whatsapp", "metadata": metadata(n), "statuses": [s] });
    envelope(&n.waba_id, value, "messages")
}

/// The status webhooks of an accepted message: `sent` → `delivered` →
/// `read` (→ `played` for audio and video), or one `failed`. Returns the
/// plan and whether it was reordered.
pub(super) fn status_plan(
    n: &NumberConfig,
    m: &SentMessage,
    b: &WebhookBehaviour,
    failure: Option<(i64, Option<String>)>,
) -> (Vec<(u64, Value)>, bool) {
    let at = |delay: u64| m.accepted_at.timestamp() + (delay / 1000) as i64;
    if let Some((code, details)) = failure {
        let error = webhook_error(code, details.as_deref());
        let p = status_payload(n, m, "failed", at(b.sent_after_ms), Some(error));
        return (vec![(b.sent_after_ms, p)], false);
    }
    let mut steps = vec![("sent", b.sent_after_ms)];
    let mut last = b.sent_after_ms;
    let media = matches!(m.kind.as_str(), "audio" | "video");
    for (status, delay, applies) in [
        ("delivered", b.delivered_after_ms, true),
        ("read", b.read_after_ms, true),
        ("played", b.played_after_ms, media),
    ] {
        // A status is only reached through the ones before it.
        let Some(delay) = delay.filter(|_| applies) else {
            break;
        };
        last = last.max(delay);
        steps.push((status, last));
    }
    let mut payloads: Vec<Value> = steps
        .iter()
        .map(|(s, d)| status_payload(n, m, s, at(*d), None))
        .collect();
    let reordered = payloads.len() > 1 && roll(b.reorder_probability);
    if reordered {
        // Same delivery times, payloads in reverse: `read` arrives first,
        // each still carrying its true timestamp.
        payloads.reverse();
    }
    let plan = steps.iter().map(|(_, d)| *d).zip(payloads).collect();
    (plan, reordered)
}

/// A `messages` webhook with one inbound message from `wa_id`.
pub(super) fn inbound_payload(n: &NumberConfig, wa_id: &str, name: &str, message: Value) -> Value {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(n),
        "contacts": [{ "profile": { "name": name }, "wa_id": wa_id }],
        "messages": [message],
    });
    envelope(&n.waba_id, value, "messages")
}

/// A `message_template_status_update` webhook.
pub(super) fn template_status_payload(
    t: &Template,
    event: &str,
    reason: Option<&str>,
    at: i64,
) -> Value {
    let id: Value =
        t.id.parse::<u64>()
            .map_or_else(|_| json!(t.id), |n| json!(n));
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": t.waba_id,
            "time": at,
            "changes": [{
                "value": {
                    "event": event,
                    "message_template_id": id,
                    "message_template_name": t.name,
                    "message_template_language": t.language,
                    "reason": reason,
                },
                "field": "message_template_status_update",
            }],
        }],
    })
}
