//! WhatsApp message templates: lifecycle, local validation of components
//! and limits (design.md §4 "Templates"), and the parameters a send must
//! give. Checked before submission and before every send, so a 132000
//! (parameter count) never reaches Meta from us.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// DRAFT → PENDING_APPROVAL → APPROVED | REJECTED; later PAUSED or DISABLED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateStatus {
    Draft,
    PendingApproval,
    Approved,
    Rejected,
    Paused,
    Disabled,
}

impl TemplateStatus {
    pub const ALL: [TemplateStatus; 6] = [
        TemplateStatus::Draft,
        TemplateStatus::PendingApproval,
        TemplateStatus::Approved,
        TemplateStatus::Rejected,
        TemplateStatus::Paused,
        TemplateStatus::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Draft => "DRAFT",
            TemplateStatus::PendingApproval => "PENDING_APPROVAL",
            TemplateStatus::Approved => "APPROVED",
            TemplateStatus::Rejected => "REJECTED",
            TemplateStatus::Paused => "PAUSED",
            TemplateStatus::Disabled => "DISABLED",
        }
    }

    /// Meta's status names (`PENDING`, `REINSTATED`, …) to ours; `None`
    /// for states Galantis does not track (`PENDING_DELETION`, …).
    pub fn from_meta(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PENDING" | "PENDING_APPROVAL" | "IN_APPEAL" => TemplateStatus::PendingApproval,
            "APPROVED" | "REINSTATED" => TemplateStatus::Approved,
            "REJECTED" => TemplateStatus::Rejected,
            "PAUSED" => TemplateStatus::Paused,
            "DISABLED" => TemplateStatus::Disabled,
            "DRAFT" => TemplateStatus::Draft,
            _ => return None,
        })
    }

    /// Only drafts and rejected templates may be edited (then resubmitted).
    pub fn editable(self) -> bool {
        matches!(self, TemplateStatus::Draft | TemplateStatus::Rejected)
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TemplateStatus::from_meta(s).ok_or_else(|| format!("`{s}` is not a template status"))
    }
}

pub const CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];

/// A template's category (Meta's names). Marketing templates need the
/// contact's marketing consent; the others do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

impl TemplateCategory {
    pub const ALL: [TemplateCategory; 3] = [
        TemplateCategory::Marketing,
        TemplateCategory::Utility,
        TemplateCategory::Authentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "MARKETING",
            TemplateCategory::Utility => "UTILITY",
            TemplateCategory::Authentication => "AUTHENTICATION",
        }
    }
}

impl fmt::Display for TemplateCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-insensitive: Meta's list and older rows are not consistent.
impl FromStr for TemplateCategory {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TemplateCategory::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not a template category"))
    }
}

