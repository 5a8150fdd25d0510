//! The dry run: what the automation would do for one contact and one
//! trigger event — the gate's verdict, the path through the flow and each
//! message's rendered text. It runs the engine's pure [`step`] over facts
//! read in a read-only transaction: nothing is sent, nothing is written.
//!
//! Assumptions, stated in the response: delays elapse; a condition waiting
//! for a reply or a delivery status sees none and takes its window's end;
//! the trigger's own parameter (tag, segment, list) is taken as matched.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use galantis_core::MessageStatus;
use galantis_core::automation::{
    Effect, ExclusionKind, Facts, Input, LastMessage, RunState, VARIABLE_SOURCES, gate, step,
};
use galantis_store::TenantTx;
use galantis_store::tenant::automations::runs;
use galantis_store::tenant::{contacts, orders, templates};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{issues_of, load, template_statuses};
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

/// At most this many steps are simulated (a run ends long before).
const MAX_SIMULATED_STEPS: usize = 200;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunBody {
    contact_id: Uuid,
    /// What the trigger event carries, by variable source
    /// (`{"order.total_price": "120.00", "checkout.recovery_url": "…"}`),
    /// plus `order.item_count` (a number) and `order.product_tags` (a list
    /// of tags) for the order conditions.
    #[serde(default)]
    #[schema(value_type = Object)]
    event: Map<String, Value>,
}

fn bad_event(key: &str, why: &str) -> AppError {
    AppError::unprocessable("invalid_field", format!("event.{key}: {why}"))
}

/// Cents of a decimal price text (`"120.5"` → 12050).
fn cents(s: &str) -> Option<i64> {
    let v: f64 = s.trim().parse().ok()?;
    v.is_finite().then(|| (v * 100.0).round() as i64)
}

/// Folds the event into the facts; unknown keys are refused.
fn absorb_event(facts: &mut Facts, event: &Map<String, Value>) -> Result<(), AppError> {
    for (k, v) in event {
        match k.as_str() {
            "order.item_count" => {
                facts.order_item_count = Some(
                    v.as_i64()
                        .ok_or_else(|| bad_event(k, "expected a number"))?,
                );
            }
            "order.product_tags" => {
                let tags = v
                    .as_array()
                    .ok_or_else(|| bad_event(k, "expected a list of tags"))?;
                facts.order_product_tags = tags
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_lowercase)
                            .ok_or_else(|| bad_event(k, "expected a list of tags"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            src if VARIABLE_SOURCES.contains(&src) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad_event(k, "expected text or a number")),
                };
                if matches!(src, "order.total_price" | "checkout.total_price") {
                    facts.order_total_cents =
                        Some(cents(&text).ok_or_else(|| bad_event(k, "expected a price"))?);
                }
                facts.values.insert(src.to_owned(), text);
            }
            _ => {
                return Err(bad_event(
                    k,
                    "unknown; expected a variable source (see VARIABLE_SOURCES), order.item_count or order.product_tags",
                ));
            }
        }
    }
    Ok(())
}

/// A template's text with its variables filled in (header, body, footer).
async fn render(
    tx: &mut TenantTx,
    template_id: Uuid,
    vars: &[(String, String)],
) -> Result<(Option<String>, String), AppError> {
    let Some(t) = templates::get(tx, template_id).await? else {
        return Ok((None, String::new()));
    };
    let mut parts = Vec::new();
    for c in t.components.as_array().into_iter().flatten() {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
        if !["HEADER", "BODY", "FOOTER"].contains(&kind.to_ascii_uppercase().as_str()) {
            continue;
        }
        if let Some(text) = c.get("text").and_then(Value::as_str) {
            let mut out = text.to_owned();
            for (name, value) in vars {
                out = out.replace(&format!("{{{{{name}}}}}"), value);
            }
            parts.push(out);
        }
    }
    Ok((Some(t.name), parts.join("\n")))
}

