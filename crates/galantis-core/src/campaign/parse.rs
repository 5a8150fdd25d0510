//! Parsing campaign bodies from JSON into the typed model; every error
//! names the field it is about (`audience.include[2].type: …`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::window::{SendWindow, SendWindowSpec};

/// Most lists and segments in one audience.
pub const MAX_AUDIENCE_SETS: usize = 100;
/// Longest campaign name.
pub const MAX_NAME_CHARS: usize = 120;
/// The contact fields a variable may take its value from.
pub const FIELDS: [&str; 4] = [
    "customer.first_name",
    "customer.last_name",
    "customer.email",
    "customer.phone",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetKind {
    List,
    Segment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceRef {
    #[serde(rename = "type")]
    pub kind: SetKind,
    pub id: Uuid,
}

/// Lists and segments to include and to exclude (exclusion wins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceSpec {
    #[serde(default)]
    pub include: Vec<AudienceRef>,
    #[serde(default)]
    pub exclude: Vec<AudienceRef>,
}

impl AudienceSpec {
    /// The ids of one kind, from include or exclude, sorted and distinct.
    pub fn ids(&self, include: bool, kind: SetKind) -> Vec<Uuid> {
        let refs = if include {
            &self.include
        } else {
            &self.exclude
        };
        let mut v: Vec<Uuid> = refs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.id)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Where a template variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VariableSource {
    /// A contact field, with the text used when the contact has none.
    Field {
        field: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
    },
    /// The same text for everyone.
    Static { text: String },
}

impl VariableSource {
    /// The value for a contact whose fields `field` reads; `None` when the
    /// field is empty and there is no fallback.
    pub fn value(&self, field: impl Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            VariableSource::Static { text } => Some(text.clone()),
            VariableSource::Field { field: f, fallback } => field(f)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| fallback.clone()),
        }
    }
}

/// A full campaign as created (`POST /api/v1/campaigns`).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignInput {
    pub name: String,
    pub template_id: Uuid,
    pub variables_mapping: BTreeMap<String, VariableSource>,
    pub audience: AudienceSpec,
    pub phone_number_id: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub send_window: Option<SendWindow>,
}

/// A change (`PATCH`): absent fields stay; `null` clears the optional ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub template_id: Option<Uuid>,
    pub variables_mapping: Option<BTreeMap<String, VariableSource>>,
    pub audience: Option<AudienceSpec>,
    pub phone_number_id: Option<Option<String>>,
    pub scheduled_at: Option<Option<DateTime<Utc>>>,
    pub send_window: Option<Option<SendWindow>>,
}

type R<T> = Result<T, String>;

fn object<'a>(path: &str, v: &'a Value) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{path}: expected an object"))
}

fn string(path: &str, v: &Value) -> R<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{path}: expected a string"))
}

fn uuid(path: &str, v: &Value) -> R<Uuid> {
    string(path, v)?
        .parse()
        .map_err(|_| format!("{path}: expected an id (UUID)"))
}

fn name(v: &Value) -> R<String> {
    let s = string("name", v)?;
    crate::text::check_field("name", &s, MAX_NAME_CHARS)
        .map(str::to_owned)
        .map_err(|e| e.to_string())
}

