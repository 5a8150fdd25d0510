//! `POST /{version}/{phone_number_id}/messages`: validation, Meta's rules
//! and limits, acceptance, and the status webhooks that follow.
//!
//! Order of checks (each failure is counted by code): token (190), number
//! and the token's access to it (100/33), body (100), content and template
//! (100, 132001, 132015, 132016, 132000, 132012), recipient is not the
//! sender (131021), service window for free-form (131047), synchronous
//! failure rules, then throughput (130429) and pair rate (131056), which are
//! decided together and consume budget only when both allow the send.

use serde_json::{Value, json};

use super::config::FailureMode;
use super::errors::GraphError;
use super::limits::Decision;
use super::params::ParamSpec;
use super::payloads::status_plan;
use super::state::{MetaSandbox, SentMessage, new_wamid};
use super::validate::{parse, str_field, validate_free_form};

impl MetaSandbox {
    /// Handles one send. `token` is the bearer token (none: missing).
    /// Returns Meta's success body or the error to render.
    pub fn send_message(
        &self,
        phone_number_id: &str,
        token: Option<&str>,
        raw: &[u8],
    ) -> Result<Value, GraphError> {
        let result = self.try_send(phone_number_id, token, raw);
        if let Err(e) = &result {
            self.world().record_rejection(e.code);
        }
        result
    }

    fn try_send(
        &self,
        phone_number_id: &str,
        token: Option<&str>,
        raw: &[u8],
    ) -> Result<Value, GraphError> {
        self.world().counters.requests += 1;
        let number = self.authorize_number(phone_number_id, token, "post")?;
        let req = parse(raw)?;
        let now = self.now();
        let mut w = self.world();

        // Content: a template must exist, be approved and get its parameters.
        let mut category = "service".to_owned();
        let mut template_ref = None;
        if req.kind == "template" {
            let t = &req.body["template"];
            let name = str_field(t, "name")
                .ok_or_else(|| GraphError::param("The parameter template['name'] is required."))?;
            let lang = str_field(&t["language"], "code").ok_or_else(|| {
                GraphError::param("The parameter template['language']['code'] is required.")
            })?;
            let found = w
                .templates
                .iter()
                .find(|x| x.waba_id == number.waba_id && x.name == name && x.language == lang);
            let Some(template) = found else {
                return Err(GraphError::code(132001)
                    .details(format!("template name ({name}) does not exist in {lang}")));
            };
            match template.status.as_str() {
                "APPROVED" => {}
                "PAUSED" => {
                    return Err(
                        GraphError::code(132015).details(format!("Template {name} is paused"))
                    );
                }
                "DISABLED" => {
                    return Err(
                        GraphError::code(132016).details(format!("Template {name} is disabled"))
                    );
                }
                _ => {
                    return Err(GraphError::code(132001)
                        .details(format!("template name ({name}) does not exist in {lang}")));
                }
            }
            ParamSpec::of(template).check(t.get("components"))?;
            category = template.category.to_ascii_lowercase();
            template_ref = Some((name.to_owned(), lang.to_owned()));
        } else {
            validate_free_form(&req.kind, &req.body)?;
        }
        if req.wa_id == number.display_phone_number {
            return Err(GraphError::code(131021));
        }
        if req.kind != "template" && !w.window_open(phone_number_id, &req.wa_id, now) {
            return Err(GraphError::code(131047));
        }

        // Failure rules: synchronous ones answer now, asynchronous ones are
        // accepted (if the limits allow) and fail by webhook.
        let rule = w.matching_failure(phone_number_id, &req.wa_id);
        let mut async_failure = None;
        if let Some(i) = rule {
            let r = w.failures[i].rule.clone();
            if r.mode == FailureMode::Sync {
                w.consume_failure(i);
                let mut e = GraphError::code(r.code);
                if let Some(d) = r.details {
                    e = e.details(d);
                }
                return Err(e);
            }
            async_failure = Some((r.code, r.details));
        }

        let throttle = w.settings.throttle_http_status;
        let with_status = |mut e: GraphError| {
            if let Ok(s) = axum::http::StatusCode::from_u16(throttle) {
                e.status = s;
            }
            e
        };
        let pair_key = (phone_number_id.to_owned(), req.wa_id.clone());
        let Some(limiter) = w.throughput.get(phone_number_id) else {
            return Err(GraphError::unknown_object(phone_number_id, "post"));
        };
        let t = limiter.decide(&(), now);
        if let Decision::Deny { retry_after } = t {
            return Err(with_status(GraphError::code(130429)).details(format!(
                "Message failed to send because there were too many messages sent from this phone number in a short period of time (limit {} per second; retry in {} ms)",
                number.messages_per_second,
                retry_after.as_millis()
            )));
        }
        let p = w.pair.decide(&pair_key, now);
        if let Decision::Deny { retry_after } = p {
            let e = with_status(GraphError::code(131056));
            let details = format!("{} (retry in {} ms)", e.details, retry_after.as_millis());
            return Err(e.details(details));
        }
        if let Some(l) = w.throughput.get_mut(phone_number_id) {
            l.commit((), t, now);
        }
        w.pair.commit(pair_key, p, now);
        if let Some(i) = rule {
            w.consume_failure(i);
        }

        let message = SentMessage {
            id: new_wamid(),
            phone_number_id: phone_number_id.to_owned(),
            waba_id: number.waba_id.clone(),
            to: req.to.clone(),
            wa_id: req.wa_id.clone(),
            kind: req.kind.clone(),
            template_name: template_ref.as_ref().map(|r| r.0.clone()),
            template_language: template_ref.map(|r| r.1),
            category,
            biz_opaque_callback_data: req.callback_data,
            accepted_at: now,
            sandbox: true,
            failure_code: async_failure.as_ref().map(|f| f.0),
            request: req.body,
        };
        let behaviour = w.webhooks.clone();
        w.record_accepted(message.clone());
        drop(w);

        let (plan, reordered) = status_plan(&number, &message, &behaviour, async_failure);
        if reordered {
            self.note_reordered();
        }
        self.post_webhooks(plan);

        let mut accepted = json!({ "id": message.id });
        if message.kind == "template" {
            accepted["message_status"] = json!("accepted");
        }
        Ok(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": req.to, "wa_id": req.wa_id }],
            "messages": [accepted],
        }))
    }
}
