//! The send-time check of a template message's `components` against the
//! template: how many parameters each part takes (132000) and of which kind
//! (132012), reported with Meta's `details` wording.

use serde_json::Value;

use super::errors::GraphError;
use super::templates::{Template, kind_of, text_of, variables};

/// What a send must provide for one template component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// `n` text-like parameters (header or body).
    Text(usize),
    /// One media parameter of this type (`image`, `video`, `document`, `location`).
    One(String),
}

/// The parameter counts and kinds a template expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    header: Expect,
    body: usize,
    /// Per button index: how many parameters it needs (URL with a
    /// variable, COPY_CODE: 1; others: 0, though quick replies may carry a
    /// payload).
    buttons: Vec<(String, usize)>,
}

impl ParamSpec {
    pub fn of(template: &Template) -> Self {
        let mut spec = ParamSpec {
            header: Expect::Text(0),
            body: 0,
            buttons: Vec::new(),
        };
        for c in template.components.as_array().into_iter().flatten() {
            match kind_of(c).as_str() {
                "HEADER" => {
                    let format = c.get("format").and_then(Value::as_str).unwrap_or("TEXT");
                    spec.header = match format.to_ascii_uppercase().as_str() {
                        "TEXT" => Expect::Text(variables(text_of(c)).len()),
                        "PRODUCT" => Expect::Text(0),
                        other => Expect::One(other.to_ascii_lowercase()),
                    };
                }
                "BODY" => spec.body = variables(text_of(c)).len(),
                "BUTTONS" => {
                    for b in c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let kind = kind_of(b);
                        let needs = match kind.as_str() {
                            "URL" => {
                                usize::from(!variables(b["url"].as_str().unwrap_or("")).is_empty())
                            }
                            "COPY_CODE" => 1,
                            _ => 0,
                        };
                        spec.buttons.push((kind, needs));
                    }
                }
                _ => {}
            }
        }
        spec
    }

    /// Checks the `template.components` of a send request.
    pub fn check(&self, components: Option<&Value>) -> Result<(), GraphError> {
        let empty = Vec::new();
        let given = match components {
            None | Some(Value::Null) => &empty,
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(GraphError::param(
                    "The parameter template['components'] must be an array.",
                ));
            }
        };
        let of_type = |t: &'static str| {
            given.iter().filter(move |c| {
                c["type"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(t))
            })
        };
        let header = of_type("header").next();
        match (&self.header, header) {
            (Expect::Text(n), h) => {
                let params = params_of(h)?;
                mismatch("header", params.len(), *n)?;
                check_text_params("header", params)?;
            }
            (Expect::One(kind), h) => {
                let params = params_of(h)?;
                mismatch("header", params.len(), 1)?;
                let got = params[0]["type"].as_str().unwrap_or("UNKNOWN");
                if !got.eq_ignore_ascii_case(kind) {
                    return Err(GraphError::code(132012).details(format!(
                        "header: Format mismatch, expected {}, received {}",
                        kind.to_ascii_uppercase(),
                        got.to_ascii_uppercase()
                    )));
                }
            }
        }
        let body = params_of(of_type("body").next())?;
        mismatch("body", body.len(), self.body)?;
        check_text_params("body", body)?;
        let buttons: Vec<&Value> = of_type("button").collect();
        for b in &buttons {
            let index = button_index(b);
            let Some((_, needs)) = index.and_then(|i| self.buttons.get(i)) else {
                return Err(GraphError::code(131009).details(format!(
                    "buttons: button at index {} does not exist in the template",
                    b["index"]
                )));
            };
            let n = params_of(Some(b))?.len();
            let quick_reply_payload = *needs == 0
                && n == 1
                && b["sub_type"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("quick_reply"));
            if !quick_reply_payload {
                mismatch("buttons", n, *needs)?;
            }
        }
        for (i, (_, needs)) in self.buttons.iter().enumerate() {
            let given_here = buttons.iter().any(|b| button_index(b) == Some(i));
            if *needs > 0 && !given_here {
                mismatch("buttons", 0, *needs)?;
            }
        }
        Ok(())
    }
}

