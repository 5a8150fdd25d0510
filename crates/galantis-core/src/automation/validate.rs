//! Activation validation: blocking issues (each naming its node) and
//! advisory notes.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use uuid::Uuid;

use super::condition::{Condition, Group, Rule};
use super::gate::FrequencyCap;
use super::{Flow, NodeKind, TriggerKind, VariableSource};
use crate::templates::TemplateStatus;

/// The templates an activation checks.
pub trait TemplateLookup {
    /// `None`: no such template.
    fn status(&self, id: Uuid) -> Option<TemplateStatus>;
    /// Whether it is a MARKETING template (`None`: unknown), for advice.
    fn is_marketing(&self, _id: Uuid) -> Option<bool> {
        None
    }
}

impl TemplateLookup for HashMap<Uuid, TemplateStatus> {
    fn status(&self, id: Uuid) -> Option<TemplateStatus> {
        self.get(&id).copied()
    }
}

impl TemplateLookup for std::collections::BTreeMap<Uuid, TemplateStatus> {
    fn status(&self, id: Uuid) -> Option<TemplateStatus> {
        self.get(&id).copied()
    }
}

/// One finding. `node_id` is `None` for the flow as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub node_id: Option<String>,
    /// Stable snake_case code.
    pub code: &'static str,
    pub message: String,
    /// Blocks activation; otherwise an advisory note.
    pub blocking: bool,
}

struct Out(Vec<Issue>);

impl Out {
    fn block(&mut self, node: Option<&str>, code: &'static str, message: impl Into<String>) {
        self.push(node, code, message, true);
    }
    fn advise(&mut self, node: Option<&str>, code: &'static str, message: impl Into<String>) {
        self.push(node, code, message, false);
    }
    fn push(
        &mut self,
        node: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
        blocking: bool,
    ) {
        self.0.push(Issue {
            node_id: node.map(str::to_owned),
            code,
            message: message.into(),
            blocking,
        });
    }
}

/// Validates a flow for activation. Blocking: exactly one trigger with its
/// parameter, every node reachable from it, the trigger and delays lead
/// somewhere, both branches of every condition connected, complete
/// condition logic, an `APPROVED` template on every action, a frequency
/// cap, no cycle without a delay.
pub fn validate(
    flow: &Flow,
    templates: &dyn TemplateLookup,
    cap: Option<FrequencyCap>,
) -> Vec<Issue> {
    let mut out = Out(Vec::new());
    if cap.is_none() {
        out.block(
            None,
            "frequency_cap_missing",
            "set a frequency cap (EVER, 24_HOURS, 7_DAYS, 14_DAYS or 30_DAYS)",
        );
    }
    let triggers: Vec<_> = flow.triggers().collect();
    match triggers.as_slice() {
        [] => out.block(
            None,
            "trigger_missing",
            "a flow starts with exactly one trigger node",
        ),
        [_] => {}
        [_, rest @ ..] => {
            for (n, _) in rest {
                out.block(
                    Some(&n.id),
                    "trigger_duplicate",
                    "a flow has exactly one trigger node; remove this one",
                );
            }
        }
    }
    if let Some((n, t)) = triggers.first() {
        let missing = match t.trigger {
            TriggerKind::CustomerTagged if t.tag.is_none() => {
                Some("the CUSTOMER_TAGGED trigger needs a `tag`")
            }
            TriggerKind::UserAddedToSegment if t.segment_id.is_none() => {
                Some("the USER_ADDED_TO_SEGMENT trigger needs a `segment_id`")
            }
            TriggerKind::UserAddedToList if t.list_id.is_none() => {
                Some("the USER_ADDED_TO_LIST trigger needs a `list_id`")
            }
            _ => None,
        };
        if let Some(m) = missing {
            out.block(Some(&n.id), "trigger_incomplete", m);
        }
        if flow.edges.iter().any(|e| e.to == n.id) {
            out.block(
                Some(&n.id),
                "trigger_has_incoming_edge",
                "nothing may lead back into the trigger",
            );
        }
        let reach = reachable(flow, &n.id);
        for node in &flow.nodes {
            if !reach.contains(node.id.as_str()) && !matches!(node.kind, NodeKind::Trigger(_)) {
                out.block(
                    Some(&node.id),
                    "node_unreachable",
                    "this node is not connected to the trigger",
                );
            }
        }
    }
    for node in &flow.nodes {
        let id = node.id.as_str();
        match &node.kind {
            NodeKind::Trigger(_) => {
                if flow.next(id, None).is_none() {
                    out.block(
                        Some(id),
                        "node_not_connected",
                        "connect the trigger to the first step",
                    );
                }
            }
            NodeKind::Delay(_) => {
                if flow.next(id, None).is_none() {
                    out.block(
                        Some(id),
                        "node_not_connected",
                        "a delay must lead to a next step",
                    );
                }
            }
            NodeKind::Condition(c) => {
                for (b, name) in [
                    (super::BranchLabel::Yes, "YES"),
                    (super::BranchLabel::No, "NO"),
                ] {
                    if flow.next(id, Some(b)).is_none() {
                        out.block(
                            Some(id),
                            "branch_missing",
                            format!("connect the {name} branch"),
                        );
                    }
                }
                if let Some(m) = incomplete(&c.group) {
                    out.block(Some(id), "condition_incomplete", m);
                }
            }
            NodeKind::Action(a) => {
                match a.template_id {
                    None => out.block(
                        Some(id),
                        "template_missing",
                        "choose the template this step sends",
                    ),
                    Some(t) => match templates.status(t) {
                        Some(TemplateStatus::Approved) => {}
                        Some(s) => out.block(
                            Some(id),
                            "template_not_approved",
                            format!("the template is {s}; only APPROVED templates can be sent"),
                        ),
                        None => out.block(
                            Some(id),
                            "template_not_found",
                            "the template does not exist",
                        ),
                    },
                }
                for (name, v) in &a.variables {
                    if let VariableSource::Field {
                        source,
                        fallback: None,
                    } = v
                    {
                        out.advise(Some(id), "variable_without_fallback", format!("variable {name} ({source}) has no fallback; the step fails for customers without it"));
                    }
                }
            }
        }
    }
    for cyc in cycles_without_delay(flow) {
        out.block(
            Some(&cyc),
            "cycle_without_delay",
            "this step is part of a loop without a delay",
        );
    }
    advise(flow, templates, &mut out);
    out.0
}

