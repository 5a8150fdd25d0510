//! The automation repository (galantis-store `tenant::automations`) on both
//! engines: versions, one enrolment per trigger key, run state and its
//! waiting indexes, activity transitions, blocked enrolments and stats.

use chrono::{DateTime, Duration, TimeZone, Utc};
use galantis_core::MarketingState;
use galantis_core::automation::{
    ActivityStatus, AutomationStatus, Awaited, Effect, Exclusion, ExclusionKind, Facts, Flow,
    FrequencyCap, Input, RunState, RunStatus, TriggerKind, step,
};
use galantis_core::templates::TemplateStatus;
use galantis_store::tenant::automations::activity::{self, ActivityFilter, Visit};
use galantis_store::tenant::automations::runs::{self, NewRun};
use galantis_store::tenant::automations::{self, Automation, AutomationChange, NewAutomation};
use galantis_testkit::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn flow_json(tag: &str, template: Uuid) -> Value {
    json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": tag, "position": {"x": 1, "y": 2}},
            {"id": "a", "type": "action", "template_id": template},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [
                {"condition": "USER_REPLY_STATUS", "window": {"amount": 2, "unit": "hours"}}]}},
            {"id": "y", "type": "action", "template_id": template},
            {"id": "n", "type": "action", "template_id": template}
        ],
        "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "c"},
                  {"from": "c", "to": "y", "branch": "yes"}, {"from": "c", "to": "n", "branch": "no"}]
    })
}

