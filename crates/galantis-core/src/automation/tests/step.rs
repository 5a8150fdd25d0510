//! The step function, scenario by scenario.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::{facts, t0, tpl};
use crate::automation::*;
use crate::templates::TemplateStatus;
use crate::{MarketingState, MessageStatus};

pub(super) fn run(
    flow: &Flow,
    state: &RunState,
    input: Input,
    f: &Facts,
    now: DateTime<Utc>,
) -> Step {
    step(flow, state, input, f, now)
}

#[test]
fn abandoned_checkout_walks_delay_branch_send_delay_reminder() {
    let ids = BTreeMap::from([
        ("standard".into(), tpl(1)),
        ("vip".into(), tpl(2)),
        ("reminder".into(), tpl(3)),
    ]);
    let r = recipe(
        RecipeKind::AbandonedCheckout,
        &RecipeTemplates {
            template_ids: ids,
            ..Default::default()
        },
    );
    let flow = Flow::parse(&r.flow).unwrap();
    let mut f = facts(&[tpl(1), tpl(2), tpl(3)]);
    f.values
        .insert("checkout.recovery_url".into(), "https://x/r".into());
    f.order_total_cents = Some(15_000);
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    assert_eq!(s.state.status, RunStatus::Waiting);
    let at = t0() + Duration::minutes(30);
    assert_eq!(
        s.effects.last(),
        Some(&Effect::WaitUntil {
            node: "wait_30m".into(),
            visit: 1,
            at
        })
    );
    // Early: nothing moves, the wait is repeated.
    let early = run(
        &flow,
        &s.state,
        Input::DelayElapsed {
            node: "wait_30m".into(),
        },
        &f,
        at - Duration::seconds(1),
    );
    assert_eq!(early.state, s.state);
    assert_eq!(
        early.effects,
        vec![Effect::WaitUntil {
            node: "wait_30m".into(),
            visit: 1,
            at
        }]
    );
    // Stale wake-ups change nothing.
    assert!(
        run(
            &flow,
            &s.state,
            Input::DelayElapsed {
                node: "wait_24h".into()
            },
            &f,
            at
        )
        .effects
        .is_empty()
    );
    let s2 = run(
        &flow,
        &s.state,
        Input::DelayElapsed {
            node: "wait_30m".into(),
        },
        &f,
        at,
    );
    let sends: Vec<_> = s2
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send {
                node,
                template_id,
                variables,
                ..
            } => Some((node.clone(), *template_id, variables.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        sends,
        vec![(
            "send_vip".into(),
            tpl(2),
            vec![
                ("1".into(), "Ana".into()),
                ("2".into(), "https://x/r".into())
            ]
        )]
    );
    assert!(s2.effects.contains(&Effect::Branch {
        node: "is_vip".into(),
        visit: 1,
        yes: true
    }));
    let at2 = at + Duration::hours(24);
    assert_eq!(s2.state.wait.as_ref().unwrap().until, at2);
    let s3 = run(
        &flow,
        &s2.state,
        Input::DelayElapsed {
            node: "wait_24h".into(),
        },
        &f,
        at2,
    );
    assert!(matches!(
        s3.effects[..],
        [
            Effect::Passed { .. },
            Effect::Enter { .. },
            Effect::Send { .. },
            Effect::Complete
        ]
    ));
    assert_eq!(s3.state.status, RunStatus::Completed);
    // A finished run ignores everything.
    assert!(
        run(&flow, &s3.state, Input::Start, &f, at2)
            .effects
            .is_empty()
    );
    // A low total takes NO.
    f.order_total_cents = Some(5_000);
    let s2 = run(
        &flow,
        &s.state,
        Input::DelayElapsed {
            node: "wait_30m".into(),
        },
        &f,
        at,
    );
    assert!(s2.effects.contains(&Effect::Branch {
        node: "is_vip".into(),
        visit: 1,
        yes: false
    }));
}

pub(super) fn reply_flow(cond: Value) -> Flow {
    Flow::parse(&json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
            {"id": "a", "type": "action", "template_id": tpl(1)},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [cond]}},
            {"id": "yes", "type": "action", "template_id": tpl(1)},
            {"id": "no", "type": "action", "template_id": tpl(2)}
        ],
        "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "c"},
                  {"from": "c", "to": "yes", "branch": "yes"}, {"from": "c", "to": "no", "branch": "no"}]
    })).unwrap()
}

