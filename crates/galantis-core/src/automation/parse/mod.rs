//! JSON → [`Flow`]: shapes and values checked, every failure recorded with
//! its path and node. Completeness (a missing template, an unconnected
//! node) is left to `validate`, so drafts always save.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use super::condition::{Group, GroupOp};
use super::*;

/// Nesting limit of condition groups.
const MAX_DEPTH: usize = 5;
const MAX_RULES: usize = 50;
const MAX_TEXT: usize = 1024;

struct Ctx<'a> {
    errors: &'a mut Vec<FlowError>,
    node: Option<String>,
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FlowError {
            path: path.into(),
            node_id: self.node.clone(),
            message: message.into(),
        });
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for k in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.err(
                format!("{path}.{k}"),
                format!("unknown key; expected {}", allowed.join(", ")),
            );
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(super) fn parse_flow(v: &Value, errors: &mut Vec<FlowError>) -> Option<Flow> {
    let mut cx = Ctx { errors, node: None };
    let Some(obj) = v.as_object() else {
        cx.err("flow", "expected an object with `nodes` and `edges`");
        return None;
    };
    cx.unknown_keys(obj, "flow", &["nodes", "edges"]);
    let Some(nodes) = obj.get("nodes").and_then(Value::as_array) else {
        cx.err("nodes", "expected a list of nodes");
        return None;
    };
    let edges = match obj.get("edges") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            cx.err("edges", "expected a list of edges");
            return None;
        }
    };
    if nodes.len() > MAX_NODES {
        cx.err("nodes", format!("at most {MAX_NODES} nodes are allowed"));
        return None;
    }
    if edges.len() > 3 * MAX_NODES {
        cx.err(
            "edges",
            format!("at most {} edges are allowed", 3 * MAX_NODES),
        );
        return None;
    }
    let mut out = Vec::with_capacity(nodes.len());
    let mut seen = HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let path = format!("nodes[{i}]");
        cx.node = None;
        if let Some(node) = parse_node(&mut cx, n, &path) {
            if !seen.insert(node.id.clone()) {
                cx.err(format!("{path}.id"), "duplicate node id");
                continue;
            }
            out.push(node);
        }
    }
    cx.node = None;
    let kinds: BTreeMap<&str, bool> = out
        .iter()
        .map(|n| (n.id.as_str(), matches!(n.kind, NodeKind::Condition(_))))
        .collect();
    let mut parsed_edges = Vec::with_capacity(edges.len());
    let mut pairs = HashSet::new();
    for (i, e) in edges.iter().enumerate() {
        let path = format!("edges[{i}]");
        let Some(o) = e.as_object() else {
            cx.err(path, "expected an object with `from` and `to`");
            continue;
        };
        cx.unknown_keys(o, &path, &["id", "from", "to", "branch"]);
        let end = |cx: &mut Ctx<'_>, key: &str| -> Option<String> {
            match o.get(key).and_then(Value::as_str) {
                Some(id) if kinds.contains_key(id) => Some(id.to_owned()),
                Some(id) => {
                    cx.err(format!("{path}.{key}"), format!("no node \"{}\"", clip(id)));
                    None
                }
                None => {
                    cx.err(format!("{path}.{key}"), "required (a node id)");
                    None
                }
            }
        };
        let from = end(&mut cx, "from");
        let to = end(&mut cx, "to");
        let branch = match o.get("branch") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" => Some(BranchLabel::Yes),
                "no" | "false" => Some(BranchLabel::No),
                _ => {
                    cx.err(format!("{path}.branch"), "expected \"yes\" or \"no\"");
                    continue;
                }
            },
            Some(_) => {
                cx.err(format!("{path}.branch"), "expected \"yes\" or \"no\"");
                continue;
            }
        };
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        let from_condition = kinds[from.as_str()];
        if from_condition && branch.is_none() {
            cx.node = Some(from.clone());
            cx.err(
                format!("{path}.branch"),
                "an edge leaving a condition needs `branch`: \"yes\" or \"no\"",
            );
            cx.node = None;
            continue;
        }
        if !from_condition && branch.is_some() {
            cx.node = Some(from.clone());
            cx.err(
                format!("{path}.branch"),
                "only edges leaving a condition have a branch",
            );
            cx.node = None;
            continue;
        }
        if !pairs.insert((from.clone(), branch)) {
            cx.node = Some(from.clone());
            let what = match branch {
                Some(b) => format!(
                    "the {} branch of this condition is already connected",
                    b.as_str()
                ),
                None => "this node already has an outgoing edge".to_owned(),
            };
            cx.err(path, what);
            cx.node = None;
            continue;
        }
        parsed_edges.push(Edge { from, to, branch });
    }
    Some(Flow {
        nodes: out,
        edges: parsed_edges,
    })
}