impl TryFrom<String> for TemplateCategory {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

pub const FORMATS: [&str; 5] = [
    "SINGLE_RICH_CARD",
    "MULTI_RICH_CARD",
    "SINGLE_PRODUCT_MESSAGE",
    "MULTI_PRODUCT_MESSAGE",
    "WHOLE_CATALOG",
];
pub const BODY_MAX: usize = 1024;
pub const HEADER_TEXT_MAX: usize = 60;
pub const FOOTER_MAX: usize = 60;
pub const BUTTON_LABEL_MAX: usize = 25;
pub const RICH_CARD_BUTTONS_MAX: usize = 3;
pub const CAROUSEL_CARDS_MAX: usize = 10;
pub const PRODUCTS_MAX: usize = 30;

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

fn kind(c: &Value) -> String {
    c.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

fn text(c: &Value) -> &str {
    c.get("text").and_then(Value::as_str).unwrap_or_default()
}

/// One problem found by [`validate`]: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// Positional variables must be `{{1}}…{{n}}` without gaps.
fn check_numbering(field: &str, vars: &[String], out: &mut Vec<Problem>) {
    let mut numbers: Vec<usize> = vars.iter().filter_map(|v| v.parse().ok()).collect();
    if numbers.len() != vars.len() {
        return;
    }
    numbers.sort_unstable();
    if numbers.iter().enumerate().any(|(i, n)| *n != i + 1) {
        out.push(problem(
            field,
            "positional variables must be numbered {{1}}, {{2}}, … without gaps",
        ));
    }
}

/// Checks a template's components against WhatsApp's limits. `format` is
/// the Galantis format (`SINGLE_RICH_CARD`, …; none: a plain template).
/// Returns the parameter format (`POSITIONAL` or `NAMED`) or every problem.
pub fn validate(components: &Value, format: Option<&str>) -> Result<&'static str, Vec<Problem>> {
    let mut out = Vec::new();
    let Some(list) = components.as_array().filter(|l| !l.is_empty()) else {
        return Err(vec![problem(
            "components",
            "components must be a non-empty array",
        )]);
    };
    if let Some(f) = format
        && !FORMATS.contains(&f)
    {
        out.push(problem(
            "format",
            format!(
                "unknown format `{f}`; expected one of {}",
                FORMATS.join(", ")
            ),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut all_vars: Vec<String> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let k = kind(c);
        let field = format!("components[{i}]");
        if seen.contains(&k) && k != "CAROUSEL" {
            out.push(problem(&field, format!("at most one {k} component")));
        }
        match k.as_str() {
            "HEADER" => {
                let hf = c
                    .get("format")
                    .and_then(Value::as_str)
                    .unwrap_or("TEXT")
                    .to_ascii_uppercase();
                if !["TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION", "PRODUCT"]
                    .contains(&hf.as_str())
                {
                    out.push(problem(&field, format!("unsupported header format {hf}")));
                }
                if hf == "TEXT" {
                    let t = text(c);
                    if t.is_empty() || t.chars().count() > HEADER_TEXT_MAX {
                        out.push(problem(
                            &field,
                            format!("a TEXT header needs 1 to {HEADER_TEXT_MAX} characters"),
                        ));
                    }
                    let vars = variables(t);
                    if vars.len() > 1 {
                        out.push(problem(&field, "a header may contain at most one variable"));
                    }
                    check_numbering(&field, &vars, &mut out);
                    all_vars.extend(vars);
                }
            }
            "BODY" => {
                let t = text(c);
                if t.trim().is_empty() || t.chars().count() > BODY_MAX {
                    out.push(problem(
                        &field,
                        format!("the body needs 1 to {BODY_MAX} characters"),
                    ));
                }
                let vars = variables(t);
                check_numbering(&field, &vars, &mut out);
                all_vars.extend(vars);
            }
            "FOOTER" => {
                let t = text(c);
                if t.chars().count() > FOOTER_MAX || !variables(t).is_empty() {
                    out.push(problem(
                        &field,
                        format!("a footer has at most {FOOTER_MAX} characters and no variables"),
                    ));
                }
            }
            "BUTTONS" => {
                let buttons = c.get("buttons").and_then(Value::as_array);
                let n = buttons.map_or(0, Vec::len);
                if !(1..=10).contains(&n) {
                    out.push(problem(&field, "BUTTONS needs 1 to 10 buttons"));
                }
                if format == Some("SINGLE_RICH_CARD") && n > RICH_CARD_BUTTONS_MAX {
                    out.push(problem(
                        &field,
                        format!("a rich card has at most {RICH_CARD_BUTTONS_MAX} buttons"),
                    ));
                }
                for (j, b) in buttons.into_iter().flatten().enumerate() {
                    let bf = format!("{field}.buttons[{j}]");
                    let bk = kind(b);
                    if ![
                        "QUICK_REPLY",
                        "URL",
                        "PHONE_NUMBER",
                        "COPY_CODE",
                        "OTP",
                        "FLOW",
                        "CATALOG",
                        "MPM",
                    ]
                    .contains(&bk.as_str())
                    {
                        out.push(problem(&bf, format!("unknown button type `{bk}`")));
                        continue;
                    }
                    if !["COPY_CODE", "CATALOG", "MPM"].contains(&bk.as_str()) {
                        let t = text(b);
                        if t.is_empty() || t.chars().count() > BUTTON_LABEL_MAX {
                            out.push(problem(
                                &bf,
                                format!("a button label has 1 to {BUTTON_LABEL_MAX} characters"),
                            ));
                        }
                    }
                    if bk == "URL" {
                        let url = b.get("url").and_then(Value::as_str).unwrap_or("");
                        if !(url.starts_with("https://") || url.starts_with("http://")) {
                            out.push(problem(&bf, "a URL button needs an http(s) url"));
                        }
                        if variables(url).len() > 1 {
                            out.push(problem(&bf, "a URL button has at most one variable"));
                        }
                    }
                    if bk == "PHONE_NUMBER"
                        && b.get("phone_number")
                            .and_then(Value::as_str)
                            .is_none_or(|p| crate::PhoneE164::parse(p).is_err())
                    {
                        out.push(problem(&bf, "a PHONE_NUMBER button needs an E.164 number"));
                    }
                }
            }
            "CAROUSEL" => {
                let n = c.get("cards").and_then(Value::as_array).map_or(0, Vec::len);
                if !(1..=CAROUSEL_CARDS_MAX).contains(&n) {
                    out.push(problem(
                        &field,
                        format!("a carousel has 1 to {CAROUSEL_CARDS_MAX} cards"),
                    ));
                }
            }
            "PRODUCTS" => {
                let n = c
                    .get("product_ids")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if !(1..=PRODUCTS_MAX).contains(&n) {
                    out.push(problem(
                        &field,
                        format!("a product message lists 1 to {PRODUCTS_MAX} products"),
                    ));
                }
            }
            other => out.push(problem(&field, format!("unknown component type `{other}`"))),
        }
        seen.push(k);
    }
    if !seen.iter().any(|k| k == "BODY") {
        out.push(problem("components", "a template needs a BODY component"));
    }
    if format == Some("MULTI_RICH_CARD") && !seen.iter().any(|k| k == "CAROUSEL") {
        out.push(problem(
            "components",
            "a MULTI_RICH_CARD template needs a CAROUSEL component",
        ));
    }
    let numeric = all_vars.iter().filter(|v| v.parse::<u32>().is_ok()).count();
    let param_format = if numeric == all_vars.len() {
        "POSITIONAL"
    } else if numeric == 0
        && all_vars
            .iter()
            .all(|v| v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        "NAMED"
    } else {
        out.push(problem(
            "components",
            "variables must be all positional ({{1}}) or all named ({{first_name}}: lowercase and underscores)",
        ));
        "POSITIONAL"
    };
    if out.is_empty() {
        Ok(param_format)
    } else {
        Err(out)
    }
}

/// What a send must give for each part of a template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParamSpec {
    /// Text parameters of a TEXT header.
    pub header_text: usize,
    /// A media header (`image`, `video`, `document`, `location`).
    pub header_media: Option<String>,
    pub body: usize,
    /// Per button index: its type and how many parameters it takes.
    pub buttons: Vec<(String, usize)>,
}

impl ParamSpec {
    pub fn of(components: &Value) -> Self {
        let mut spec = ParamSpec::default();
        for c in components.as_array().into_iter().flatten() {
            match kind(c).as_str() {
                "HEADER" => {
                    let hf = c
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or("TEXT")
                        .to_ascii_uppercase();
                    match hf.as_str() {
                        "TEXT" => spec.header_text = variables(text(c)).len(),
                        "PRODUCT" => {}
                        other => spec.header_media = Some(other.to_ascii_lowercase()),
                    }
                }
                "BODY" => spec.body = variables(text(c)).len(),
                "BUTTONS" => {
                    for b in c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let k = kind(b);
                        let needs = match k.as_str() {
                            "URL" => usize::from(
                                !variables(b.get("url").and_then(Value::as_str).unwrap_or(""))
                                    .is_empty(),
                            ),
                            "COPY_CODE" => 1,
                            _ => 0,
                        };
                        spec.buttons.push((k, needs));
                    }
                }
                _ => {}
            }
        }
        spec
    }

    /// Checks a send's `template.components` (Meta's send shape: `header`,
    /// `body` and `button` entries with `parameters`). Returns a sentence
    /// naming the first mismatch.
    pub fn check(&self, given: &Value) -> Result<(), String> {
        let empty = Vec::new();
        let list = match given {
            Value::Null => &empty,
            Value::Array(l) => l,
            _ => return Err("template components must be an array".into()),
        };
        let of = |t: &str| -> Vec<&Value> {
            list.iter()
                .filter(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|k| k.eq_ignore_ascii_case(t))
                })
                .collect()
        };
        let count = |c: Option<&&Value>| -> usize {
            c.and_then(|c| c.get("parameters"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let headers = of("header");
        let h = count(headers.first());
        let want_h = self.header_text + usize::from(self.header_media.is_some());
        if h != want_h {
            return Err(format!(
                "the header takes {want_h} parameter(s), {h} were given"
            ));
        }
        if let Some(kind) = &self.header_media {
            let got = headers[0]["parameters"][0]["type"]
                .as_str()
                .unwrap_or_default();
            if !got.eq_ignore_ascii_case(kind) {
                return Err(format!("the header takes a {kind} parameter, got `{got}`"));
            }
        }
        let bodies = of("body");
        let b = count(bodies.first());
        if b != self.body {
            return Err(format!(
                "the body takes {} parameter(s), {b} were given",
                self.body
            ));
        }
        for p in bodies
            .first()
            .and_then(|c| c.get("parameters"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if p.get("type").and_then(Value::as_str) == Some("text")
                && p.get("text")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t.trim().is_empty())
            {
                return Err("a body text parameter is empty".into());
            }
        }
        for (i, (bk, needs)) in self.buttons.iter().enumerate() {
            if *needs == 0 {
                continue;
            }
            let given = of("button")
                .into_iter()
                .find(|c| button_index(c) == Some(i));
            let n = count(given.as_ref());
            if n != *needs {
                return Err(format!(
                    "button {i} ({bk}) takes {needs} parameter(s), {n} were given"
                ));
            }
        }
        Ok(())
    }
}

fn button_index(c: &Value) -> Option<usize> {
    match &c["index"] {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(c: Value, f: Option<&str>) -> Vec<String> {
        validate(&c, f)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn limits_are_checked_locally() {
        assert_eq!(
            validate(&json!([{"type":"BODY","text":"Hi {{1}}"}]), None),
            Ok("POSITIONAL")
        );
        assert_eq!(
            validate(&json!([{"type":"BODY","text":"Hi {{first_name}}"}]), None),
            Ok("NAMED")
        );
        let long = "x".repeat(1025);
        assert!(!problems(json!([{"type":"BODY","text":long}]), None).is_empty());
        assert!(
            validate(&json!([{"type":"BODY","text":"x".repeat(1024)}]), None).is_ok(),
            "1,024 is allowed"
        );
        let h = "h".repeat(61);
        assert!(
            !problems(
                json!([{"type":"HEADER","format":"TEXT","text":h},{"type":"BODY","text":"b"}]),
                None
            )
            .is_empty()
        );
        assert!(
            !problems(
                json!([{"type":"HEADER","format":"TEXT","text":"{{1}} {{2}}"},{"type":"BODY","text":"b"}]),
                None
            )
            .is_empty()
        );
        assert!(
            !problems(
                json!([{"type":"BODY","text":"b"},{"type":"FOOTER","text":"f".repeat(61)}]),
                None
            )
            .is_empty()
        );
        let label = "l".repeat(26);
        assert!(
            !problems(
                json!([{"type":"BODY","text":"b"},{"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":label}]}]),
                None
            )
            .is_empty()
        );
        let four: Vec<Value> = (0..4)
            .map(|i| json!({"type":"QUICK_REPLY","text":format!("b{i}")}))
            .collect();
        let card = json!([{"type":"BODY","text":"b"},{"type":"BUTTONS","buttons":four}]);
        assert!(validate(&card, None).is_ok());
        assert!(!problems(card, Some("SINGLE_RICH_CARD")).is_empty());
        assert!(!problems(json!([{"type":"BODY","text":"{{1}} {{3}}"}]), None).is_empty());
        assert!(!problems(json!([{"type":"BODY","text":"{{1}} {{name}}"}]), None).is_empty());
        assert!(!problems(json!([{"type":"FOOTER","text":"f"}]), None).is_empty());
        assert!(!problems(json!([]), None).is_empty());
    }

    #[test]
    fn sends_must_give_the_right_parameters() {
        let t = json!([
            {"type":"HEADER","format":"IMAGE"},
            {"type":"BODY","text":"Hi {{1}}, order {{2}}"},
            {"type":"BUTTONS","buttons":[{"type":"URL","text":"Track","url":"https://x.test/{{1}}"},{"type":"QUICK_REPLY","text":"Stop"}]}
        ]);
        let spec = ParamSpec::of(&t);
        let ok = json!([
            {"type":"header","parameters":[{"type":"image","image":{"link":"https://x.test/i.png"}}]},
            {"type":"body","parameters":[{"type":"text","text":"Ana"},{"type":"text","text":"#1001"}]},
            {"type":"button","sub_type":"url","index":"0","parameters":[{"type":"text","text":"1001"}]}
        ]);
        assert_eq!(spec.check(&ok), Ok(()));
        let short = json!([
            {"type":"header","parameters":[{"type":"image","image":{"link":"https://x.test/i.png"}}]},
            {"type":"body","parameters":[{"type":"text","text":"Ana"}]},
            {"type":"button","sub_type":"url","index":0,"parameters":[{"type":"text","text":"1001"}]}
        ]);
        assert!(spec.check(&short).unwrap_err().contains("body"));
        assert!(spec.check(&Value::Null).is_err());
        let plain = ParamSpec::of(&json!([{"type":"BODY","text":"Hello"}]));
        assert_eq!(plain.check(&Value::Null), Ok(()));
    }

    #[test]
    fn statuses_from_meta() {
        assert_eq!(
            TemplateStatus::from_meta("PENDING"),
            Some(TemplateStatus::PendingApproval)
        );
        assert_eq!(
            TemplateStatus::from_meta("REINSTATED"),
            Some(TemplateStatus::Approved)
        );
        assert_eq!(TemplateStatus::from_meta("PENDING_DELETION"), None);
        for s in TemplateStatus::ALL {
            assert_eq!(s.as_str().parse::<TemplateStatus>().unwrap(), s);
        }
    }
}