#[test]
fn a_reply_condition_waits_for_the_button_or_the_window() {
    let flow = reply_flow(
        json!({"condition": "USER_REPLY_STATUS", "button_id": "yes_please", "window": {"amount": 2, "unit": "hours"}}),
    );
    let f = facts(&[tpl(1), tpl(2)]);
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    let until = t0() + Duration::hours(2);
    assert_eq!(
        s.effects.last(),
        Some(&Effect::WaitForEvent {
            node: "c".into(),
            visit: 1,
            until,
            what: Awaited::Reply
        })
    );
    let mut f2 = f.clone();
    f2.last_message = Some(LastMessage {
        message_id: Some(tpl(7)),
        sent_at: t0(),
        status: MessageStatus::Sent,
    });
    // Another button: still waiting.
    let other = RunEvent::Reply {
        at: t0() + Duration::minutes(5),
        button_id: Some("no_thanks".into()),
    };
    let w = run(
        &flow,
        &s.state,
        Input::EventArrived(other),
        &f2,
        t0() + Duration::minutes(5),
    );
    assert!(matches!(w.effects[..], [Effect::WaitForEvent { .. }]));
    let press = RunEvent::Reply {
        at: t0() + Duration::minutes(10),
        button_id: Some("yes_please".into()),
    };
    let y = run(
        &flow,
        &w.state,
        Input::EventArrived(press),
        &f2,
        t0() + Duration::minutes(10),
    );
    assert_eq!(
        y.effects[0],
        Effect::Branch {
            node: "c".into(),
            visit: 1,
            yes: true
        }
    );
    // Silence: NO when the window ends, not before.
    let early = run(
        &flow,
        &s.state,
        Input::WindowElapsed { node: "c".into() },
        &f2,
        until - Duration::seconds(1),
    );
    assert!(matches!(early.effects[..], [Effect::WaitForEvent { .. }]));
    let n = run(
        &flow,
        &s.state,
        Input::WindowElapsed { node: "c".into() },
        &f2,
        until,
    );
    assert_eq!(
        n.effects[0],
        Effect::Branch {
            node: "c".into(),
            visit: 1,
            yes: false
        }
    );
    assert!(matches!(&n.effects[2], Effect::Send { node, .. } if node == "no"));
}

#[test]
fn a_delivery_condition_follows_the_last_message_status() {
    let flow = reply_flow(
        json!({"condition": "MESSAGE_DELIVERY_STATUS", "status": "read", "window": {"amount": 1, "unit": "days"}}),
    );
    let f = facts(&[tpl(1), tpl(2)]);
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    assert!(matches!(
        s.effects.last(),
        Some(Effect::WaitForEvent {
            what: Awaited::MessageStatus,
            ..
        })
    ));
    let mut f2 = f.clone();
    f2.last_message = Some(LastMessage {
        message_id: Some(tpl(7)),
        sent_at: t0(),
        status: MessageStatus::Sent,
    });
    let d = run(
        &flow,
        &s.state,
        Input::EventArrived(RunEvent::MessageStatus {
            message_id: tpl(7),
            status: MessageStatus::Delivered,
        }),
        &f2,
        t0(),
    );
    assert!(matches!(d.effects[..], [Effect::WaitForEvent { .. }]));
    let r = run(
        &flow,
        &d.state,
        Input::EventArrived(RunEvent::MessageStatus {
            message_id: tpl(7),
            status: MessageStatus::Read,
        }),
        &f2,
        t0(),
    );
    assert_eq!(
        r.effects[0],
        Effect::Branch {
            node: "c".into(),
            visit: 1,
            yes: true
        }
    );
    // Without a window the status is read at once.
    let flow = reply_flow(json!({"condition": "MESSAGE_DELIVERY_STATUS", "status": "delivered"}));
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    assert!(s.effects.contains(&Effect::Branch {
        node: "c".into(),
        visit: 1,
        yes: false
    }));
}

#[test]
fn actions_recheck_consent_and_template_status() {
    let flow = reply_flow(json!({"condition": "CUSTOMER_TAG", "tag": "vip"}));
    let mut f = facts(&[tpl(1), tpl(2)]);
    f.consent = MarketingState::Unsubscribed;
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    assert_eq!(s.state.status, RunStatus::Skipped);
    assert_eq!(
        s.effects.last(),
        Some(&Effect::Skip {
            node: "a".into(),
            visit: 1,
            reason: "consent_unsubscribed".into()
        })
    );
    let mut f = facts(&[tpl(1), tpl(2)]);
    f.templates.insert(tpl(1), TemplateStatus::Paused);
    let s = run(&flow, &RunState::new(), Input::Start, &f, t0());
    assert_eq!(s.state.status, RunStatus::Failed);
    assert_eq!(
        s.effects.last(),
        Some(&Effect::Fail {
            node: "a".into(),
            visit: 1,
            reason: "template_paused".into()
        })
    );
    // A variable without value nor fallback fails the step, naming it.
    let flow = Flow::parse(&json!({"nodes": [
        {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
        {"id": "a", "type": "action", "template_id": tpl(1), "variables": {"1": {"source": "order.order_number"}, "2": {"static": "hi"}}}
    ], "edges": [{"from": "t", "to": "a"}]})).unwrap();
    let s = run(
        &flow,
        &RunState::new(),
        Input::Start,
        &facts(&[tpl(1)]),
        t0(),
    );
    assert_eq!(
        s.effects.last(),
        Some(&Effect::Fail {
            node: "a".into(),
            visit: 1,
            reason: "variable_missing:1".into()
        })
    );
}

#[test]
fn a_loop_without_a_delay_fails_instead_of_spinning() {
    let flow = Flow::parse(&json!({"nodes": [
        {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
        {"id": "c", "type": "condition", "group": {"op": "and", "rules": [{"condition": "CUSTOMER_TAG", "tag": "x"}]}},
    ], "edges": [{"from": "t", "to": "c"}, {"from": "c", "to": "c", "branch": "no"}]})).unwrap();
    let s = run(&flow, &RunState::new(), Input::Start, &facts(&[]), t0());
    assert_eq!(
        s.effects.last(),
        Some(&Effect::Fail {
            node: "c".into(),
            visit: 2,
            reason: "cycle_without_delay".into()
        })
    );
}
