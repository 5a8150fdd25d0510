//! Simulated inbound messages: a WhatsApp user writes to a business
//! number. The sandbox posts Meta's `messages` webhook and opens the
//! user's 24 h customer-service window with that number.

use serde::Deserialize;
use serde_json::json;

use super::config::DEV_PHONE_NUMBER_ID;
use super::payloads::inbound_payload;
use super::state::{MetaSandbox, new_wamid};
use super::validate::wa_id_of;

/// A simulated message from a WhatsApp user to a business number.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundMessage {
    /// The business number receiving it (default: the development number).
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// The user's number (wa_id; `+` and separators are removed).
    pub from: String,
    /// Profile name (default "Sandbox User").
    #[serde(default)]
    pub name: Option<String>,
    /// Exactly one of the four contents below.
    #[serde(default)]
    pub text: Option<String>,
    /// Reply to an interactive button: `{"id","title"}`.
    #[serde(default)]
    pub button_reply: Option<Reply>,
    /// Choice from an interactive list: `{"id","title","description"?}`.
    #[serde(default)]
    pub list_reply: Option<Reply>,
    /// Press of a template quick-reply button: `{"payload","text"}`.
    #[serde(default)]
    pub button: Option<TemplateButton>,
    /// The wamid of the message this one replies to (`context.id`).
    #[serde(default)]
    pub context_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Reply {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TemplateButton {
    pub payload: String,
    pub text: String,
}

impl InboundMessage {
    pub fn text(from: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            text: Some(body.into()),
            ..Self::default()
        }
    }

    pub fn button_reply(
        from: impl Into<String>,
        id: impl Into<String>,
        title: impl Into<String>,
    ) -> Self {
        Self {
            from: from.into(),
            button_reply: Some(Reply {
                id: id.into(),
                title: title.into(),
                description: None,
            }),
            ..Self::default()
        }
    }

    pub fn to_number(mut self, phone_number_id: impl Into<String>) -> Self {
        self.phone_number_id = Some(phone_number_id.into());
        self
    }

    pub fn replying_to(mut self, wamid: impl Into<String>) -> Self {
        self.context_id = Some(wamid.into());
        self
    }
}

impl MetaSandbox {
    /// Posts a `messages` webhook carrying `msg` and opens the user's
    /// service window with that number. Returns the inbound message's wamid.
    pub fn inbound(&self, msg: InboundMessage) -> Result<String, String> {
        let number_id = msg
            .phone_number_id
            .clone()
            .unwrap_or_else(|| DEV_PHONE_NUMBER_ID.to_owned());
        let number = self
            .world()
            .numbers
            .get(&number_id)
            .cloned()
            .ok_or_else(|| format!("unknown phone_number_id {number_id}"))?;
        let wa_id = wa_id_of(&msg.from)
            .ok_or_else(|| format!("`from` ({}) is not a phone number", msg.from))?;
        let now = self.now();
        let id = new_wamid();
        let mut m = json!({ "from": wa_id, "id": id, "timestamp": now.timestamp().to_string() });
        match (&msg.text, &msg.button_reply, &msg.list_reply, &msg.button) {
            (Some(body), None, None, None) => {
                m["type"] = json!("text");
                m["text"] = json!({ "body": body });
            }
            (None, Some(r), None, None) => {
                m["type"] = json!("interactive");
                m["interactive"] = json!({ "type": "button_reply", "button_reply": { "id": r.id, "title": r.title } });
            }
            (None, None, Some(r), None) => {
                m["type"] = json!("interactive");
                let mut reply = json!({ "id": r.id, "title": r.title });
                if let Some(d) = &r.description {
                    reply["description"] = json!(d);
                }
                m["interactive"] = json!({ "type": "list_reply", "list_reply": reply });
            }
            (None, None, None, Some(b)) => {
                m["type"] = json!("button");
                m["button"] = json!({ "payload": b.payload, "text": b.text });
            }
            _ => return Err("give exactly one of text, button_reply, list_reply, button".into()),
        }
        if let Some(ctx) = &msg.context_id {
            m["context"] = json!({ "from": number.display_phone_number, "id": ctx });
        }
        let name = msg.name.as_deref().unwrap_or("Sandbox User");
        let payload = inbound_payload(&number, &wa_id, name, m);
        {
            let mut w = self.world();
            w.windows.insert((number_id, wa_id), now);
            w.counters.inbound_messages += 1;
        }
        self.post_webhooks(vec![(0, payload)]);
        Ok(id)
    }
}