#[tokio::test]
async fn automations_keep_versions_status_and_trigger_columns() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-store-versions").await;
    let tpl = Uuid::now_v7();
    let v1 = flow_json("vip", tpl);
    let f1 = Flow::parse(&v1).unwrap();
    let ex = [Exclusion {
        kind: ExclusionKind::List,
        id: Uuid::now_v7(),
    }];
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let a = automations::create(
        &mut tx,
        &NewAutomation {
            name: "VIP",
            flow: (&v1, &f1),
            frequency_cap: None,
            exclusions: &ex,
            include_existing_users: true,
        },
        ms(t0()),
    )
    .await
    .unwrap();
    assert_eq!(
        (a.status, a.current_version),
        (AutomationStatus::Inactive, 1)
    );
    assert_eq!(
        (a.trigger, a.trigger_param.as_deref()),
        (Some(TriggerKind::CustomerTagged), Some("vip"))
    );
    assert_eq!(a.flow, v1);
    assert_eq!(a.exclusions, ex.to_vec());
    assert!(a.include_existing_users);
    assert!(a.frequency_cap.is_none() && a.activated_at.is_none());

    // A draft without runs is edited in place.
    let v2 = flow_json("gold", tpl);
    let f2 = Flow::parse(&v2).unwrap();
    let ch = AutomationChange {
        flow: Some((&v2, &f2)),
        frequency_cap: Some(Some(FrequencyCap::Hours24)),
        ..Default::default()
    };
    let a = automations::update(&mut tx, a.id, &ch, ms(t0()) + 1)
        .await
        .unwrap();
    assert_eq!(
        (a.current_version, a.trigger_param.as_deref()),
        (1, Some("gold"))
    );
    assert_eq!(a.frequency_cap, Some(FrequencyCap::Hours24));
    assert_eq!(a.name, "VIP");

    // Activation stamps activated_at; an edit of an active flow adds a version.
    let a = automations::set_status(&mut tx, a.id, AutomationStatus::Active, ms(t0()) + 2)
        .await
        .unwrap();
    assert_eq!(a.activated_at, Some(t0() + Duration::milliseconds(2)));
    assert_eq!(automations::count_enabled(&mut tx).await.unwrap(), 1);
    let found = automations::active_for_trigger(&mut tx, TriggerKind::CustomerTagged)
        .await
        .unwrap();
    assert_eq!(found.iter().map(|x| x.id).collect::<Vec<_>>(), vec![a.id]);
    assert!(
        automations::active_for_trigger(&mut tx, TriggerKind::OrderPlaced)
            .await
            .unwrap()
            .is_empty()
    );
    let a = automations::update(
        &mut tx,
        a.id,
        &AutomationChange {
            flow: Some((&v1, &f1)),
            name: Some("VIP 2"),
            ..Default::default()
        },
        ms(t0()) + 3,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            a.current_version,
            a.name.as_str(),
            a.trigger_param.as_deref()
        ),
        (2, "VIP 2", Some("vip"))
    );
    assert_eq!(
        automations::version_flow(&mut tx, a.id, 1).await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(
        automations::version_flow(&mut tx, a.id, 2).await.unwrap(),
        Some(v1.clone())
    );
    // The same flow again is not a new version.
    let a = automations::update(
        &mut tx,
        a.id,
        &AutomationChange {
            flow: Some((&v1, &f1)),
            ..Default::default()
        },
        ms(t0()) + 4,
    )
    .await
    .unwrap();
    assert_eq!(a.current_version, 2);
    // Pause, resume (activated_at moves), delete.
    let p = automations::set_status(&mut tx, a.id, AutomationStatus::Paused, ms(t0()) + 5)
        .await
        .unwrap();
    assert_eq!(p.activated_at, a.activated_at);
    assert!(
        automations::active_for_trigger(&mut tx, TriggerKind::CustomerTagged)
            .await
            .unwrap()
            .is_empty()
    );
    let r = automations::set_status(&mut tx, a.id, AutomationStatus::Active, ms(t0()) + 6)
        .await
        .unwrap();
    assert_eq!(r.activated_at, Some(t0() + Duration::milliseconds(6)));
    assert_eq!(automations::list(&mut tx, None, 10).await.unwrap().len(), 1);
    assert!(
        automations::delete(&mut tx, a.id, ms(t0()) + 7)
            .await
            .unwrap()
    );
    assert!(
        !automations::delete(&mut tx, a.id, ms(t0()) + 8)
            .await
            .unwrap()
    );
    assert!(automations::get(&mut tx, a.id).await.unwrap().is_none());
    assert!(
        automations::list(&mut tx, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(automations::count_enabled(&mut tx).await.unwrap(), 0);
    assert!(
        automations::set_status(&mut tx, a.id, AutomationStatus::Active, ms(t0()))
            .await
            .is_err()
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn one_enrolment_per_trigger_key_and_waiting_runs_are_found_by_index() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-store-runs").await;
    let tpl = Uuid::now_v7();
    let v = flow_json("vip", tpl);
    let flow = Flow::parse(&v).unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let a = automations::create(
        &mut tx,
        &NewAutomation {
            name: "R",
            flow: (&v, &flow),
            frequency_cap: Some(FrequencyCap::Hours24),
            exclusions: &[],
            include_existing_users: false,
        },
        ms(t0()),
    )
    .await
    .unwrap();
    let contact = Uuid::now_v7();
    let checkout = Uuid::now_v7();
    let ctx = json!({"variables": {"order.total_price": "10.00"}});
    let new = NewRun {
        automation_id: a.id,
        version: 1,
        contact_id: contact,
        trigger_key: "event:1",
        trigger_event_id: None,
        order_id: None,
        checkout_id: Some(checkout),
        variant_id: None,
        context: &ctx,
    };
    assert!(
        runs::last_enrolled_at(&mut tx, a.id, contact)
            .await
            .unwrap()
            .is_none()
    );
    let run_id = runs::enrol(&mut tx, &new, ms(t0()))
        .await
        .unwrap()
        .expect("new");
    assert_eq!(
        runs::enrol(&mut tx, &new, ms(t0()) + 1).await.unwrap(),
        None,
        "a duplicate event enrols nobody"
    );
    assert_eq!(
        runs::last_enrolled_at(&mut tx, a.id, contact)
            .await
            .unwrap(),
        Some(t0())
    );
    let run = runs::lock(&mut tx, run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.state.clone(), run.context.clone()),
        (RunStatus::Active, RunState::new(), ctx.clone())
    );

    // Step it: send, then wait for a reply.
    let mut facts = Facts::new(MarketingState::Subscribed);
    facts.templates.insert(tpl, TemplateStatus::Approved);
    let s = step(&flow, &run.state, Input::Start, &facts, t0());
    assert!(matches!(
        s.effects.last(),
        Some(Effect::WaitForEvent {
            what: Awaited::Reply,
            ..
        })
    ));
    let msg = Uuid::now_v7();
    runs::save(&mut tx, run_id, &s.state, Some(msg), None, ms(t0()))
        .await
        .unwrap();
    let run = runs::get(&mut tx, run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting);
    assert_eq!(
        (
            run.current_node.as_deref(),
            run.waiting_for,
            run.last_message_id
        ),
        (Some("c"), Some(Awaited::Reply), Some(msg))
    );
    assert_eq!(run.wait_until, Some(t0() + Duration::hours(2)));
    assert_eq!(run.state, s.state);
    let woken = runs::waiting_for_reply(&mut tx, contact).await.unwrap();
    assert_eq!(woken.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run_id]);
    assert!(
        runs::waiting_for_reply(&mut tx, Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        runs::waiting_for_status(&mut tx, msg)
            .await
            .unwrap()
            .is_empty(),
        "it waits for a reply, not a status"
    );

    // A completed checkout ends the live run, once.
    let live = runs::live_for_checkout(&mut tx, checkout).await.unwrap();
    assert_eq!(live.len(), 1);
    assert!(
        runs::end(
            &mut tx,
            run_id,
            RunStatus::Skipped,
            "checkout_completed",
            ms(t0()) + 10
        )
        .await
        .unwrap()
    );
    assert!(
        !runs::end(
            &mut tx,
            run_id,
            RunStatus::Skipped,
            "checkout_completed",
            ms(t0()) + 11
        )
        .await
        .unwrap()
    );
    let run = runs::get(&mut tx, run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.end_reason.as_deref(), run.waiting_for),
        (RunStatus::Skipped, Some("checkout_completed"), None)
    );
    assert_eq!(run.ended_at, Some(t0() + Duration::milliseconds(10)));
    assert!(
        runs::live_for_checkout(&mut tx, checkout)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        runs::waiting_for_reply(&mut tx, contact)
            .await
            .unwrap()
            .is_empty()
    );
    // Another trigger event for the same contact is a new enrolment.
    let again = NewRun {
        trigger_key: "event:2",
        ..new
    };
    assert!(
        runs::enrol(&mut tx, &again, ms(t0()) + 20)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        runs::last_enrolled_at(&mut tx, a.id, contact)
            .await
            .unwrap(),
        Some(t0() + Duration::milliseconds(20))
    );
    tx.commit().await.unwrap();
}

/// The automation's activity rows (at most 10).
async fn activity_of(
    tx: &mut galantis_store::TenantTx,
    automation: Uuid,
) -> Vec<activity::Activity> {
    activity::list(
        tx,
        &ActivityFilter {
            automation_id: Some(automation),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A tenant with one automation (flow "vip", cap 7 days) and a
/// transaction open on it.
async fn activity_setup(tenant: &str) -> (TestApp, galantis_store::TenantTx, Automation) {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant(tenant).await;
    let v = flow_json("vip", Uuid::now_v7());
    let flow = Flow::parse(&v).unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let a = automations::create(
        &mut tx,
        &NewAutomation {
            name: "S",
            flow: (&v, &flow),
            frequency_cap: Some(FrequencyCap::Days7),
            exclusions: &[],
            include_existing_users: false,
        },
        ms(t0()),
    )
    .await
    .unwrap();
    (app, tx, a)
}

#[tokio::test]
async fn activity_records_each_transition_once_and_stats_count_them() {
    let (_app, mut tx, a) = activity_setup("auto-store-activity").await;
    let contact = Uuid::now_v7();
    let ctx = json!({});
    let run_id = runs::enrol(
        &mut tx,
        &NewRun {
            automation_id: a.id,
            version: 1,
            contact_id: contact,
            trigger_key: "k",
            trigger_event_id: None,
            order_id: None,
            checkout_id: None,
            variant_id: None,
            context: &ctx,
        },
        ms(t0()),
    )
    .await
    .unwrap()
    .unwrap();
    let visit = Visit {
        run_id,
        automation_id: a.id,
        contact_id: contact,
        node_id: "a",
        visit: 1,
    };
    let msg = Uuid::now_v7();
    activity::transition(
        &mut tx,
        &visit,
        ActivityStatus::Pending,
        None,
        None,
        ms(t0()),
    )
    .await
    .unwrap();
    activity::transition(
        &mut tx,
        &visit,
        ActivityStatus::Scheduled,
        None,
        None,
        ms(t0()) + 1,
    )
    .await
    .unwrap();
    activity::transition(
        &mut tx,
        &visit,
        ActivityStatus::Completed,
        None,
        Some(msg),
        ms(t0()) + 2,
    )
    .await
    .unwrap();
    // A retried step repeats its transitions: the first times stay.
    activity::transition(
        &mut tx,
        &visit,
        ActivityStatus::Pending,
        None,
        None,
        ms(t0()) + 50,
    )
    .await
    .unwrap();
    activity::transition(
        &mut tx,
        &visit,
        ActivityStatus::Completed,
        None,
        None,
        ms(t0()) + 51,
    )
    .await
    .unwrap();
    let c = Visit {
        node_id: "c",
        ..visit
    };
    activity::transition(
        &mut tx,
        &c,
        ActivityStatus::Failed,
        Some("template_paused"),
        None,
        ms(t0()) + 3,
    )
    .await
    .unwrap();
    let rows = activity_of(&mut tx, a.id).await;
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r.node_id == "a").unwrap();
    assert_eq!(
        (row.status, row.message_id, row.visit),
        (ActivityStatus::Completed, Some(msg), 1)
    );
    assert_eq!(row.pending_at, Some(t0()));
    assert_eq!(row.scheduled_at, Some(t0() + Duration::milliseconds(1)));
    assert_eq!(row.completed_at, Some(t0() + Duration::milliseconds(2)));

    // Blocked enrolments: once per trigger key, with the reason.
    assert!(
        activity::log_blocked(
            &mut tx,
            a.id,
            contact,
            "t",
            "k2",
            "frequency_capped",
            ms(t0()) + 4
        )
        .await
        .unwrap()
    );
    assert!(
        !activity::log_blocked(
            &mut tx,
            a.id,
            contact,
            "t",
            "k2",
            "frequency_capped",
            ms(t0()) + 5
        )
        .await
        .unwrap()
    );
    assert!(
        activity::log_blocked(
            &mut tx,
            a.id,
            Uuid::now_v7(),
            "t",
            "k3",
            "not_subscribed",
            ms(t0()) + 6
        )
        .await
        .unwrap()
    );

    let failed = activity::list(
        &mut tx,
        &(ActivityFilter {
            status: Some(ActivityStatus::Failed),
            limit: 10,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        failed
            .iter()
            .map(|r| r.reason.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("template_paused")]
    );
    let at_trigger = activity::list(
        &mut tx,
        &ActivityFilter {
            node_id: Some("t"),
            contact_id: Some(contact),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(at_trigger.len(), 1);
    assert!(at_trigger[0].run_id.is_none());
    // Cursor: newest first, then older.
    let first = activity::list(
        &mut tx,
        &ActivityFilter {
            automation_id: Some(a.id),
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rest = activity::list(
        &mut tx,
        &ActivityFilter {
            automation_id: Some(a.id),
            before: Some(first[1].id),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
    assert!(rest.iter().all(|r| r.id < first[1].id));

    let mut state = RunState::new();
    state.status = RunStatus::Failed;
    runs::save(
        &mut tx,
        run_id,
        &state,
        None,
        Some("template_paused"),
        ms(t0()) + 7,
    )
    .await
    .unwrap();
    let s = activity::stats(&mut tx, a.id).await.unwrap();
    assert_eq!(
        (s.enrolled, s.failed, s.completed, s.in_progress),
        (1, 1, 0, 0)
    );
    assert_eq!(s.failed_by_reason, vec![("template_paused".to_owned(), 1)]);
    let mut blocked = s.blocked_by_reason.clone();
    blocked.sort();
    assert_eq!(
        blocked,
        vec![
            ("frequency_capped".to_owned(), 1),
            ("not_subscribed".to_owned(), 1)
        ]
    );
    assert_eq!(s.messages_sent, 0, "the message id is not a stored message");
    tx.commit().await.unwrap();
}

/// A batch writes its activity in one statement: the rows must be what
/// the same transitions one by one leave, even when one visit moves twice
/// in the batch (one statement may not touch a row twice on PostgreSQL).
#[tokio::test]
async fn activity_written_together_equals_activity_written_one_by_one() {
    let (_app, mut tx, a) = activity_setup("auto-store-activity-many").await;
    let ctx = json!({});
    let contacts = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let new: Vec<NewRun<'_>> = contacts
        .iter()
        .map(|c| NewRun {
            automation_id: a.id,
            version: 1,
            contact_id: *c,
            trigger_key: "k",
            trigger_event_id: None,
            order_id: None,
            checkout_id: None,
            variant_id: None,
            context: &ctx,
        })
        .collect();
    // The third candidate repeats the first: one run each, in order.
    let mut with_repeat = new.clone();
    with_repeat[2] = new[0].clone();
    let made = runs::enrol_many(&mut tx, &with_repeat, ms(t0()))
        .await
        .unwrap();
    assert!(made[0].is_some() && made[1].is_some() && made[2].is_none());
    let again = runs::enrol_many(&mut tx, &new[..2], ms(t0()))
        .await
        .unwrap();
    assert!(again.iter().all(Option::is_none), "a run exists per key");
    let prior = runs::prior_many(&mut tx, a.id, &contacts, "k")
        .await
        .unwrap();
    assert_eq!(prior.len(), 2, "the third contact has no run");
    assert_eq!(prior[&contacts[0]], (true, Some(t0())));
    let other = runs::prior_many(&mut tx, a.id, &contacts, "k2")
        .await
        .unwrap();
    assert_eq!(other[&contacts[1]], (false, Some(t0())));

    let (one, many) = (made[0].as_ref().unwrap(), made[1].as_ref().unwrap());
    let msg = Uuid::now_v7();
    let steps = [
        ("a", ActivityStatus::Pending, None, None),
        ("a", ActivityStatus::Scheduled, None, None),
        ("a", ActivityStatus::Completed, None, Some(msg)),
        ("a", ActivityStatus::Pending, None, None),
        ("b", ActivityStatus::Failed, Some("template_paused"), None),
        ("b", ActivityStatus::Skipped, None, None),
    ];
    let visit = |run: &runs::Run, node: &'static str| Visit {
        run_id: run.id,
        automation_id: a.id,
        contact_id: run.contact_id,
        node_id: node,
        visit: 1,
    };
    for (node, status, reason, message) in steps {
        activity::transition(
            &mut tx,
            &visit(one, node),
            status,
            reason,
            message,
            ms(t0()),
        )
        .await
        .unwrap();
    }
    let batch: Vec<activity::Transition> = steps
        .iter()
        .map(|(node, status, reason, message)| {
            activity::Transition::new(
                &visit(many, node),
                *status,
                reason.map(str::to_owned),
                *message,
            )
        })
        .collect();
    activity::transition_many(&mut tx, &batch, ms(t0()))
        .await
        .unwrap();
    // A retried batch keeps the first times.
    activity::transition_many(&mut tx, &batch, ms(t0()) + 9)
        .await
        .unwrap();
    let rows = activity_of(&mut tx, a.id).await;
    let shape = |run: &runs::Run| {
        let mut of: Vec<_> = rows
            .iter()
            .filter(|r| r.run_id == Some(run.id))
            .map(|r| {
                (
                    r.node_id.clone(),
                    r.status,
                    r.reason.clone(),
                    r.message_id,
                    [
                        r.pending_at,
                        r.scheduled_at,
                        r.completed_at,
                        r.failed_at,
                        r.skipped_at,
                    ],
                )
            })
            .collect();
        of.sort_by(|x, y| x.0.cmp(&y.0));
        of
    };
    assert_eq!(shape(one).len(), 2);
    assert_eq!(shape(one), shape(many));
    let b = &shape(many)[1];
    assert_eq!(
        (b.1, b.2.as_deref(), b.4[3]),
        (ActivityStatus::Skipped, Some("template_paused"), Some(t0()))
    );
    tx.commit().await.unwrap();
}
