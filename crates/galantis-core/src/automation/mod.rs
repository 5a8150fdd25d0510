//! Automations (flows): the typed model of a flow graph parsed from JSON,
//! activation validation, the enrolment gate, recipes and the engine itself
//! as a pure step function. No IO: the server loads facts, calls [`step`]
//! and performs the [`Effect`]s it returns, each batch in one tenant
//! transaction; the store keeps automations, versions, runs and activity.
//!
//! # API for the server engine and the HTTP API
//!
//! - **Parse**: [`Flow::parse`]`(&serde_json::Value) -> Result<Flow, FlowErrors>`.
//!   Every error carries its JSON path (`nodes[2].amount`) and names the
//!   node (`node "d1": …`); unknown node types and unknown keys are errors
//!   (map to 422). A draft may be incomplete (a trigger without its tag, an
//!   action without a template, a condition group without rules): that is
//!   for [`validate`], never for the parser, so saving is never blocked by
//!   incompleteness. [`FrequencyCap`] and [`Exclusion`] are serde types
//!   (`"24_HOURS"`, `{"type":"list","id":…}`).
//! - **Validate** (at activation): [`validate`]`(&Flow, &dyn TemplateLookup,
//!   Option<FrequencyCap>) -> Vec<Issue>`; refuse activation when any
//!   `issue.blocking` (422 `automation_invalid` with `{node_id, code,
//!   message}`); non-blocking issues are advisory notes to show.
//!   `HashMap<Uuid, TemplateStatus>` implements [`TemplateLookup`].
//! - **Triggers**: [`trigger_fact`]`(&DomainEvent, event_id, occurred_at) ->
//!   Option<TriggerFact>` maps a recorded event to the trigger it fires,
//!   who it is about ([`Audience`]: a contact, the contact of an order, or
//!   the subscribers of a variant), the enrolment key
//!   ([`TriggerFact::key`], unique per automation and contact) and the
//!   variables it carries. [`TriggerNode::matches`] says whether a flow's
//!   trigger (with its tag/segment/list parameter) accepts the fact; the
//!   subscriber also drops facts with `occurred_at` before activation.
//! - **Gate** (before enrolling): [`gate`]`(consent, cap, last_enrolled_at,
//!   excluded, now) -> Result<(), GateRefusal>`, in the order consent →
//!   cap (rolling) → exclusions; [`GateRefusal::code`] is the logged reason.
//! - **Step**: [`step`]`(&Flow, &RunState, Input, &Facts, now) -> Step
//!   {state, effects}`. Start a run with [`RunState::new`] and
//!   [`Input::Start`]; wake it with [`Input::DelayElapsed`] (the delay job),
//!   [`Input::EventArrived`] (an inbound reply or a status of the run's last
//!   message) or [`Input::WindowElapsed`] (the condition's window job). A
//!   stale or early wake-up changes nothing (an early delay re-emits its
//!   [`Effect::WaitUntil`]). [`Facts`] hold what conditions and variables
//!   read, loaded by the server for the run's contact: consent (re-checked
//!   at every action: not `SUBSCRIBED` → [`Effect::Skip`]), the statuses of
//!   the flow's templates (not `APPROVED` → [`Effect::Fail`]), the values
//!   (`customer.first_name`, `order.total_price`, …), the last message of
//!   the run and the replies after it.
//! - **Effects**, in order, each tagged with the node and its `visit`
//!   number (1 for the first visit of a node by a run; use `(run, node,
//!   visit)` as the idempotency key of a send or a delay job):
//!   [`Effect::Enter`] (activity `PENDING`), [`Effect::WaitUntil`] and
//!   [`Effect::WaitForEvent`] (activity `SCHEDULED`; schedule a job at
//!   `at`/`until`; index the run by `what` so a reply or status wakes it),
//!   [`Effect::Send`] (queue the template with its resolved variables;
//!   activity `COMPLETED` with the message id), [`Effect::Branch`] and
//!   [`Effect::Passed`] (activity `COMPLETED`), [`Effect::Skip`] /
//!   [`Effect::Fail`] (activity `SKIPPED` / `FAILED` with the reason; the
//!   run ends so) and [`Effect::Complete`] (the run ends `COMPLETED`).
//!   Save [`Step::state`] (serde JSON) with the effects.
//! - **Recipes**: [`recipe`]`(RecipeKind, &RecipeTemplates) -> Recipe {flow
//!   (JSON), frequency_cap}`; every recipe parses and validates.
//! - **Statuses**: [`AutomationStatus`] (`INACTIVE`/`ACTIVE`/`PAUSED`),
//!   [`RunStatus`], [`ActivityStatus`] (`ActivityStatus::of(&effect)` gives
//!   the activity transition of an effect; `Effect::node()` its node/visit).
//!
//! Storage lives in `galantis_store::tenant::automations` (`create`,
//! `update`, `get`, `list`, `set_status`, `delete`, `active_for_trigger`,
//! `count_enabled`, `version_flow`), `::runs` (`enrol` insert-or-ignore by
//! (automation, contact, trigger key), `lock`, `save`, `last_enrolled_at`,
//! `waiting_for_reply`, `waiting_for_status`, `live_for_checkout`, `end`)
//! and `::activity` (`transition`, `log_blocked`, `list`, `stats`). Keep a
//! [`TriggerFact`]'s `variables` in the run's `context` and merge them into
//! [`Facts::values`] at each step.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod condition;
mod facts;
mod gate;
mod parse;
mod recipes;
mod step;
mod trigger;
mod validate;