/// `index` of a button component: Meta documents a string ("0"), numbers
/// are tolerated.
fn button_index(b: &Value) -> Option<usize> {
    b["index"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| b["index"].as_u64().and_then(|i| usize::try_from(i).ok()))
}

fn params_of(component: Option<&Value>) -> Result<&[Value], GraphError> {
    match component.map(|c| &c["parameters"]) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(p)) => Ok(p),
        Some(_) => Err(GraphError::param(
            "The parameter parameters must be an array.",
        )),
    }
}

fn mismatch(part: &str, got: usize, want: usize) -> Result<(), GraphError> {
    if got == want {
        return Ok(());
    }
    Err(GraphError::code(132000).details(format!(
        "{part}: number of localizable_params ({got}) does not match the expected number of params ({want})"
    )))
}

fn check_text_params(part: &str, params: &[Value]) -> Result<(), GraphError> {
    for p in params {
        match p["type"].as_str() {
            Some("text") => {
                if !p["text"].is_string() {
                    return Err(GraphError::param(format!(
                        "{part}: The parameter text is required."
                    )));
                }
            }
            Some("currency" | "date_time") => {}
            other => {
                return Err(GraphError::code(132012).details(format!(
                    "{part}: Format mismatch, expected TEXT, received {}",
                    other.unwrap_or("UNKNOWN").to_ascii_uppercase()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::templates::hello_world;
    use super::*;
    use serde_json::json;

    fn template(components: Value) -> Template {
        Template {
            id: "1".into(),
            waba_id: "w".into(),
            name: "t".into(),
            language: "en".into(),
            category: "UTILITY".into(),
            status: "APPROVED".into(),
            parameter_format: "POSITIONAL".into(),
            components,
            rejected_reason: None,
        }
    }

    fn text(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"type":"text","text": format!("v{i}")}))
                .collect(),
        )
    }

    #[test]
    fn body_header_and_button_counts_are_checked() {
        let t = template(json!([
            {"type":"HEADER","format":"IMAGE"},
            {"type":"BODY","text":"Hi {{1}}, your order {{2}} shipped"},
            {"type":"BUTTONS","buttons":[
                {"type":"QUICK_REPLY","text":"Thanks"},
                {"type":"URL","text":"Track","url":"https://t.example/{{1}}"}
            ]}
        ]));
        let spec = ParamSpec::of(&t);
        let good = json!([
            {"type":"header","parameters":[{"type":"image","image":{"link":"https://x/y.png"}}]},
            {"type":"body","parameters": text(2)},
            {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"abc"}]}
        ]);
        spec.check(Some(&good)).unwrap();
        let code = |c: Value| spec.check(Some(&c)).unwrap_err().code;
        let mut short_body = good.clone();
        short_body[1]["parameters"] = text(1);
        let e = spec.check(Some(&short_body)).unwrap_err();
        assert_eq!(e.code, 132000);
        assert!(
            e.details
                .starts_with("body: number of localizable_params (1)"),
            "{}",
            e.details
        );
        let mut no_header = good.clone();
        no_header.as_array_mut().unwrap().remove(0);
        assert_eq!(code(no_header), 132000);
        let mut wrong_media = good.clone();
        wrong_media[0]["parameters"][0]["type"] = json!("video");
        assert_eq!(code(wrong_media), 132012);
        let mut no_button = good.clone();
        no_button.as_array_mut().unwrap().remove(2);
        assert_eq!(code(no_button), 132000);
        let mut bad_index = good.clone();
        bad_index[2]["index"] = json!("7");
        assert_eq!(code(bad_index), 131009);
        let mut payload = good.clone();
        payload.as_array_mut().unwrap().push(json!({"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"yes"}]}));
        spec.check(Some(&payload)).unwrap();
    }

    #[test]
    fn a_template_without_variables_takes_no_parameters() {
        let spec = ParamSpec::of(&hello_world("w", "1".into()));
        spec.check(None).unwrap();
        spec.check(Some(&json!([]))).unwrap();
        assert_eq!(
            spec.check(Some(&json!([{"type":"body","parameters": text(1)}])))
                .unwrap_err()
                .code,
            132000
        );
    }
}
