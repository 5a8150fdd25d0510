//! Templates per WABA: Meta's `message_templates` edge (list, create,
//! delete), simulated review (APPROVED after a delay, or REJECTED by rule),
//! and status changes with their `message_template_status_update` webhook.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::config::TemplateSeed;
use super::errors::GraphError;
use super::payloads::template_status_payload;
use super::state::{MetaSandbox, World};
use super::templates::{CATEGORIES, STATUSES, Template, validate_components};

fn valid_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `en`, `es`, `pt_BR`, `zh_CN`, `fil`…
fn valid_language(lang: &str) -> bool {
    let (base, region) = lang.split_once('_').unwrap_or((lang, ""));
    (2..=3).contains(&base.len())
        && base.bytes().all(|b| b.is_ascii_lowercase())
        && (region.is_empty()
            || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())))
}

/// Checks a template definition; returns (category, parameter format).
fn check_definition(
    name: &str,
    language: &str,
    category: &str,
    components: &Value,
) -> Result<(String, &'static str), String> {
    if !valid_name(name) {
        return Err(format!(
            "template name `{name}` must be 1 to 512 lowercase letters, digits or underscores"
        ));
    }
    if !valid_language(language) {
        return Err(format!(
            "language `{language}` is not a supported language code (e.g. en, es, pt_BR)"
        ));
    }
    let category = category.to_ascii_uppercase();
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(format!("category must be one of {}", CATEGORIES.join(", ")));
    }
    let format = validate_components(components)?;
    Ok((category, format))
}

/// Places a template in a WABA as given (seeds and the control API).
pub(super) fn insert_seed(w: &mut World, seed: TemplateSeed) -> Result<Template, String> {
    let (category, format) =
        check_definition(&seed.name, &seed.language, &seed.category, &seed.components)?;
    let status = seed.status.to_ascii_uppercase();
    if !STATUSES.contains(&status.as_str()) {
        return Err(format!("status must be one of {}", STATUSES.join(", ")));
    }
    w.templates.retain(|t| {
        !(t.waba_id == seed.waba_id && t.name == seed.name && t.language == seed.language)
    });
    let t = Template {
        id: w.next_id(),
        waba_id: seed.waba_id,
        name: seed.name,
        language: seed.language,
        category,
        status,
        parameter_format: format.to_owned(),
        components: seed.components,
        rejected_reason: None,
    };
    w.templates.push(t.clone());
    Ok(t)
}