#[cfg(test)]
mod tests;

pub use condition::{
    Awaited, Cmp, Condition, DeliveryStatus, Group, GroupOp, Rule, Truth, evaluate_group,
};
pub use facts::FactNeeds;
pub use gate::{FrequencyCap, GateRefusal, gate};
pub use recipes::{Recipe, RecipeKind, RecipeTemplates, recipe};
pub use step::{
    Effect, Facts, Input, LastMessage, MAX_STEPS, Reply, RunEvent, RunState, RunStatus, Step, Wait,
    WaitKind, step,
};
pub use trigger::{Audience, TriggerFact, TriggerKind, trigger_fact};
pub use validate::{Issue, TemplateLookup, validate};

/// A delay or a window may be at most a year long.
pub const MAX_DELAY_DAYS: i64 = 365;
/// A flow may have at most this many nodes (and three times as many edges).
pub const MAX_NODES: usize = 200;

/// The value sources an action's variable may map to (design.md §4).
pub const VARIABLE_SOURCES: [&str; 19] = [
    "customer.first_name",
    "customer.last_name",
    "customer.email",
    "customer.phone",
    "order.order_number",
    "order.total_price",
    "order.product_name",
    "order.tracking_url",
    "order.tracking_number",
    "order.tracking_company",
    "product.title",
    "product.url",
    "product.price",
    "variant.title",
    "variant.price",
    "variant.url",
    "checkout.recovery_url",
    "checkout.total_price",
    "store.name",
];

/// A node's canvas position (kept as given).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// A parsed flow: nodes (ids unique) and edges between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub position: Option<Position>,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Trigger(TriggerNode),
    Delay(DelayNode),
    Condition(ConditionNode),
    Action(ActionNode),
}

impl NodeKind {
    /// The JSON `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Trigger(_) => "trigger",
            NodeKind::Delay(_) => "delay",
            NodeKind::Condition(_) => "condition",
            NodeKind::Action(_) => "action",
        }
    }
}

/// The flow's entry. `tag` (CUSTOMER_TAGGED), `segment_id`
/// (USER_ADDED_TO_SEGMENT) and `list_id` (USER_ADDED_TO_LIST) are required
/// by [`validate`] for their trigger; the parser refuses them on others.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerNode {
    pub trigger: TriggerKind,
    /// Lower case.
    pub tag: Option<String>,
    pub segment_id: Option<Uuid>,
    pub list_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DelayUnit {
    Minutes,
    Hours,
    Days,
}

impl DelayUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            DelayUnit::Minutes => "minutes",
            DelayUnit::Hours => "hours",
            DelayUnit::Days => "days",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minute" | "minutes" => Some(DelayUnit::Minutes),
            "hour" | "hours" => Some(DelayUnit::Hours),
            "day" | "days" => Some(DelayUnit::Days),
            _ => None,
        }
    }
}

/// An amount of time: a delay's duration or a condition's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// At least 1; at most [`MAX_DELAY_DAYS`] days in total.
    pub amount: u32,
    pub unit: DelayUnit,
}

impl Span {
    pub fn duration(self) -> Duration {
        let n = i64::from(self.amount);
        match self.unit {
            DelayUnit::Minutes => Duration::minutes(n),
            DelayUnit::Hours => Duration::hours(n),
            DelayUnit::Days => Duration::days(n),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.unit.as_str())
    }
}

/// Waits `span` before the next node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayNode {
    pub span: Span,
}

/// Follows the `yes` or `no` edge by its condition group.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionNode {
    pub group: Group,
}

/// Sends one template, mapping its variables (`"1"`, `"2"`, … or named).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionNode {
    /// `None` in an incomplete draft ([`validate`] blocks it).
    pub template_id: Option<Uuid>,
    pub variables: BTreeMap<String, VariableSource>,
}

/// Where a template variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableSource {
    /// One of [`VARIABLE_SOURCES`]; `fallback` when the value is missing.
    Field {
        source: String,
        fallback: Option<String>,
    },
    Static(String),
}

/// Which branch of a condition an edge leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BranchLabel {
    Yes,
    No,
}

impl BranchLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            BranchLabel::Yes => "yes",
            BranchLabel::No => "no",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Required on edges leaving a condition, refused on others.
    pub branch: Option<BranchLabel>,
}

