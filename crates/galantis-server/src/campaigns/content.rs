//! A recipient's template send, built from the campaign's variables
//! mapping: keys `1`, `2`… (or names) fill the body's variables, keys
//! `header.1` (or `header.<name>`) the header's; positional variables in
//! numeric order.

use std::collections::BTreeMap;

use galantis_core::campaign::VariableSource;
use galantis_core::{MessageKind, MessageSource};
use galantis_store::tenant::contacts::Contact;
use galantis_store::tenant::templates::TemplateRecord;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sending::queue::{Outgoing, TemplateSend};

fn field(c: &Contact, f: &str) -> Option<String> {
    match f {
        "customer.first_name" => c.first_name.clone(),
        "customer.last_name" => c.last_name.clone(),
        "customer.email" => c.email.clone(),
        "customer.phone" => c.phone.clone(),
        _ => None,
    }
}

/// The components for `contact`, or the variable no value could be found
/// for (no field value and no fallback).
pub fn components(
    mapping: &BTreeMap<String, VariableSource>,
    contact: &Contact,
) -> Result<Value, String> {
    let mut parts: [(&str, Vec<(String, String)>); 2] = [("header", vec![]), ("body", vec![])];
    for (k, src) in mapping {
        let (slot, name) = match k.strip_prefix("header.") {
            Some(n) => (0, n),
            None => (1, k.as_str()),
        };
        let v = src.value(|f| field(contact, f)).ok_or_else(|| k.clone())?;
        parts[slot].1.push((name.to_owned(), v));
    }
    let mut out = Vec::new();
    for (kind, mut vars) in parts {
        if vars.is_empty() {
            continue;
        }
        let positional = vars.iter().all(|(n, _)| n.parse::<u32>().is_ok());
        if positional {
            vars.sort_by_key(|(n, _)| n.parse::<u32>().unwrap_or(0));
        }
        let params: Vec<Value> = vars
            .into_iter()
            .map(|(n, v)| {
                if positional {
                    json!({"type": "text", "text": v})
                } else {
                    json!({"type": "text", "parameter_name": n, "text": v})
                }
            })
            .collect();
        out.push(json!({"type": kind, "parameters": params}));
    }
    Ok(Value::Array(out))
}

/// The idempotency key of a campaign's message to a contact: one message
/// per (campaign, contact), ever (the messages' unique index).
pub fn key(campaign: Uuid, contact: Uuid) -> String {
    format!("campaign:{campaign}:{contact}")
}

/// The send for one recipient.
pub fn outgoing(
    template: &TemplateRecord,
    components: Value,
    contact: Uuid,
    phone_number_id: Option<String>,
    idempotency_key: String,
    source: MessageSource,
) -> Outgoing {
    let mut tpl = json!({"name": template.name, "language": {"code": template.language}});
    if components.as_array().is_some_and(|a| !a.is_empty()) {
        tpl["components"] = components.clone();
    }
    Outgoing {
        contact_id: contact,
        phone_number_id,
        source,
        idempotency_key,
        key_given: true,
        kind: MessageKind::Template,
        content: json!({ "template": tpl }),
        template: Some(TemplateSend {
            name: template.name.clone(),
            language: template.language.clone(),
            components,
        }),
    }
}
