//! The engine as a pure function: `(flow, run state, input, facts, now) →
//! (new state, effects)`. The server performs the effects in one tenant
//! transaction with the new state, so a retried job recomputes the same
//! step and its idempotency keys make the effects happen once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::condition::{Awaited, Truth, evaluate_group};
pub use super::facts::{Facts, LastMessage, Reply, RunEvent};
use super::{BranchLabel, Flow, NodeKind, VariableSource};
use crate::MessageStatus;
use crate::templates::TemplateStatus;

/// A run visits at most this many nodes in its life (a flow looping
/// through a delay ends, `FAILED`, when it reaches the limit).
pub const MAX_STEPS: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Active,
    Waiting,
    Completed,
    Failed,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Active => "ACTIVE",
            RunStatus::Waiting => "WAITING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
            RunStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunStatus::Active,
            RunStatus::Waiting,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Skipped,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Skipped
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitKind {
    Delay,
    Event { awaited: Awaited },
}

/// What a waiting run waits for, at which node, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    pub node: String,
    pub visit: u32,
    pub until: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: WaitKind,
}

/// A run's position; stored as JSON with the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub status: RunStatus,
    /// The node the run is at (waiting) or ended at.
    pub node: Option<String>,
    /// When the run reached `node`.
    pub reached_at: Option<DateTime<Utc>>,
    pub wait: Option<Wait>,
    /// Visits per node (the `visit` of effects).
    #[serde(default)]
    pub visits: BTreeMap<String, u32>,
    /// Nodes visited since the last delay (a second visit is a cycle
    /// without a delay: the run fails instead of looping).
    #[serde(default)]
    pub since_delay: Vec<String>,
    /// Node visits so far (at most [`MAX_STEPS`]).
    #[serde(default)]
    pub steps: u32,
}

impl Default for RunState {
    fn default() -> Self {
        Self::new()
    }
}

