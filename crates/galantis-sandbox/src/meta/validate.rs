//! Parsing and structural validation of a send request, with Meta's error
//! wording (`(#100) The parameter to is required.` and the like).

use serde_json::Value;

use super::errors::GraphError;

/// Message types Meta accepts on this endpoint.
const TYPES: [&str; 12] = [
    "text",
    "template",
    "interactive",
    "image",
    "video",
    "document",
    "audio",
    "sticker",
    "location",
    "contacts",
    "reaction",
    "order_details",
];

/// `to` as digits (Meta's wa_id), accepting `+`, spaces, dashes, dots and
/// parentheses around them.
pub(super) fn wa_id_of(to: &str) -> Option<String> {
    let digits: String = to
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let ok = (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(digits)
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn text_len(v: &Value, max: usize) -> Option<usize> {
    v.as_str()
        .map(|s| s.chars().count())
        .filter(|n| (1..=max).contains(n))
}

/// Structural checks of a free-form (non-template) message.
pub(super) fn validate_free_form(kind: &str, msg: &Value) -> Result<(), GraphError> {
    let obj = &msg[kind];
    match kind {
        "text" => {
            let body = &obj["body"];
            if !body.is_string() || body.as_str() == Some("") {
                return Err(GraphError::param("The parameter text['body'] is required."));
            }
            if text_len(body, 4096).is_none() {
                return Err(GraphError::invalid(
                    "text['body'] is longer than 4096 characters",
                ));
            }
        }
        "image" | "video" | "document" | "audio" | "sticker" => {
            let link = str_field(obj, "link");
            if link.is_none() && str_field(obj, "id").is_none() {
                return Err(GraphError::param(format!(
                    "Param {kind}['link'] or {kind}['id'] is required."
                )));
            }
            if let Some(link) = link
                && !(link.starts_with("https://") || link.starts_with("http://"))
            {
                return Err(GraphError::invalid(format!(
                    "{kind}['link'] must be an http(s) URL"
                )));
            }
            if matches!(kind, "audio" | "sticker") && obj.get("caption").is_some() {
                return Err(GraphError::invalid(format!(
                    "{kind} messages take no caption"
                )));
            }
        }
        "interactive" => validate_interactive(obj)?,
        "location" => {
            if !obj["latitude"].is_number() || !obj["longitude"].is_number() {
                return Err(GraphError::param(
                    "The parameters location['latitude'] and location['longitude'] are required.",
                ));
            }
        }
        "contacts" => {
            if msg["contacts"].as_array().is_none_or(Vec::is_empty) {
                return Err(GraphError::param("The parameter contacts is required."));
            }
        }
        "reaction" => {
            if str_field(obj, "message_id").is_none() || str_field(obj, "emoji").is_none() {
                return Err(GraphError::param(
                    "The parameters reaction['message_id'] and reaction['emoji'] are required.",
                ));
            }
        }
        _ => {
            if !obj.is_object() {
                return Err(GraphError::param(format!(
                    "The parameter {kind} is required."
                )));
            }
        }
    }
    Ok(())
}

fn validate_interactive(obj: &Value) -> Result<(), GraphError> {
    let Some(itype) = str_field(obj, "type") else {
        return Err(GraphError::param(
            "The parameter interactive['type'] is required.",
        ));
    };
    let action = &obj["action"];
    if !action.is_object() {
        return Err(GraphError::param(
            "The parameter interactive['action'] is required.",
        ));
    }
    let needs_body = matches!(itype, "button" | "list" | "cta_url" | "product_list");
    if needs_body && text_len(&obj["body"]["text"], 1024).is_none() {
        return Err(GraphError::param(
            "The parameter interactive['body']['text'] is required.",
        ));
    }
    match itype {
        "button" => {
            let buttons = action["buttons"]
                .as_array()
                .filter(|b| (1..=3).contains(&b.len()));
            let Some(buttons) = buttons else {
                return Err(GraphError::invalid(
                    "interactive buttons: between 1 and 3 reply buttons are required",
                ));
            };
            let mut ids = Vec::new();
            for b in buttons {
                let reply = &b["reply"];
                let id = str_field(reply, "id").filter(|s| (1..=256).contains(&s.len()));
                if b["type"] != "reply" || id.is_none() || text_len(&reply["title"], 20).is_none() {
                    return Err(GraphError::invalid(
                        "each button needs type 'reply', a reply id (at most 256 characters) and a title (1 to 20 characters)",
                    ));
                }
                if ids.contains(&id) {
                    return Err(GraphError::invalid("button ids must be unique"));
                }
                ids.push(id);
            }
        }
        "list" => {
            if text_len(&action["button"], 20).is_none() {
                return Err(GraphError::invalid(
                    "interactive list: action['button'] needs 1 to 20 characters",
                ));
            }
            let sections = action["sections"]
                .as_array()
                .filter(|s| (1..=10).contains(&s.len()));
            let Some(sections) = sections else {
                return Err(GraphError::invalid(
                    "interactive list: between 1 and 10 sections are required",
                ));
            };
            let rows: Vec<&Value> = sections
                .iter()
                .flat_map(|s| s["rows"].as_array().into_iter().flatten())
                .collect();
            if !(1..=10).contains(&rows.len()) {
                return Err(GraphError::invalid(
                    "interactive list: between 1 and 10 rows in total are required",
                ));
            }
            if rows
                .iter()
                .any(|r| str_field(r, "id").is_none() || text_len(&r["title"], 24).is_none())
            {
                return Err(GraphError::invalid(
                    "each list row needs an id and a title of 1 to 24 characters",
                ));
            }
        }
        "cta_url"
        | "product"
        | "product_list"
        | "flow"
        | "location_request_message"
        | "address_message"
        | "catalog_message" => {}
        other => {
            return Err(GraphError::invalid(format!(
                "unsupported interactive type `{other}`"
            )));
        }
    }
    Ok(())
}

/// A parsed, validated send request.
pub(super) struct Request {
    pub to: String,
    pub wa_id: String,
    pub kind: String,
    pub callback_data: Option<String>,
    pub body: Value,
}

pub(super) fn parse(raw: &[u8]) -> Result<Request, GraphError> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| GraphError::invalid(format!("The request body is not valid JSON: {e}")))?;
    if !body.is_object() {
        return Err(GraphError::invalid(
            "The request body must be a JSON object",
        ));
    }
    if body["messaging_product"] != "whatsapp" {
        return Err(GraphError::param(
            "The parameter messaging_product is required.",
        ));
    }
    if let Some(rt) = body.get("recipient_type")
        && rt != "individual"
    {
        return Err(GraphError::invalid("recipient_type must be 'individual'"));
    }
    let to = match body.get("to") {
        None | Some(Value::Null) => return Err(GraphError::param("The parameter to is required.")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(GraphError::invalid("Param to must be a string")),
    };
    let wa_id = wa_id_of(&to).ok_or_else(|| {
        GraphError::invalid(format!("Param to ('{to}') is not a valid phone number"))
    })?;
    let kind = match body.get("type") {
        None | Some(Value::Null) => "text".to_owned(),
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t.clone(),
        Some(_) => {
            return Err(GraphError::param(format!(
                "Param type must be one of {{{}}}",
                TYPES.join(", ").to_uppercase()
            )));
        }
    };
    let callback_data = match body.get("biz_opaque_callback_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 512 => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::invalid(
                "biz_opaque_callback_data must be a string of at most 512 characters",
            ));
        }
    };
    if let Some(ctx) = body.get("context")
        && str_field(ctx, "message_id").is_none()
    {
        return Err(GraphError::param(
            "The parameter context['message_id'] is required.",
        ));
    }
    Ok(Request {
        to,
        wa_id,
        kind,
        callback_data,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wa_ids_are_digits() {
        assert_eq!(
            wa_id_of("+52 1 (234) 567-890").as_deref(),
            Some("521234567890")
        );
        assert_eq!(wa_id_of("15550001234").as_deref(), Some("15550001234"));
        assert_eq!(wa_id_of("abc"), None);
        assert_eq!(wa_id_of("123"), None);
        assert_eq!(wa_id_of("+1234567890123456"), None);
    }

    #[test]
    fn parse_reports_missing_fields_like_meta() {
        let e = |s: &str| parse(s.as_bytes()).err().unwrap();
        assert_eq!(e("{").code, 100);
        assert!(e("{").details.contains("not valid JSON"));
        assert_eq!(
            e(r#"{"to":"15550001"}"#).message,
            "(#100) The parameter messaging_product is required."
        );
        assert_eq!(
            e(r#"{"messaging_product":"whatsapp"}"#).message,
            "(#100) The parameter to is required."
        );
        assert_eq!(
            e(r#"{"messaging_product":"whatsapp","to":15550001}"#).code,
            100
        );
        assert_eq!(
            e(r#"{"messaging_product":"whatsapp","to":"15550001","type":"fax"}"#).code,
            100
        );
        let ok =
            parse(br#"{"messaging_product":"whatsapp","to":"+1 555 0001","text":{"body":"hi"}}"#)
                .ok()
                .unwrap();
        assert_eq!((ok.kind.as_str(), ok.wa_id.as_str()), ("text", "15550001"));
    }

    #[test]
    fn free_form_shapes_are_checked() {
        let ok = |kind: &str, v: Value| validate_free_form(kind, &v).unwrap();
        let bad = |kind: &str, v: Value| validate_free_form(kind, &v).unwrap_err().code;
        ok("text", json!({"text":{"body":"hi"}}));
        assert_eq!(bad("text", json!({"text":{}})), 100);
        ok(
            "image",
            json!({"image":{"link":"https://x.example/a.png","caption":"c"}}),
        );
        assert_eq!(bad("image", json!({"image":{}})), 100);
        assert_eq!(bad("audio", json!({"audio":{"id":"1","caption":"c"}})), 100);
        let buttons = json!({"interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":[
            {"type":"reply","reply":{"id":"yes","title":"Yes"}},{"type":"reply","reply":{"id":"no","title":"No"}}]}}});
        ok("interactive", buttons.clone());
        let mut dup = buttons.clone();
        dup["interactive"]["action"]["buttons"][1]["reply"]["id"] = json!("yes");
        assert_eq!(bad("interactive", dup), 100);
        let list = json!({"interactive":{"type":"list","body":{"text":"Pick"},"action":{"button":"Options","sections":[
            {"title":"S","rows":[{"id":"r1","title":"One"}]}]}}});
        ok("interactive", list);
        assert_eq!(
            bad(
                "interactive",
                json!({"interactive":{"type":"list","body":{"text":"x"},"action":{"button":"b","sections":[]}}})
            ),
            100
        );
    }
}
