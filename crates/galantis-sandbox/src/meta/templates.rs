//! Message templates: the stored model, Meta's sample template, variables,
//! and what Meta accepts on creation. The send-time check is in `params`.

use serde::Serialize;
use serde_json::{Value, json};

pub const STATUSES: [&str; 5] = ["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"];
pub const CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];

/// A template as the sandbox stores it (and lists it, in Meta's field names).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Template {
    pub id: String,
    #[serde(skip)]
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub parameter_format: String,
    pub components: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

/// The sample template every new WABA has at Meta.
pub fn hello_world(waba_id: &str, id: String) -> Template {
    Template {
        id,
        waba_id: waba_id.to_owned(),
        name: "hello_world".to_owned(),
        language: "en_US".to_owned(),
        category: "UTILITY".to_owned(),
        status: "APPROVED".to_owned(),
        parameter_format: "POSITIONAL".to_owned(),
        components: json!([
            { "type": "HEADER", "format": "TEXT", "text": "Hello World" },
            { "type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test with us." },
            { "type": "FOOTER", "text": "WhatsApp Business Platform sample message" }
        ]),
        rejected_reason: None,
    }
}

/// Distinct `{{…}}` variables of `text`, in order of first appearance.
pub fn variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !out.iter().any(|v| v == name) {
            out.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

pub(super) fn kind_of(c: &Value) -> String {
    c.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

pub(super) fn text_of(c: &Value) -> &str {
    c.get("text").and_then(Value::as_str).unwrap_or_default()
}

/// Checks a creation request's `components` the way Meta's review form
/// does (the subset that matters for sending). Returns the parameter format.
pub fn validate_components(components: &Value) -> Result<&'static str, String> {
    let list = components
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or("components must be a non-empty array")?;
    let mut seen: Vec<String> = Vec::new();
    let mut all_vars: Vec<String> = Vec::new();
    for c in list {
        let kind = kind_of(c);
        if seen.contains(&kind) {
            return Err(format!("at most one {kind} component"));
        }
        match kind.as_str() {
            "HEADER" => {
                let format = c.get("format").and_then(Value::as_str).unwrap_or("TEXT");
                let format = format.to_ascii_uppercase();
                if !["TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION", "PRODUCT"]
                    .contains(&format.as_str())
                {
                    return Err(format!("unsupported header format {format}"));
                }
                if format == "TEXT" {
                    let text = text_of(c);
                    if text.is_empty() || text.chars().count() > 60 {
                        return Err("a TEXT header needs 1 to 60 characters of text".into());
                    }
                    let vars = variables(text);
                    if vars.len() > 1 {
                        return Err("a header may contain at most one variable".into());
                    }
                    all_vars.extend(vars);
                }
            }
            "BODY" => {
                let text = text_of(c);
                if text.is_empty() || text.chars().count() > 1024 {
                    return Err("the BODY needs 1 to 1024 characters of text".into());
                }
                let vars = variables(text);
                let mut numbers: Vec<usize> = vars.iter().filter_map(|v| v.parse().ok()).collect();
                numbers.sort_unstable();
                if numbers.len() == vars.len()
                    && numbers.iter().enumerate().any(|(i, n)| *n != i + 1)
                {
                    return Err("positional variables must be {{1}}, {{2}}, … without gaps".into());
                }
                all_vars.extend(vars);
            }
            "FOOTER" => {
                let text = text_of(c);
                if text.chars().count() > 60 || !variables(text).is_empty() {
                    return Err("a FOOTER has at most 60 characters and no variables".into());
                }
            }
            "BUTTONS" => validate_buttons(c)?,
            other => return Err(format!("unknown component type `{other}`")),
        }
        seen.push(kind);
    }
    if !seen.iter().any(|k| k == "BODY") {
        return Err("a template needs a BODY component".into());
    }
    let numeric: Vec<u32> = all_vars.iter().filter_map(|v| v.parse().ok()).collect();
    if numeric.len() == all_vars.len() {
        Ok("POSITIONAL")
    } else if numeric.is_empty()
        && all_vars
            .iter()
            .all(|v| v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        Ok("NAMED")
    } else {
        Err("variables must be all positional ({{1}}) or all named ({{first_name}}, lowercase and underscores)".into())
    }
}

fn validate_buttons(c: &Value) -> Result<(), String> {
    let buttons = c
        .get("buttons")
        .and_then(Value::as_array)
        .filter(|b| (1..=10).contains(&b.len()))
        .ok_or("BUTTONS needs 1 to 10 buttons")?;
    for b in buttons {
        let kind = kind_of(b);
        let known = [
            "QUICK_REPLY",
            "URL",
            "PHONE_NUMBER",
            "COPY_CODE",
            "OTP",
            "FLOW",
            "CATALOG",
            "MPM",
        ];
        if !known.contains(&kind.as_str()) {
            return Err(format!("unknown button type `{kind}`"));
        }
        if kind != "COPY_CODE" && kind != "CATALOG" && kind != "MPM" {
            let text = text_of(b);
            if text.is_empty() || text.chars().count() > 25 {
                return Err("button text must have 1 to 25 characters".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_distinct_and_ordered() {
        assert_eq!(variables("Hi {{1}}, order {{2}} ({{1}})"), ["1", "2"]);
        assert_eq!(variables("{{ first_name }} {{"), ["first_name"]);
        assert!(variables("no vars {{}}").is_empty());
    }

    #[test]
    fn creation_rules() {
        assert_eq!(
            validate_components(&json!([{"type":"BODY","text":"Hi {{1}}"}])),
            Ok("POSITIONAL")
        );
        assert_eq!(
            validate_components(&json!([{"type":"body","text":"Hi {{name}}"}])),
            Ok("NAMED")
        );
        assert!(validate_components(&json!([])).is_err());
        assert!(validate_components(&json!([{"type":"FOOTER","text":"x"}])).is_err());
        assert!(validate_components(&json!([{"type":"HEADER","format":"TEXT","text":"{{1}} {{2}}"},{"type":"BODY","text":"x"}])).is_err());
        assert!(
            validate_components(&json!([{"type":"BODY","text":"a"},{"type":"BODY","text":"b"}]))
                .is_err()
        );
        assert!(validate_components(&json!([{"type":"BODY","text":"{{1}} {{name}}"}])).is_err());
        assert!(validate_components(&json!([{"type":"BODY","text":"{{1}} {{3}}"}])).is_err());
        assert!(validate_components(&json!([{"type":"BODY","text":"x"},{"type":"BUTTONS","buttons":[{"type":"LASER","text":"x"}]}])).is_err());
    }
}