mod rules;
use rules::parse_group;

const COMMON: [&str; 3] = ["id", "type", "position"];

fn parse_node(cx: &mut Ctx<'_>, v: &Value, path: &str) -> Option<Node> {
    let Some(o) = v.as_object() else {
        cx.err(path, "expected an object with `id` and `type`");
        return None;
    };
    let id = match o.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => s.clone(),
        _ => {
            cx.err(
                format!("{path}.id"),
                "required (a text of 1 to 64 characters)",
            );
            return None;
        }
    };
    cx.node = Some(id.clone());
    let position = match o.get("position") {
        None | Some(Value::Null) => None,
        Some(p) => match serde_json::from_value::<Position>(p.clone()) {
            Ok(p) if p.x.is_finite() && p.y.is_finite() => Some(p),
            _ => {
                cx.err(
                    format!("{path}.position"),
                    "expected {\"x\": number, \"y\": number}",
                );
                None
            }
        },
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed: &[&str] = match ty {
        "trigger" => &["trigger", "tag", "segment_id", "list_id"],
        "delay" => &["amount", "unit"],
        "condition" => &["group"],
        "action" => &["template_id", "variables"],
        other => {
            cx.err(
                format!("{path}.type"),
                format!(
                    "unknown node type `{}`; expected trigger, delay, condition or action",
                    clip(other)
                ),
            );
            return None;
        }
    };
    let all: Vec<&str> = COMMON.iter().chain(allowed).copied().collect();
    cx.unknown_keys(o, path, &all);
    let kind = match ty {
        "trigger" => NodeKind::Trigger(parse_trigger(cx, o, path)?),
        "delay" => NodeKind::Delay(DelayNode {
            span: parse_span(cx, o, path)?,
        }),
        "condition" => {
            let g = o.get("group").unwrap_or(&Value::Null);
            let group = if g.is_null() {
                Group {
                    op: GroupOp::And,
                    rules: Vec::new(),
                }
            } else {
                parse_group(cx, g, &format!("{path}.group"), 0)?
            };
            NodeKind::Condition(ConditionNode { group })
        }
        _ => NodeKind::Action(parse_action(cx, o, path)?),
    };
    Some(Node { id, position, kind })
}

fn opt_uuid(
    cx: &mut Ctx<'_>,
    o: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Uuid>, ()> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if Uuid::parse_str(s.trim()).is_ok() => {
            Ok(Uuid::parse_str(s.trim()).ok())
        }
        Some(_) => {
            cx.err(format!("{path}.{key}"), "expected an id (UUID)");
            Err(())
        }
    }
}

fn opt_text(
    cx: &mut Ctx<'_>,
    o: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ()> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
        Some(_) => {
            cx.err(
                format!("{path}.{key}"),
                format!("expected text of at most {MAX_TEXT} characters"),
            );
            Err(())
        }
    }
}