fn audience(v: &Value) -> R<AudienceSpec> {
    let o = object("audience", v)?;
    let mut spec = AudienceSpec::default();
    for k in o.keys() {
        if k != "include" && k != "exclude" {
            return Err(format!("audience.{k}: unknown field (include, exclude)"));
        }
    }
    for (key, out) in [
        ("include", &mut spec.include),
        ("exclude", &mut spec.exclude),
    ] {
        let Some(list) = o.get(key) else { continue };
        let items = list
            .as_array()
            .ok_or_else(|| format!("audience.{key}: expected an array"))?;
        for (i, item) in items.iter().enumerate() {
            let p = format!("audience.{key}[{i}]");
            let io = object(&p, item)?;
            if let Some(k) = io.keys().find(|k| *k != "type" && *k != "id") {
                return Err(format!("{p}.{k}: unknown field (type, id)"));
            }
            let kind = match io.get("type").and_then(Value::as_str) {
                Some("list") => SetKind::List,
                Some("segment") => SetKind::Segment,
                _ => return Err(format!("{p}.type: expected \"list\" or \"segment\"")),
            };
            let id = uuid(&format!("{p}.id"), io.get("id").unwrap_or(&Value::Null))?;
            out.push(AudienceRef { kind, id });
        }
    }
    if spec.include.len() + spec.exclude.len() > MAX_AUDIENCE_SETS {
        return Err(format!(
            "audience: at most {MAX_AUDIENCE_SETS} lists and segments"
        ));
    }
    Ok(spec)
}

fn mapping(v: &Value) -> R<BTreeMap<String, VariableSource>> {
    let o = object("variables_mapping", v)?;
    let mut out = BTreeMap::new();
    for (k, item) in o {
        let p = format!("variables_mapping.{k}");
        if k.is_empty() || k.len() > 60 {
            return Err(format!("{p}: a variable name has 1 to 60 characters"));
        }
        let io = object(&p, item)?;
        let src = if let Some(t) = io.get("text") {
            if io.len() != 1 {
                return Err(format!(
                    "{p}: give either text, or field with an optional fallback"
                ));
            }
            let text = string(&format!("{p}.text"), t)?;
            if text.is_empty() || text.chars().count() > 1024 {
                return Err(format!("{p}.text: 1 to 1,024 characters"));
            }
            VariableSource::Static { text }
        } else {
            if let Some(k) = io.keys().find(|k| *k != "field" && *k != "fallback") {
                return Err(format!("{p}.{k}: unknown field (field, fallback, text)"));
            }
            let field = string(
                &format!("{p}.field"),
                io.get("field").unwrap_or(&Value::Null),
            )?;
            if !FIELDS.contains(&field.as_str()) {
                return Err(format!("{p}.field: expected one of {}", FIELDS.join(", ")));
            }
            let fallback = match io.get("fallback") {
                None | Some(Value::Null) => None,
                Some(f) => Some(string(&format!("{p}.fallback"), f)?),
            };
            VariableSource::Field { field, fallback }
        };
        out.insert(k.clone(), src);
    }
    Ok(out)
}

fn window(v: &Value) -> R<SendWindow> {
    let spec: SendWindowSpec =
        serde_json::from_value(v.clone()).map_err(|e| format!("send_window: {e}"))?;
    SendWindow::parse(&spec)
}

fn scheduled(v: &Value) -> R<DateTime<Utc>> {
    let s = string("scheduled_at", v)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| "scheduled_at: expected an RFC 3339 time (2026-05-01T15:00:00Z)".to_owned())
}

fn phone_number_id(v: &Value) -> R<String> {
    let s = string("phone_number_id", v)?;
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("phone_number_id: expected Meta's numeric phone number id".into());
    }
    Ok(s)
}

fn nullable<T>(v: &Value, f: impl Fn(&Value) -> R<T>) -> R<Option<T>> {
    if v.is_null() {
        Ok(None)
    } else {
        f(v).map(Some)
    }
}

impl CampaignPatch {
    pub fn parse(v: &Value) -> R<Self> {
        let o = object("body", v)?;
        let mut p = CampaignPatch::default();
        for (k, v) in o {
            match k.as_str() {
                "name" => p.name = Some(name(v)?),
                "template_id" => p.template_id = Some(uuid("template_id", v)?),
                "variables_mapping" => p.variables_mapping = Some(mapping(v)?),
                "audience" => p.audience = Some(audience(v)?),
                "phone_number_id" => p.phone_number_id = Some(nullable(v, phone_number_id)?),
                "scheduled_at" => p.scheduled_at = Some(nullable(v, scheduled)?),
                "send_window" => p.send_window = Some(nullable(v, window)?),
                other => {
                    return Err(format!(
                        "{other}: unknown field (name, template_id, variables_mapping, audience, phone_number_id, scheduled_at, send_window)"
                    ));
                }
            }
        }
        Ok(p)
    }
}