#[utoipa::path(
    post,
    path = "/automations/{id}/dry-run",
    tag = "automations",
    summary = "What the automation would do for a contact and an event (nothing sent, nothing written)",
    params(("id" = uuid::Uuid, Path, description = "automation id")),
    request_body = DryRunBody,
    responses(
        (status = 200, description = "the gate's verdict, the path and the rendered messages", body = Object),
        (status = 422, description = "`unknown_contact`, `invalid_field` or `invalid_flow`")
    )
)]
pub async fn dry_run(
    State(state): State<AppState>,
    auth: Authed<perm::AutomationsWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<DryRunBody>,
) -> Result<axum::Json<Value>, AppError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let a = load(&mut tx, id).await?;
    let contact = contacts::get(&mut tx, body.contact_id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| {
            AppError::unprocessable(
                "unknown_contact",
                format!("contact_id: contact {} does not exist", body.contact_id),
            )
        })?;
    let (flow, issues) = issues_of(&mut tx, &a).await?;

    let mut facts = Facts::new(contact.marketing_state);
    facts.templates = template_statuses(&mut tx, &flow).await?;
    for (k, v) in [
        ("customer.first_name", &contact.first_name),
        ("customer.last_name", &contact.last_name),
        ("customer.email", &contact.email),
        ("customer.phone", &contact.phone),
    ] {
        if let Some(v) = v {
            facts.values.insert(k.to_owned(), v.clone());
        }
    }
    facts.customer_tags = contact.tags.iter().map(|t| t.to_lowercase()).collect();
    facts.total_spent_cents = Some(contact.total_spent_cents);
    facts.last_order_at = orders::list(&mut tx, Some(contact.id), None, 50)
        .await?
        .iter()
        .filter_map(|o| o.created_at)
        .max();
    let (lists, segments) = crate::http::audience::memberships_of(&mut tx, contact.id).await?;
    facts.lists = lists.iter().map(|m| m.id).collect();
    facts.segments = segments.iter().map(|m| m.id).collect();
    absorb_event(&mut facts, &body.event)?;

    let excluded = a.exclusions.iter().any(|e| match e.kind {
        ExclusionKind::List => facts.lists.contains(&e.id),
        ExclusionKind::Segment => facts.segments.contains(&e.id),
    });
    let last = runs::last_enrolled_at(&mut tx, a.id, contact.id).await?;
    let verdict = match a.frequency_cap {
        Some(cap) => gate(contact.marketing_state, cap, last, excluded, now),
        None => gate(
            contact.marketing_state,
            galantis_core::automation::FrequencyCap::Ever,
            None,
            excluded,
            now,
        ),
    };
    let gate_json = match &verdict {
        Ok(()) => json!({"passed": true, "blocked_by": null, "reason": null}),
        Err(r) => json!({"passed": false, "blocked_by": r.code(), "reason": r.to_string()}),
    };

    let mut path = Vec::new();
    let mut messages = Vec::new();
    let mut ended = Value::Null;
    if verdict.is_ok() {
        let mut run = RunState::new();
        let mut input = Input::Start;
        let mut at: DateTime<Utc> = now;
        for _ in 0..MAX_SIMULATED_STEPS {
            let st = step(&flow, &run, input, &facts, at);
            let mut next: Option<(Input, DateTime<Utc>)> = None;
            for e in &st.effects {
                let (node, _) = e.node().unwrap_or(("", 0));
                let mut entry = json!({"node_id": node, "at": at});
                match e {
                    Effect::Enter { .. } => entry["event"] = json!("entered"),
                    Effect::Passed { .. } => entry["event"] = json!("passed"),
                    Effect::WaitUntil { at: until, .. } => {
                        entry["event"] = json!("waits");
                        entry["until"] = json!(until);
                        next = Some((
                            Input::DelayElapsed {
                                node: node.to_owned(),
                            },
                            *until,
                        ));
                    }
                    Effect::WaitForEvent { until, what, .. } => {
                        entry["event"] = json!("waits_for_event");
                        entry["awaited"] = json!(what.as_str());
                        entry["until"] = json!(until);
                        entry["assumed"] =
                            json!("no reply or status arrives before the window ends");
                        next = Some((
                            Input::WindowElapsed {
                                node: node.to_owned(),
                            },
                            *until,
                        ));
                    }
                    Effect::Branch { yes, .. } => {
                        entry["event"] = json!("branch");
                        entry["branch"] = json!(if *yes { "yes" } else { "no" });
                    }
                    Effect::Send {
                        template_id,
                        variables,
                        ..
                    } => {
                        entry["event"] = json!("send");
                        entry["template_id"] = json!(template_id);
                        let (name, text) = render(&mut tx, *template_id, variables).await?;
                        messages.push(json!({
                            "node_id": node,
                            "template_id": template_id,
                            "template_name": name,
                            "variables": variables.iter().cloned().collect::<BTreeMap<_, _>>(),
                            "text": text,
                            "at": at,
                        }));
                    }
                    Effect::Skip { reason, .. } => {
                        entry["event"] = json!("skipped");
                        entry["reason"] = json!(reason);
                    }
                    Effect::Fail { reason, .. } => {
                        entry["event"] = json!("failed");
                        entry["reason"] = json!(reason);
                    }
                    Effect::Complete => entry["event"] = json!("completed"),
                }
                path.push(entry);
            }
            if st.sends() {
                facts.last_message = Some(LastMessage {
                    message_id: None,
                    sent_at: at,
                    status: MessageStatus::Sent,
                });
                facts.replies.clear();
            }
            run = st.state;
            ended = json!(run.status.as_str());
            match next {
                Some((i, t)) if !run.status.is_terminal() => {
                    input = i;
                    at = t.max(at);
                }
                _ => break,
            }
        }
    }
    // A read transaction: nothing to keep.
    tx.commit().await?;
    Ok(axum::Json(json!({
        "automation_id": a.id,
        "version": a.current_version,
        "contact_id": contact.id,
        "gate": gate_json,
        "path": path,
        "messages": messages,
        "ended": ended,
        "issues": issues,
        "assumptions": [
            "the trigger's tag, segment or list parameter matches",
            "delays elapse",
            "a condition waiting for a reply or a delivery status sees none and takes its window's end",
        ],
    })))
}