/// A list or segment whose members are never enrolled:
/// `{"type": "list" | "segment", "id": "<uuid>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(rename = "type")]
    pub kind: ExclusionKind,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExclusionKind {
    List,
    Segment,
}

/// One parse failure, with its JSON path and (when known) the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowError {
    pub path: String,
    pub node_id: Option<String>,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node_id {
            Some(n) => write!(f, "{} (node \"{n}\"): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every parse failure of a flow (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FlowErrors(pub Vec<FlowError>);

impl fmt::Display for FlowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().take(5).map(|e| e.to_string()).collect();
        f.write_str(&shown.join("; "))?;
        if self.0.len() > 5 {
            write!(f, "; and {} more", self.0.len() - 5)?;
        }
        Ok(())
    }
}

impl Flow {
    /// Parses a flow `{nodes, edges}` from JSON, collecting every error.
    pub fn parse(v: &serde_json::Value) -> Result<Flow, FlowErrors> {
        let mut errors = Vec::new();
        let flow = parse::parse_flow(v, &mut errors);
        match flow {
            Some(f) if errors.is_empty() => Ok(f),
            _ => Err(FlowErrors(errors)),
        }
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The trigger nodes (a valid flow has exactly one).
    pub fn triggers(&self) -> impl Iterator<Item = (&Node, &TriggerNode)> {
        self.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::Trigger(t) => Some((n, t)),
            _ => None,
        })
    }

    /// The first trigger, the flow's entry.
    pub fn trigger(&self) -> Option<(&Node, &TriggerNode)> {
        self.triggers().next()
    }

    /// Edges leaving `id`, in their JSON order.
    pub fn edges_from<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// The node after `id`: by `branch` for a condition, else the first
    /// edge without a branch.
    pub fn next(&self, id: &str, branch: Option<BranchLabel>) -> Option<&str> {
        self.edges
            .iter()
            .find(|e| e.from == id && e.branch == branch)
            .map(|e| e.to.as_str())
    }

    /// The templates the flow's actions send.
    pub fn template_ids(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Action(a) => a.template_id,
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// An automation's status: drafts are `INACTIVE`; `PAUSED` stops new
/// enrolments and holds runs at their next step until resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutomationStatus {
    Inactive,
    Active,
    Paused,
}

impl AutomationStatus {
    pub const ALL: [AutomationStatus; 3] = [
        AutomationStatus::Inactive,
        AutomationStatus::Active,
        AutomationStatus::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AutomationStatus::Inactive => "INACTIVE",
            AutomationStatus::Active => "ACTIVE",
            AutomationStatus::Paused => "PAUSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// An `AutomationActivity` row's status: `PENDING` → `SCHEDULED` →
/// `COMPLETED` | `FAILED` | `SKIPPED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityStatus {
    Pending,
    Scheduled,
    Completed,
    Failed,
    Skipped,
}

impl ActivityStatus {
    pub const ALL: [ActivityStatus; 5] = [
        ActivityStatus::Pending,
        ActivityStatus::Scheduled,
        ActivityStatus::Completed,
        ActivityStatus::Failed,
        ActivityStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Pending => "PENDING",
            ActivityStatus::Scheduled => "SCHEDULED",
            ActivityStatus::Completed => "COMPLETED",
            ActivityStatus::Failed => "FAILED",
            ActivityStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The activity status an effect sets, with its reason (`None` for
    /// `Complete`, which ends the run, not a node visit).
    pub fn of(effect: &Effect) -> Option<(ActivityStatus, Option<&str>)> {
        Some(match effect {
            Effect::Enter { .. } => (ActivityStatus::Pending, None),
            Effect::WaitUntil { .. } | Effect::WaitForEvent { .. } => {
                (ActivityStatus::Scheduled, None)
            }
            Effect::Passed { .. } | Effect::Branch { .. } | Effect::Send { .. } => {
                (ActivityStatus::Completed, None)
            }
            Effect::Skip { reason, .. } => (ActivityStatus::Skipped, Some(reason.as_str())),
            Effect::Fail { reason, .. } => (ActivityStatus::Failed, Some(reason.as_str())),
            Effect::Complete => return None,
        })
    }
}

impl Effect {
    /// The node and visit an effect is about (`None` for `Complete`).
    pub fn node(&self) -> Option<(&str, u32)> {
        match self {
            Effect::Enter { node, visit }
            | Effect::Passed { node, visit }
            | Effect::WaitUntil { node, visit, .. }
            | Effect::WaitForEvent { node, visit, .. }
            | Effect::Branch { node, visit, .. }
            | Effect::Send { node, visit, .. }
            | Effect::Skip { node, visit, .. }
            | Effect::Fail { node, visit, .. } => Some((node, *visit)),
            Effect::Complete => None,
        }
    }
}