impl CampaignInput {
    pub fn parse(v: &Value) -> R<Self> {
        let p = CampaignPatch::parse(v)?;
        Ok(CampaignInput {
            name: p.name.ok_or("name: required")?,
            template_id: p.template_id.ok_or("template_id: required")?,
            variables_mapping: p.variables_mapping.unwrap_or_default(),
            audience: p.audience.unwrap_or_default(),
            phone_number_id: p.phone_number_id.flatten(),
            scheduled_at: p.scheduled_at.flatten(),
            send_window: p.send_window.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_body_parses() {
        let l = Uuid::now_v7();
        let s = Uuid::now_v7();
        let t = Uuid::now_v7();
        let c = CampaignInput::parse(&json!({
            "name": "Spring", "template_id": t,
            "variables_mapping": {"1": {"field": "customer.first_name", "fallback": "friend"}, "2": {"text": "SPRING10"}},
            "audience": {"include": [{"type": "list", "id": l}, {"type": "segment", "id": s}], "exclude": [{"type": "list", "id": s}]},
            "scheduled_at": "2026-05-01T15:00:00Z",
            "send_window": {"start": "09:00", "end": "21:00", "timezone": "America/Mexico_City"}
        }))
        .unwrap();
        assert_eq!(c.audience.ids(true, SetKind::List), vec![l]);
        assert_eq!(c.audience.ids(false, SetKind::List), vec![s]);
        assert_eq!(
            c.variables_mapping["1"].value(|_| None),
            Some("friend".into())
        );
        assert_eq!(
            c.variables_mapping["1"].value(|_| Some("Ana".into())),
            Some("Ana".into())
        );
        assert_eq!(
            c.variables_mapping["2"].value(|_| None),
            Some("SPRING10".into())
        );
        assert!(c.send_window.is_some());
    }

    #[test]
    fn errors_name_their_field() {
        let t = Uuid::now_v7();
        for (body, path) in [
            (json!({"template_id": t}), "name: required"),
            (json!({"name": "x"}), "template_id: required"),
            (json!({"name": "x", "template_id": "nope"}), "template_id:"),
            (
                json!({"name": "x", "template_id": t, "audience": {"include": [{"type": "tag", "id": t}]}}),
                "audience.include[0].type",
            ),
            (
                json!({"name": "x", "template_id": t, "audience": {"include": [{"type": "list"}]}}),
                "audience.include[0].id",
            ),
            (
                json!({"name": "x", "template_id": t, "variables_mapping": {"1": {"field": "order.total"}}}),
                "variables_mapping.1.field",
            ),
            (
                json!({"name": "x", "template_id": t, "scheduled_at": "tomorrow"}),
                "scheduled_at",
            ),
            (
                json!({"name": "x", "template_id": t, "send_window": {"start": "09:00", "end": "21:00", "timezone": "Nowhere"}}),
                "send_window.timezone",
            ),
            (
                json!({"name": "x", "template_id": t, "colour": "red"}),
                "colour: unknown field",
            ),
            (json!({"name": "", "template_id": t}), "name"),
        ] {
            let e = CampaignInput::parse(&body).unwrap_err();
            assert!(e.starts_with(path), "{e} / {path}");
        }
    }

    #[test]
    fn a_patch_clears_with_null() {
        let p = CampaignPatch::parse(&json!({"scheduled_at": null, "send_window": null})).unwrap();
        assert_eq!(p.scheduled_at, Some(None));
        assert_eq!(p.send_window, Some(None));
        assert_eq!(p.name, None);
    }
}
