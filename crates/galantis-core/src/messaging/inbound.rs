//! Inbound WhatsApp messages as Meta's `messages` webhook delivers them:
//! what each one does, and a readable one-line summary of every type.
//!
//! Summaries are for people (inbox lists, search, notifications); the
//! structured message stays in the stored `content`.

use serde_json::Value;

/// What an inbound message does to the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEffect<'a> {
    /// A new message in the conversation.
    New,
    /// A reaction to `target`; `None` removes the reaction (Meta sends an
    /// empty or absent emoji).
    React {
        target: &'a str,
        emoji: Option<&'a str>,
    },
    /// The sender edited `target`; `message` is the new message object.
    Edit { target: &'a str, message: &'a Value },
    /// The sender deleted `target` for everyone.
    Revoke { target: &'a str },
    /// The sender moved to another WhatsApp number (`wa_id`, digits only).
    ChangedNumber { new_wa_id: &'a str },
}

fn str_at<'a>(m: &'a Value, path: &str) -> Option<&'a str> {
    m.pointer(path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The id of the quick-reply button the customer pressed, if this message
/// is such a press: an interactive message's reply button (`button_reply.id`,
/// the id we gave it) or a template's quick-reply button (`button.payload`:
/// the payload given at send time, else Meta sends the button's text).
/// Reply conditions (`USER_REPLY_STATUS` with a button) compare it.
pub fn button_reply_id(m: &Value) -> Option<String> {
    match str_at(m, "/type")? {
        "interactive" => str_at(m, "/interactive/button_reply/id"),
        "button" => str_at(m, "/button/payload"),
        _ => None,
    }
    .map(str::to_owned)
}

/// The message's effect. A reaction, edit or revoke without the id of the
/// message it changes cannot change anything and is kept as a new message.
pub fn effect(m: &Value) -> InboundEffect<'_> {
    match str_at(m, "/type").unwrap_or_default() {
        "reaction" => match str_at(m, "/reaction/message_id") {
            Some(target) => InboundEffect::React {
                target,
                emoji: str_at(m, "/reaction/emoji"),
            },
            None => InboundEffect::New,
        },
        "edit" => match (
            str_at(m, "/edit/original_message_id"),
            m.pointer("/edit/message"),
        ) {
            (Some(target), Some(message)) => InboundEffect::Edit { target, message },
            _ => InboundEffect::New,
        },
        "revoke" => match str_at(m, "/revoke/original_message_id") {
            Some(target) => InboundEffect::Revoke { target },
            None => InboundEffect::New,
        },
        // Current payloads name the new number `wa_id`; older ones `new_wa_id`.
        "system" if str_at(m, "/system/type") == Some("user_changed_number") => {
            match str_at(m, "/system/wa_id").or(str_at(m, "/system/new_wa_id")) {
                Some(new_wa_id) => InboundEffect::ChangedNumber { new_wa_id },
                None => InboundEffect::New,
            }
        }
        _ => InboundEffect::New,
    }
}

/// Meta's media object of an image, audio, video, document or sticker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMedia<'a> {
    /// Meta's media id: downloadable through the Graph API for 30 days.
    pub id: &'a str,
    pub mime_type: Option<&'a str>,
}

pub const MEDIA_TYPES: [&str; 5] = ["image", "audio", "video", "document", "sticker"];

pub fn media(m: &Value) -> Option<InboundMedia<'_>> {
    let kind = str_at(m, "/type")?;
    if !MEDIA_TYPES.contains(&kind) {
        return None;
    }
    let obj = m.get(kind)?;
    Some(InboundMedia {
        id: str_at(obj, "/id")?,
        mime_type: str_at(obj, "/mime_type"),
    })
}

