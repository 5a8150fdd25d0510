//! An ActionNode's send: its template (by id) with the resolved variables
//! as body parameters, keyed per (run, node, visit).

use galantis_store::tenant::templates::TemplateRecord;
use galantis_store::{StoreError, TenantTx};
use serde_json::{Value, json};
use uuid::Uuid;

use super::facts::Templates;
use crate::sending::queue::{NewSend, Outgoing, TemplateSend};

/// The idempotency key of a run's send at a node visit.
pub fn send_key(run_id: Uuid, node: &str, visit: u32) -> String {
    format!("automation:{run_id}:{node}:{visit}")
}

/// The send of `template_id` to `contact_id`; `None` when the template is
/// gone (the step function already failed a missing one).
pub(super) async fn outgoing(
    tx: &mut TenantTx,
    templates: &mut Templates,
    template_id: Uuid,
    variables: &[(String, String)],
    contact_id: Uuid,
    key: String,
) -> Result<Option<Outgoing>, StoreError> {
    Ok(templates
        .get(tx, template_id)
        .await?
        .and_then(|t| of_template(t, variables, contact_id, key)))
}

/// [`outgoing`] of a template already read.
fn of_template(
    t: &TemplateRecord,
    variables: &[(String, String)],
    contact_id: Uuid,
    key: String,
) -> Option<Outgoing> {
    let named = t.parameter_format.eq_ignore_ascii_case("named");
    let params: Vec<Value> = variables
        .iter()
        .map(|(name, v)| {
            if named {
                json!({"type": "text", "parameter_name": name, "text": v})
            } else {
                json!({"type": "text", "text": v})
            }
        })
        .collect();
    let components = if params.is_empty() {
        json!([])
    } else {
        json!([{"type": "body", "parameters": params}])
    };
    let send = NewSend {
        contact_id,
        source: Some("automation".into()),
        idempotency_key: Some(key),
        template: Some(TemplateSend {
            name: t.name.clone(),
            language: t.language.clone(),
            components,
        }),
        ..Default::default()
    };
    // The shape is ours, so it validates.
    send.validate().ok()
}