impl MetaSandbox {
    /// `GET /{version}/{waba_id}/message_templates`. `next_base` is the URL
    /// of this edge, for the `paging.next` link.
    pub fn list_templates(
        &self,
        waba_id: &str,
        q: &HashMap<String, String>,
        next_base: Option<String>,
    ) -> Result<Value, GraphError> {
        let limit = match q.get("limit") {
            None => 25,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| GraphError::invalid("limit must be a number between 1 and 1000"))?,
        };
        let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
        let filter =
            |key: &str, value: &str| q.get(key).is_none_or(|f| f.eq_ignore_ascii_case(value));
        let w = self.world();
        let mut matching = w.templates.iter().filter(|t| {
            t.waba_id == waba_id
                && t.id.parse::<u64>().unwrap_or(0) > after
                && filter("name", &t.name)
                && filter("status", &t.status)
                && filter("language", &t.language)
                && filter("category", &t.category)
        });
        let page: Vec<&Template> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(json!({ "data": [] }));
        };
        let mut paging = json!({ "cursors": { "before": first.id, "after": last.id } });
        if more && let Some(base) = next_base {
            let mut next = format!("{base}?limit={limit}&after={}", last.id);
            for key in ["name", "status", "language", "category"] {
                if let Some(v) = q
                    .get(key)
                    .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                {
                    next.push_str(&format!("&{key}={v}"));
                }
            }
            paging["next"] = json!(next);
        }
        Ok(json!({ "data": page, "paging": paging }))
    }

    /// `POST /{version}/{waba_id}/message_templates`: stores the template as
    /// PENDING and schedules its review.
    pub fn create_template(&self, waba_id: &str, raw: &[u8]) -> Result<Value, GraphError> {
        let body: Value = serde_json::from_slice(raw)
            .map_err(|e| GraphError::invalid(format!("The request body is not valid JSON: {e}")))?;
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| GraphError::param(format!("The parameter {k} is required.")))
        };
        let (name, language, category) = (field("name")?, field("language")?, field("category")?);
        let components = body.get("components").unwrap_or(&Value::Null);
        let (category, format) =
            check_definition(name, language, category, components).map_err(GraphError::invalid)?;
        let t = {
            let mut w = self.world();
            if w.templates
                .iter()
                .any(|t| t.waba_id == waba_id && t.name == name && t.language == language)
            {
                let mut e = GraphError::invalid(format!(
                    "Content in this language already exists: {name} ({language})"
                ));
                e.subcode = Some(2388024);
                return Err(e);
            }
            let t = Template {
                id: w.next_id(),
                waba_id: waba_id.to_owned(),
                name: name.to_owned(),
                language: language.to_owned(),
                category: category.clone(),
                status: "PENDING".to_owned(),
                parameter_format: format.to_owned(),
                components: components.clone(),
                rejected_reason: None,
            };
            w.templates.push(t.clone());
            w.counters.templates_submitted += 1;
            t
        };
        self.schedule_review(t.id.clone());
        Ok(json!({ "id": t.id, "status": "PENDING", "category": category }))
    }

    fn schedule_review(&self, id: String) {
        let sandbox = self.clone();
        let delay = Duration::from_millis(self.world().settings.template_review_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sandbox.review(&id);
        });
    }

    /// Decides a PENDING template now (a deleted or already changed one is
    /// left alone).
    fn review(&self, id: &str) {
        let now = self.now().timestamp();
        let payload = {
            let mut w = self.world();
            let (prefix, reason) = (
                w.settings.reject_prefix.clone(),
                w.settings.reject_reason.clone(),
            );
            let Some(t) = w
                .templates
                .iter_mut()
                .find(|t| t.id == id && t.status == "PENDING")
            else {
                return;
            };
            let rejected = !prefix.is_empty() && t.name.starts_with(&prefix);
            t.status = if rejected { "REJECTED" } else { "APPROVED" }.to_owned();
            t.rejected_reason = rejected.then(|| reason.clone());
            template_status_payload(t, &t.status, rejected.then_some(reason.as_str()), now)
        };
        self.post_webhooks(vec![(0, payload)]);
    }

    /// `DELETE /{version}/{waba_id}/message_templates?name=…[&hsm_id=…]`:
    /// every language of `name`, or only the template `hsm_id`.
    pub fn delete_template(
        &self,
        waba_id: &str,
        q: &HashMap<String, String>,
    ) -> Result<Value, GraphError> {
        let name = q
            .get("name")
            .ok_or_else(|| GraphError::param("The parameter name is required."))?;
        let id = q.get("hsm_id");
        let mut w = self.world();
        let before = w.templates.len();
        w.templates.retain(|t| {
            !(t.waba_id == waba_id && &t.name == name && id.is_none_or(|i| &t.id == i))
        });
        if w.templates.len() == before {
            let mut e = GraphError::invalid(format!("Message template \"{name}\" not found"));
            e.subcode = Some(2593002);
            return Err(e);
        }
        Ok(json!({ "success": true }))
    }

    /// Adds (or replaces) a template directly, with the status it names;
    /// no review, no webhook.
    pub fn add_template(&self, seed: TemplateSeed) -> Result<Template, String> {
        insert_seed(&mut self.world(), seed)
    }

    /// The templates of one WABA (or all).
    pub fn templates(&self, waba_id: Option<&str>) -> Vec<Template> {
        let w = self.world();
        w.templates
            .iter()
            .filter(|t| waba_id.is_none_or(|id| t.waba_id == id))
            .cloned()
            .collect()
    }

    /// Sets the status of `name` (one language, or all) as Meta would, and
    /// sends the `message_template_status_update` webhook for each.
    pub fn set_template_status(
        &self,
        waba_id: &str,
        name: &str,
        language: Option<&str>,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Vec<Template>, String> {
        let status = status.to_ascii_uppercase();
        if !STATUSES.contains(&status.as_str()) {
            return Err(format!("status must be one of {}", STATUSES.join(", ")));
        }
        let now = self.now().timestamp();
        let mut changed = Vec::new();
        let mut plan = Vec::new();
        {
            let mut w = self.world();
            for t in w.templates.iter_mut().filter(|t| {
                t.waba_id == waba_id && t.name == name && language.is_none_or(|l| t.language == l)
            }) {
                t.status = status.clone();
                t.rejected_reason =
                    (status == "REJECTED").then(|| reason.unwrap_or("NONE").to_owned());
                // Meta has no webhook event for a template going back to review.
                if status != "PENDING" {
                    plan.push((0, template_status_payload(t, &status, reason, now)));
                }
                changed.push(t.clone());
            }
        }
        if changed.is_empty() {
            return Err(format!("no template `{name}` in WABA {waba_id}"));
        }
        self.post_webhooks(plan);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_languages() {
        assert!(valid_name("order_confirmation_es"));
        assert!(!valid_name("Order"));
        assert!(!valid_name(""));
        for ok in ["en", "es", "pt_BR", "fil", "en_US"] {
            assert!(valid_language(ok), "{ok}");
        }
        for bad in ["EN", "en-US", "english", "pt_br", ""] {
            assert!(!valid_language(bad), "{bad}");
        }
    }
}
