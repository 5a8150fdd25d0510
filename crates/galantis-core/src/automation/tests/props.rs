//! Properties of the step function over random flows (loops included) and
//! random wake-ups (early, late, stray events): every run ends, no node is
//! visited twice without a delay in between, a delay never fires early.

use std::collections::BTreeSet;

use chrono::Duration;
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{facts, t0, tpl};
use crate::MessageStatus;
use crate::automation::*;

#[derive(Debug, Clone)]
enum Kind {
    Delay(u8),
    Reply(u8),
    Delivery(u8),
    Tag,
    Action,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1u8..4).prop_map(Kind::Delay),
        (1u8..4).prop_map(Kind::Reply),
        (1u8..4).prop_map(Kind::Delivery),
        Just(Kind::Tag),
        Just(Kind::Action),
    ]
}

/// Node 0 is the trigger; `succ[i]` are the successors of node i (index
/// `n` or more: none) — two for conditions (yes, no), one otherwise.
fn flow_json(kinds: &[Kind], succ: &[(usize, usize)]) -> Value {
    let n = kinds.len() + 1;
    let id = |i: usize| format!("n{i}");
    let mut nodes = vec![json!({"id": id(0), "type": "trigger", "trigger": "ORDER_PLACED"})];
    let mut edges = Vec::new();
    let mut edge = |from: usize, to: usize, branch: Option<&str>| {
        if to < n {
            let mut e = json!({"from": id(from), "to": id(to)});
            if let Some(b) = branch {
                e["branch"] = json!(b);
            }
            edges.push(e);
        }
    };
    edge(0, succ[0].0, None);
    for (k, kind) in kinds.iter().enumerate() {
        let i = k + 1;
        let (a, b) = succ[i];
        let cond = |rule: Value| json!({"id": id(i), "type": "condition", "group": {"op": "or", "rules": [rule]}});
        let node = match kind {
            Kind::Delay(h) => json!({"id": id(i), "type": "delay", "amount": h, "unit": "hours"}),
            Kind::Action => json!({"id": id(i), "type": "action", "template_id": tpl(1)}),
            Kind::Tag => cond(json!({"condition": "CUSTOMER_TAG", "tag": "vip"})),
            Kind::Reply(h) => cond(
                json!({"condition": "USER_REPLY_STATUS", "button_id": "ok", "window": {"amount": h, "unit": "hours"}}),
            ),
            Kind::Delivery(h) => cond(
                json!({"condition": "MESSAGE_DELIVERY_STATUS", "status": "read", "window": {"amount": h, "unit": "hours"}}),
            ),
        };
        let is_cond = node["type"] == "condition";
        nodes.push(node);
        if is_cond {
            edge(i, a, Some("yes"));
            edge(i, b, Some("no"));
        } else {
            edge(i, a, None);
        }
    }
    json!({"nodes": nodes, "edges": edges})
}

fn scenario() -> impl Strategy<Value = (Vec<Kind>, Vec<(usize, usize)>, Vec<u8>)> {
    prop::collection::vec(kind(), 0..7).prop_flat_map(|kinds| {
        let n = kinds.len() + 1;
        let succ = prop::collection::vec((0..n + 1, 0..n + 1), n);
        (Just(kinds), succ, prop::collection::vec(any::<u8>(), 0..60))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn runs_end_without_delayless_revisits_or_early_delays((kinds, succ, choices) in scenario()) {
        let flow = Flow::parse(&flow_json(&kinds, &succ)).unwrap();
        let is_delay = |id: &str| matches!(flow.node(id).map(|n| &n.kind), Some(NodeKind::Delay(_)));
        let mut f = facts(&[tpl(1)]);
        f.customer_tags = vec!["vip".into()];
        let mut now = t0();
        let mut choices = choices.into_iter();
        let mut state = RunState::new();
        let mut input = Input::Start;
        let mut since_delay: BTreeSet<String> = BTreeSet::new();
        let mut ended = false;
        for _ in 0..5_000 {
            let before = state.wait.clone();
            let s = step(&flow, &state, input.clone(), &f, now);
            for e in &s.effects {
                match e {
                    Effect::Enter { node, .. } => {
                        prop_assert!(since_delay.insert(node.clone()), "{node} visited twice without a delay");
                    }
                    Effect::Passed { node, .. } if is_delay(node) => {
                        let w = before.as_ref().expect("a delay passes only from its wait");
                        prop_assert!(now >= w.until, "delay {node} fired early");
                        since_delay.clear();
                    }
                    Effect::Send { .. } => {
                        f.last_message = Some(LastMessage {
                            message_id: Some(Uuid::from_u128(now.timestamp_millis() as u128)),
                            sent_at: now,
                            status: MessageStatus::Sent,
                        });
                        f.replies.clear();
                    }
                    _ => {}
                }
            }
            state = s.state;
            if state.status.is_terminal() {
                prop_assert!(state.wait.is_none());
                ended = true;
                break;
            }
            let w = state.wait.clone().expect("a live run after a step waits");
            prop_assert_eq!(state.status, RunStatus::Waiting);
            let c = choices.next();
            input = match (&w.kind, c) {
                (WaitKind::Delay, Some(c)) if c % 3 == 0 => {
                    // Early (a skewed job): must not fire.
                    now = now.max(w.until - Duration::minutes(1 + i64::from(c % 50)));
                    Input::DelayElapsed { node: w.node.clone() }
                }
                (WaitKind::Delay, c) => {
                    now = now.max(w.until + Duration::seconds(i64::from(c.unwrap_or(0))));
                    Input::DelayElapsed { node: w.node.clone() }
                }
                (WaitKind::Event { .. }, Some(c)) if c % 4 == 0 => {
                    Input::WindowElapsed { node: format!("stale{c}") }
                }
                (WaitKind::Event { .. }, Some(c)) if c % 4 == 1 => {
                    now = now.max(w.until - Duration::minutes(1));
                    let button = if c % 8 == 1 { "ok" } else { "other" };
                    Input::EventArrived(RunEvent::Reply { at: now, button_id: Some(button.into()) })
                }
                (WaitKind::Event { .. }, Some(c)) if c % 4 == 2 => {
                    let id = f.last_message.as_ref().and_then(|m| m.message_id).unwrap_or_default();
                    let status = if c % 8 == 2 { MessageStatus::Read } else { MessageStatus::Delivered };
                    Input::EventArrived(RunEvent::MessageStatus { message_id: id, status })
                }
                (WaitKind::Event { .. }, _) => {
                    now = now.max(w.until);
                    Input::WindowElapsed { node: w.node.clone() }
                }
            };
            if let Input::EventArrived(ev) = &input {
                f.absorb(ev);
            }
        }
        prop_assert!(ended, "the run did not end: {state:?}");
        prop_assert!(state.steps <= MAX_STEPS);
    }
}