fn parse_trigger(cx: &mut Ctx<'_>, o: &Map<String, Value>, path: &str) -> Option<TriggerNode> {
    let trigger = match o.get("trigger").and_then(Value::as_str) {
        Some(s) => match TriggerKind::parse(s) {
            Some(k) => k,
            None => {
                let all: Vec<&str> = TriggerKind::ALL.iter().map(|k| k.as_str()).collect();
                cx.err(
                    format!("{path}.trigger"),
                    format!(
                        "unknown trigger `{}`; expected one of {}",
                        clip(s),
                        all.join(", ")
                    ),
                );
                return None;
            }
        },
        None => {
            cx.err(
                format!("{path}.trigger"),
                "required (one of the nine triggers)",
            );
            return None;
        }
    };
    let tag = opt_text(cx, o, "tag", path).ok()?.map(|t| t.to_lowercase());
    let segment_id = opt_uuid(cx, o, "segment_id", path).ok()?;
    let list_id = opt_uuid(cx, o, "list_id", path).ok()?;
    for (key, given, wanted) in [
        ("tag", tag.is_some(), TriggerKind::CustomerTagged),
        (
            "segment_id",
            segment_id.is_some(),
            TriggerKind::UserAddedToSegment,
        ),
        ("list_id", list_id.is_some(), TriggerKind::UserAddedToList),
    ] {
        if given && trigger != wanted {
            cx.err(
                format!("{path}.{key}"),
                format!("`{key}` is only for the {wanted} trigger"),
            );
        }
    }
    Some(TriggerNode {
        trigger,
        tag,
        segment_id,
        list_id,
    })
}

/// `amount` (1 or more) and `unit` (minutes, hours, days) of `o`.
fn parse_span(cx: &mut Ctx<'_>, o: &Map<String, Value>, path: &str) -> Option<Span> {
    let unit = match o
        .get("unit")
        .and_then(Value::as_str)
        .and_then(DelayUnit::parse)
    {
        Some(u) => u,
        None => {
            cx.err(
                format!("{path}.unit"),
                "expected \"minutes\", \"hours\" or \"days\"",
            );
            return None;
        }
    };
    let max = match unit {
        DelayUnit::Minutes => MAX_DELAY_DAYS * 24 * 60,
        DelayUnit::Hours => MAX_DELAY_DAYS * 24,
        DelayUnit::Days => MAX_DELAY_DAYS,
    };
    match o.get("amount").and_then(Value::as_i64) {
        Some(n) if (1..=max).contains(&n) => Some(Span {
            amount: n as u32,
            unit,
        }),
        _ => {
            cx.err(
                format!("{path}.amount"),
                format!(
                    "expected a whole number of {} from 1 to {max}",
                    unit.as_str()
                ),
            );
            None
        }
    }
}

fn parse_action(cx: &mut Ctx<'_>, o: &Map<String, Value>, path: &str) -> Option<ActionNode> {
    let template_id = opt_uuid(cx, o, "template_id", path).ok()?;
    let mut variables = BTreeMap::new();
    match o.get("variables") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, spec) in vars {
                let vpath = format!("{path}.variables.{name}");
                if name.is_empty() || name.len() > 64 {
                    cx.err(&vpath, "a variable name has 1 to 64 characters");
                    continue;
                }
                if let Some(s) = parse_variable(cx, spec, &vpath) {
                    variables.insert(name.clone(), s);
                }
            }
        }
        Some(_) => {
            cx.err(
                format!("{path}.variables"),
                "expected an object {\"1\": {\"source\": …}}",
            );
            return None;
        }
    }
    Some(ActionNode {
        template_id,
        variables,
    })
}

fn parse_variable(cx: &mut Ctx<'_>, v: &Value, path: &str) -> Option<VariableSource> {
    let Some(o) = v.as_object() else {
        cx.err(
            path,
            "expected {\"source\": FIELD, \"fallback\"?: TEXT} or {\"static\": TEXT}",
        );
        return None;
    };
    if o.contains_key("static") {
        cx.unknown_keys(o, path, &["static"]);
        return match o.get("static") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_TEXT => {
                Some(VariableSource::Static(s.clone()))
            }
            _ => {
                cx.err(format!("{path}.static"), "expected non-empty text");
                None
            }
        };
    }
    cx.unknown_keys(o, path, &["source", "fallback"]);
    let source = match o.get("source").and_then(Value::as_str).map(str::trim) {
        Some(s) if VARIABLE_SOURCES.contains(&s) => s.to_owned(),
        other => {
            cx.err(
                format!("{path}.source"),
                format!(
                    "`{}` is not a value source; expected one of {}",
                    clip(other.unwrap_or("")),
                    VARIABLE_SOURCES.join(", ")
                ),
            );
            return None;
        }
    };
    let fallback = opt_text(cx, o, "fallback", path).ok()?;
    Some(VariableSource::Field { source, fallback })
}