fn reachable<'a>(flow: &'a Flow, from: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        for e in flow.edges_from(n) {
            if seen.insert(e.to.as_str()) {
                queue.push_back(e.to.as_str());
            }
        }
    }
    seen
}

fn incomplete(g: &Group) -> Option<String> {
    if g.rules.is_empty() {
        return Some("add at least one condition to every group".into());
    }
    g.rules.iter().find_map(|r| match r {
        Rule::Group(sub) => incomplete(sub),
        Rule::Condition(Condition::UserReplyStatus { window: None, .. }) => {
            Some("USER_REPLY_STATUS needs a `window` (how long to wait for a reply)".into())
        }
        Rule::Condition(_) => None,
    })
}

fn waits(g: &Group) -> bool {
    g.rules.iter().any(|r| match r {
        Rule::Group(sub) => waits(sub),
        Rule::Condition(c) => matches!(
            c,
            Condition::UserReplyStatus { .. } | Condition::MessageDeliveryStatus { .. }
        ),
    })
}

/// One node of each cycle among non-delay nodes (Tarjan-free: a DFS with
/// colours over the graph without delays).
fn cycles_without_delay(flow: &Flow) -> Vec<String> {
    let is_delay = |id: &str| matches!(flow.node(id).map(|n| &n.kind), Some(NodeKind::Delay(_)));
    let ids: Vec<&str> = flow
        .nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| !is_delay(id))
        .collect();
    let mut colour: HashMap<&str, u8> = ids.iter().map(|id| (*id, 0u8)).collect();
    let mut found = BTreeSet::new();
    for start in &ids {
        if colour[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next edge index).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        colour.insert(start, 1);
        while let Some((n, i)) = stack.pop() {
            let succ: Vec<&str> = flow
                .edges_from(n)
                .map(|e| e.to.as_str())
                .filter(|t| !is_delay(t))
                .collect();
            if i < succ.len() {
                stack.push((n, i + 1));
                let t = succ[i];
                match colour.get(t).copied() {
                    Some(0) => {
                        colour.insert(t, 1);
                        stack.push((t, 0));
                    }
                    Some(1) => {
                        found.insert(t.to_owned());
                    }
                    _ => {}
                }
            } else {
                colour.insert(n, 2);
            }
        }
    }
    found.into_iter().collect()
}

fn advise(flow: &Flow, templates: &dyn TemplateLookup, out: &mut Out) {
    if !flow
        .nodes
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Action(_)))
    {
        out.advise(None, "no_action", "this flow sends no message");
    }
    let Some((t, trig)) = flow.trigger() else {
        return;
    };
    // Marketing sent right after a purchase or sign-up reads as spam.
    if matches!(
        trig.trigger,
        TriggerKind::OrderPlaced | TriggerKind::CustomerCreated | TriggerKind::AbandonedCheckout
    ) {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([t.id.as_str()]);
        while let Some(n) = queue.pop_front() {
            if !seen.insert(n) {
                continue;
            }
            match flow.node(n).map(|x| &x.kind) {
                Some(NodeKind::Delay(_)) => continue,
                Some(NodeKind::Action(a))
                    if a.template_id.and_then(|id| templates.is_marketing(id)) == Some(true) =>
                {
                    out.advise(Some(n), "no_delay_before_marketing", format!("this marketing message goes out the moment {} fires; a delay usually converts better", trig.trigger));
                }
                _ => {}
            }
            queue.extend(flow.edges_from(n).map(|e| e.to.as_str()));
        }
    }
    // A reply or delivery condition before any message has nothing to read.
    let after_action: BTreeSet<&str> = flow
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Action(_)))
        .flat_map(|n| reachable(flow, &n.id))
        .collect();
    for n in &flow.nodes {
        if let NodeKind::Condition(c) = &n.kind
            && waits(&c.group)
            && !after_action.contains(n.id.as_str())
        {
            out.advise(Some(&n.id), "condition_before_message", "this condition reads the reply or status of the flow's last message, but no message is sent before it");
        }
    }
}