impl RunState {
    /// A run that has not started.
    pub fn new() -> Self {
        RunState {
            status: RunStatus::Active,
            node: None,
            reached_at: None,
            wait: None,
            visits: BTreeMap::new(),
            since_delay: Vec::new(),
            steps: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Enrolled: enter the trigger node.
    Start,
    /// The delay job of `node` ran.
    DelayElapsed { node: String },
    /// A reply or a status for the run's last message arrived.
    EventArrived(RunEvent),
    /// The window job of the condition `node` ran.
    WindowElapsed { node: String },
}

/// What the server must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The run reached a node: activity `PENDING`.
    Enter { node: String, visit: u32 },
    /// A trigger or an elapsed delay: activity `COMPLETED`.
    Passed { node: String, visit: u32 },
    /// A delay: a job at `at` (unique per run, node and visit); activity
    /// `SCHEDULED`. Repeated when a delay job runs early.
    WaitUntil {
        node: String,
        visit: u32,
        at: DateTime<Utc>,
    },
    /// A condition waits for `what` or `until`, whichever comes first: a
    /// window job at `until` and the run indexed by contact and `what`;
    /// activity `SCHEDULED`. Repeated (same node and visit) when still
    /// undecided after an event or an early window job: reschedule.
    WaitForEvent {
        node: String,
        visit: u32,
        until: DateTime<Utc>,
        what: Awaited,
    },
    /// A condition's decision: activity `COMPLETED`.
    Branch { node: String, visit: u32, yes: bool },
    /// Queue the template (idempotency key per run, node and visit);
    /// variables in order (`"1"`, `"2"`, … numerically). Activity
    /// `COMPLETED` with the message id.
    Send {
        node: String,
        visit: u32,
        template_id: Uuid,
        variables: Vec<(String, String)>,
    },
    /// Activity `SKIPPED` with `reason`; the run ends `SKIPPED`.
    Skip {
        node: String,
        visit: u32,
        reason: String,
    },
    /// Activity `FAILED` with `reason`; the run ends `FAILED`.
    Fail {
        node: String,
        visit: u32,
        reason: String,
    },
    /// The run ends `COMPLETED`.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: RunState,
    pub effects: Vec<Effect>,
}

impl Step {
    /// Whether the step queues a message.
    pub fn sends(&self) -> bool {
        self.effects
            .iter()
            .any(|e| matches!(e, Effect::Send { .. }))
    }
}

/// One transition of a run.
pub fn step(
    flow: &Flow,
    state: &RunState,
    input: Input,
    facts: &Facts,
    now: DateTime<Utc>,
) -> Step {
    let mut s = state.clone();
    let mut fx = Vec::new();
    let mut facts = facts.clone();
    if s.status.is_terminal() {
        return Step {
            state: s,
            effects: fx,
        };
    }
    let next = match input {
        Input::Start => {
            if s.steps > 0 || s.node.is_some() {
                return Step {
                    state: s,
                    effects: fx,
                };
            }
            match flow.trigger() {
                Some((n, _)) => Some(n.id.clone()),
                None => {
                    fx.push(Effect::Fail {
                        node: String::new(),
                        visit: 0,
                        reason: "no_trigger".into(),
                    });
                    s.status = RunStatus::Failed;
                    return Step {
                        state: s,
                        effects: fx,
                    };
                }
            }
        }
        Input::DelayElapsed { node } => {
            let Some(w) = s.wait.clone() else {
                return Step {
                    state: s,
                    effects: fx,
                };
            };
            if w.node != node || w.kind != WaitKind::Delay {
                return Step {
                    state: s,
                    effects: fx,
                };
            }
            if now < w.until {
                fx.push(Effect::WaitUntil {
                    node: w.node,
                    visit: w.visit,
                    at: w.until,
                });
                return Step {
                    state: s,
                    effects: fx,
                };
            }
            s.wait = None;
            s.status = RunStatus::Active;
            s.since_delay.clear();
            fx.push(Effect::Passed {
                node: w.node.clone(),
                visit: w.visit,
            });
            flow.next(&w.node, None).map(str::to_owned)
        }
        Input::EventArrived(_) | Input::WindowElapsed { .. } => {
            let Some(w) = s.wait.clone() else {
                return Step {
                    state: s,
                    effects: fx,
                };
            };
            let WaitKind::Event { .. } = w.kind else {
                return Step {
                    state: s,
                    effects: fx,
                };
            };
            match &input {
                Input::WindowElapsed { node } if *node != w.node => {
                    return Step {
                        state: s,
                        effects: fx,
                    };
                }
                Input::EventArrived(ev) => facts.absorb(ev),
                _ => {}
            }
            let Some(NodeKind::Condition(c)) = flow.node(&w.node).map(|n| &n.kind) else {
                return fail(s, fx, &w.node, w.visit, "node_missing");
            };
            let reached = s.reached_at.unwrap_or(now);
            match evaluate_group(&c.group, &facts, reached, now) {
                Truth::Unknown { until, awaited } => {
                    s.wait = Some(Wait {
                        node: w.node.clone(),
                        visit: w.visit,
                        until,
                        kind: WaitKind::Event { awaited },
                    });
                    fx.push(Effect::WaitForEvent {
                        node: w.node,
                        visit: w.visit,
                        until,
                        what: awaited,
                    });
                    return Step {
                        state: s,
                        effects: fx,
                    };
                }
                t => {
                    s.wait = None;
                    s.status = RunStatus::Active;
                    let label = branch(&mut fx, &w.node, w.visit, t == Truth::True);
                    flow.next(&w.node, Some(label)).map(str::to_owned)
                }
            }
        }
    };
    run_from(flow, s, fx, next, &mut facts, now)
}

fn branch(fx: &mut Vec<Effect>, node: &str, visit: u32, yes: bool) -> BranchLabel {
    fx.push(Effect::Branch {
        node: node.to_owned(),
        visit,
        yes,
    });
    if yes {
        BranchLabel::Yes
    } else {
        BranchLabel::No
    }
}

fn fail(mut s: RunState, mut fx: Vec<Effect>, node: &str, visit: u32, reason: &str) -> Step {
    fx.push(Effect::Fail {
        node: node.to_owned(),
        visit,
        reason: reason.to_owned(),
    });
    s.status = RunStatus::Failed;
    s.wait = None;
    Step {
        state: s,
        effects: fx,
    }
}

/// Walks from `cur` until a wait or the end.
fn run_from(
    flow: &Flow,
    mut s: RunState,
    mut fx: Vec<Effect>,
    mut cur: Option<String>,
    facts: &mut Facts,
    now: DateTime<Utc>,
) -> Step {
    while let Some(id) = cur.take() {
        let visit = s.visits.get(&id).copied().unwrap_or(0) + 1;
        if s.steps >= MAX_STEPS {
            return fail(s, fx, &id, visit, "too_many_steps");
        }
        if s.since_delay.contains(&id) {
            return fail(s, fx, &id, visit, "cycle_without_delay");
        }
        let Some(node) = flow.node(&id) else {
            return fail(s, fx, &id, visit, "node_missing");
        };
        s.visits.insert(id.clone(), visit);
        s.steps += 1;
        s.since_delay.push(id.clone());
        s.node = Some(id.clone());
        s.reached_at = Some(now);
        fx.push(Effect::Enter {
            node: id.clone(),
            visit,
        });
        match &node.kind {
            NodeKind::Trigger(_) => {
                fx.push(Effect::Passed {
                    node: id.clone(),
                    visit,
                });
                cur = flow.next(&id, None).map(str::to_owned);
            }
            NodeKind::Delay(d) => {
                let at = now + d.span.duration();
                s.wait = Some(Wait {
                    node: id.clone(),
                    visit,
                    until: at,
                    kind: WaitKind::Delay,
                });
                s.status = RunStatus::Waiting;
                fx.push(Effect::WaitUntil {
                    node: id,
                    visit,
                    at,
                });
                return Step {
                    state: s,
                    effects: fx,
                };
            }
            NodeKind::Condition(c) => match evaluate_group(&c.group, facts, now, now) {
                Truth::Unknown { until, awaited } => {
                    s.wait = Some(Wait {
                        node: id.clone(),
                        visit,
                        until,
                        kind: WaitKind::Event { awaited },
                    });
                    s.status = RunStatus::Waiting;
                    fx.push(Effect::WaitForEvent {
                        node: id,
                        visit,
                        until,
                        what: awaited,
                    });
                    return Step {
                        state: s,
                        effects: fx,
                    };
                }
                t => {
                    let label = branch(&mut fx, &id, visit, t == Truth::True);
                    cur = flow.next(&id, Some(label)).map(str::to_owned);
                }
            },
            NodeKind::Action(a) => {
                if !facts.consent.allows_marketing() {
                    fx.push(Effect::Skip {
                        node: id,
                        visit,
                        reason: format!("consent_{}", facts.consent.as_str().to_ascii_lowercase()),
                    });
                    s.status = RunStatus::Skipped;
                    return Step {
                        state: s,
                        effects: fx,
                    };
                }
                let Some(template_id) = a.template_id else {
                    return fail(s, fx, &id, visit, "template_missing");
                };
                match facts.templates.get(&template_id) {
                    Some(TemplateStatus::Approved) => {}
                    Some(st) => {
                        let reason = format!("template_{}", st.as_str().to_ascii_lowercase());
                        return fail(s, fx, &id, visit, &reason);
                    }
                    None => return fail(s, fx, &id, visit, "template_not_found"),
                }
                let variables = match resolve(&a.variables, &facts.values) {
                    Ok(v) => v,
                    Err(name) => {
                        let reason = format!("variable_missing:{name}");
                        return fail(s, fx, &id, visit, &reason);
                    }
                };
                fx.push(Effect::Send {
                    node: id.clone(),
                    visit,
                    template_id,
                    variables,
                });
                // Later conditions of this step read this send.
                facts.last_message = Some(LastMessage {
                    message_id: None,
                    sent_at: now,
                    status: MessageStatus::Queued,
                });
                facts.replies.clear();
                cur = flow.next(&id, None).map(str::to_owned);
            }
        }
    }
    s.status = RunStatus::Completed;
    s.wait = None;
    fx.push(Effect::Complete);
    Step {
        state: s,
        effects: fx,
    }
}

/// Resolves an action's variables, numerically ordered; the name of the
/// first without a value nor a fallback is the error.
pub(crate) fn resolve(
    vars: &BTreeMap<String, VariableSource>,
    values: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(vars.len());
    for (name, src) in vars {
        let v = match src {
            VariableSource::Static(t) => t.clone(),
            VariableSource::Field { source, fallback } => {
                match values
                    .get(source)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                {
                    Some(v) => v.to_owned(),
                    None => fallback.clone().ok_or_else(|| name.clone())?,
                }
            }
        };
        out.push((name.clone(), v));
    }
    out.sort_by(|a, b| (a.0.parse::<u64>().ok(), &a.0).cmp(&(b.0.parse::<u64>().ok(), &b.0)));
    Ok(out)
}