fn number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// A readable summary of any inbound message; `None` only when the message
/// carries nothing to show (a text without a body).
pub fn summary(m: &Value) -> Option<String> {
    let kind = str_at(m, "/type").unwrap_or("unknown");
    Some(match kind {
        "text" => return str_at(m, "/text/body").map(str::to_owned),
        "image" | "video" | "sticker" | "audio" | "document" => {
            if let Some(caption) = str_at(m, &format!("/{kind}/caption")) {
                return Some(caption.to_owned());
            }
            match kind {
                "audio" if m.pointer("/audio/voice") == Some(&Value::Bool(true)) => {
                    "[voice message]".to_owned()
                }
                "document" => match str_at(m, "/document/filename") {
                    Some(f) => format!("[document: {f}]"),
                    None => "[document]".to_owned(),
                },
                other => format!("[{other}]"),
            }
        }
        "location" => {
            let place: Vec<&str> = [str_at(m, "/location/name"), str_at(m, "/location/address")]
                .into_iter()
                .flatten()
                .collect();
            let at = match (
                number(m.pointer("/location/latitude")),
                number(m.pointer("/location/longitude")),
            ) {
                (Some(lat), Some(lon)) => format!("({lat}, {lon})"),
                _ => String::new(),
            };
            let text = [place.join(", "), at]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            format!("[location] {text}").trim_end().to_owned()
        }
        "contacts" => {
            let cards: Vec<String> = m
                .get("contacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let name = str_at(c, "/name/formatted_name")
                        .or(str_at(c, "/name/first_name"))
                        .unwrap_or("(no name)");
                    let phones: Vec<&str> = c
                        .get("phones")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| str_at(p, "/phone").or(str_at(p, "/wa_id")))
                        .collect();
                    if phones.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{name} ({})", phones.join(", "))
                    }
                })
                .collect();
            format!("[contacts] {}", cards.join("; "))
        }
        "interactive" => match str_at(m, "/interactive/type").unwrap_or_default() {
            "button_reply" => {
                return str_at(m, "/interactive/button_reply/title").map(str::to_owned);
            }
            "list_reply" => {
                return str_at(m, "/interactive/list_reply/title").map(str::to_owned);
            }
            "nfm_reply" => {
                // `response_json` is a JSON document in a string: shown
                // compact when it parses, as sent otherwise.
                let raw = str_at(m, "/interactive/nfm_reply/response_json").unwrap_or("{}");
                let json = serde_json::from_str::<Value>(raw)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| raw.to_owned());
                format!("[flow reply] {json}")
            }
            other => {
                // Older payloads carry no `interactive.type`.
                if let Some(t) = str_at(m, "/interactive/button_reply/title")
                    .or(str_at(m, "/interactive/list_reply/title"))
                {
                    return Some(t.to_owned());
                }
                format!("[interactive {other}]").replace(" ]", "]")
            }
        },
        "button" => {
            return str_at(m, "/button/text")
                .or(str_at(m, "/button/payload"))
                .map(str::to_owned);
        }
        "order" => {
            let items: Vec<String> = m
                .pointer("/order/product_items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|i| {
                    let qty = number(i.get("quantity")).unwrap_or_else(|| "1".into());
                    let sku = str_at(i, "/product_retailer_id").unwrap_or("?");
                    match (number(i.get("item_price")), str_at(i, "/currency")) {
                        (Some(p), Some(c)) => format!("{qty} × {sku} at {p} {c}"),
                        (Some(p), None) => format!("{qty} × {sku} at {p}"),
                        _ => format!("{qty} × {sku}"),
                    }
                })
                .collect();
            let mut s = format!(
                "[order] {} item{}",
                items.len(),
                if items.len() == 1 { "" } else { "s" }
            );
            if let Some(catalog) = str_at(m, "/order/catalog_id") {
                s.push_str(&format!(" from catalog {catalog}"));
            }
            if !items.is_empty() {
                s.push_str(": ");
                s.push_str(&items.join("; "));
            }
            if let Some(text) = str_at(m, "/order/text") {
                s.push_str(&format!(" — {text}"));
            }
            s
        }
        "reaction" => match str_at(m, "/reaction/emoji") {
            Some(e) => format!("[reaction] {e}"),
            None => "[reaction removed]".to_owned(),
        },
        "edit" => {
            let new = m.pointer("/edit/message").and_then(summary);
            format!("[edited] {}", new.unwrap_or_default())
                .trim_end()
                .to_owned()
        }
        "revoke" => "[deleted]".to_owned(),
        "system" => match str_at(m, "/system/body") {
            Some(b) => b.to_owned(),
            None => format!(
                "[system: {}]",
                str_at(m, "/system/type").unwrap_or("unknown")
            ),
        },
        "unsupported" | "unknown" => {
            // Meta describes why in `errors` (131051) and, in newer
            // payloads, names the type it could not deliver.
            let what = str_at(m, "/unsupported/type")
                .or(str_at(m, "/errors/0/error_data/details"))
                .or(str_at(m, "/errors/0/title"));
            match what {
                Some(w) => format!("[unsupported message: {w}]"),
                None => "[unsupported message]".to_owned(),
            }
        }
        other => format!("[{other}]"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_button_press_is_read_from_interactive_and_template_buttons() {
        let interactive = json!({"type": "interactive", "interactive": {"type": "button_reply",
            "button_reply": {"id": "yes-1", "title": "Yes"}}});
        assert_eq!(button_reply_id(&interactive).as_deref(), Some("yes-1"));
        let template = json!({"type": "button", "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"}});
        assert_eq!(button_reply_id(&template).as_deref(), Some("STOP_PROMOS"));
        for not_a_press in [
            json!({"type": "text", "text": {"body": "yes"}}),
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r1"}}}),
            json!({"type": "button", "button": {"payload": "  "}}),
            json!({"button": {"payload": "no type"}}),
        ] {
            assert_eq!(button_reply_id(&not_a_press), None, "{not_a_press}");
        }
    }

    #[test]
    fn every_type_has_a_summary() {
        let cases = [
            (json!({"type": "text", "text": {"body": "hola"}}), "hola"),
            (
                json!({"type": "image", "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "x"}}),
                "[image]",
            ),
            (
                json!({"type": "image", "image": {"id": "m1", "caption": "my cart", "mime_type": "image/jpeg"}}),
                "my cart",
            ),
            (
                json!({"type": "audio", "audio": {"id": "m2", "mime_type": "audio/ogg; codecs=opus", "voice": true}}),
                "[voice message]",
            ),
            (
                json!({"type": "document", "document": {"id": "m3", "filename": "invoice.pdf", "mime_type": "application/pdf"}}),
                "[document: invoice.pdf]",
            ),
            (
                json!({"type": "location", "location": {"latitude": 19.4326, "longitude": -99.1332, "name": "Zócalo", "address": "Centro, CDMX"}}),
                "[location] Zócalo, Centro, CDMX (19.4326, -99.1332)",
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"size\": \"M\", \"flow_token\": \"t\"}"}}}),
                "[flow reply] {\"flow_token\":\"t\",\"size\":\"M\"}",
            ),
            (
                json!({"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown", "error_data": {"details": "Message type is currently not supported."}}]}),
                "[unsupported message: Message type is currently not supported.]",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(summary(&m).as_deref(), Some(want), "{m}");
        }
    }

    #[test]
    fn effects_name_their_target() {
        let r = json!({"type": "reaction", "reaction": {"message_id": "wamid.A", "emoji": ""}});
        assert_eq!(
            effect(&r),
            InboundEffect::React {
                target: "wamid.A",
                emoji: None
            }
        );
        let s = json!({"type": "system", "system": {"type": "user_changed_number", "new_wa_id": "5215500000000"}});
        assert_eq!(
            effect(&s),
            InboundEffect::ChangedNumber {
                new_wa_id: "5215500000000"
            }
        );
        let bad = json!({"type": "revoke", "revoke": {}});
        assert_eq!(effect(&bad), InboundEffect::New);
        let media_less = json!({"type": "image", "image": {"mime_type": "image/png"}});
        assert_eq!(media(&media_less), None);
    }
}
