//! `include_existing_users` at activation through the API (through the
//! gate, once), and an edit of an ACTIVE flow: a new version for new runs
//! while a running one keeps its own.
//! Both engines, a fixed clock, the queue drained by the test.

use chrono::Duration;
use galantis_core::automation::{ActivityStatus, RunStatus};
use galantis_core::{DomainEvent, MarketingState};
use galantis_store::tenant::lists;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::automations_api::call;
use crate::automations_support::env;

#[tokio::test]
async fn automations_include_existing_users_enrols_list_members_once_at_activation() {
    let e = env("auto-facts-existing").await;
    let member = e
        .contact(1, "+16135550136", MarketingState::Subscribed)
        .await;
    let unsubscribed = e
        .contact(2, "+16135550137", MarketingState::Unsubscribed)
        .await;
    let outsider = e
        .contact(3, "+16135550138", MarketingState::Subscribed)
        .await;
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let list = lists::create(&mut tx, "VIPs", None, 0).await.unwrap();
    lists::add_members(&mut tx, list.id, &[member, unsubscribed], "api", 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let flow = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "USER_ADDED_TO_LIST", "list_id": list.id},
            {"id": "d", "type": "delay", "amount": 1, "unit": "days"},
            {"id": "a", "type": "action", "template_id": e.one_var,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
    });
    let (s, a) = call(
        &e.app,
        &e.t,
        Method::POST,
        "/api/v1/automations",
        Some(
            json!({"name": "Welcome VIPs", "flow": flow, "frequency_cap": "7_DAYS",
                    "include_existing_users": true}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    let activate = format!("/api/v1/automations/{id}/activate");
    let (s, a) = call(&e.app, &e.t, Method::POST, &activate, None).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let auto = {
        let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
        let a = galantis_store::tenant::automations::get(&mut tx, id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        a
    };
    e.app.run_jobs_until_idle().await;
    let runs = e.runs(&auto).await;
    assert_eq!(
        runs.iter()
            .map(|r| (r.contact_id, r.status))
            .collect::<Vec<_>>(),
        vec![(member, RunStatus::Waiting)],
        "the subscribed member only"
    );
    let refused = e.trail(&auto, unsubscribed).await;
    assert_eq!(
        refused,
        vec![(
            "t".into(),
            ActivityStatus::Skipped,
            Some("not_subscribed".into())
        )],
        "the gate logs its refusal"
    );
    assert!(e.trail(&auto, outsider).await.is_empty());

    // Activating again (idempotent), or pausing and activating: nobody
    // enrols twice.
    let (s, _) = call(&e.app, &e.t, Method::POST, &activate, None).await;
    assert_eq!(s, StatusCode::OK);
    e.clock.advance(Duration::hours(1));
    let (s, _) = call(
        &e.app,
        &e.t,
        Method::POST,
        &format!("/api/v1/automations/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&e.app, &e.t, Method::POST, &activate, None).await;
    assert_eq!(s, StatusCode::OK);
    e.app.run_jobs_until_idle().await;
    assert_eq!(e.runs(&auto).await.len(), 1, "one run for the member");
    e.app.advance_clock_and_run(Duration::days(1)).await;
    assert_eq!(e.messages().await.len(), 1, "one message");
}

#[tokio::test]
async fn automations_an_edit_of_an_active_flow_is_a_new_version_and_running_runs_keep_theirs() {
    let e = env("auto-facts-versions").await;
    let first = e
        .contact(1, "+16135550139", MarketingState::Subscribed)
        .await;
    let second = e
        .contact(2, "+16135550140", MarketingState::Subscribed)
        .await;
    let v1 = |tpl: Uuid, two: bool| {
        let mut vars = json!({"1": {"source": "customer.first_name", "fallback": "there"}});
        if two {
            vars["2"] = json!({"source": "customer.first_name", "fallback": "there"});
        }
        json!({
            "nodes": [
                {"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": "vip"},
                {"id": "d", "type": "delay", "amount": 30, "unit": "minutes"},
                {"id": "a", "type": "action", "template_id": tpl, "variables": vars}
            ],
            "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
        })
    };
    let (s, a) = call(
        &e.app,
        &e.t,
        Method::POST,
        "/api/v1/automations",
        Some(json!({"name": "VIP", "flow": v1(e.one_var, false), "frequency_cap": "24_HOURS"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id: Uuid = a["id"].as_str().unwrap().parse().unwrap();
    let (s, a) = call(
        &e.app,
        &e.t,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    e.clock.advance(Duration::seconds(1));
    e.record(DomainEvent::CustomerTagged {
        contact_id: first,
        tag: "vip".into(),
    })
    .await;
    e.app.run_jobs_until_idle().await;

    // The edit: another template at the action.
    e.clock.advance(Duration::minutes(10));
    let (s, a) = call(
        &e.app,
        &e.t,
        Method::PATCH,
        &format!("/api/v1/automations/{id}"),
        Some(json!({"flow": v1(e.two_vars, true)})),
    )
    .await;
    assert_eq!(
        (s, a["current_version"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{a}"
    );
    e.record(DomainEvent::CustomerTagged {
        contact_id: second,
        tag: "vip".into(),
    })
    .await;
    e.app.run_jobs_until_idle().await;
    let auto = {
        let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
        let a = galantis_store::tenant::automations::get(&mut tx, id)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        a
    };
    let mut versions: Vec<(Uuid, i32)> = e
        .runs(&auto)
        .await
        .into_iter()
        .map(|r| (r.contact_id, r.version))
        .collect();
    versions.sort();
    let mut want = vec![(first, 1), (second, 2)];
    want.sort();
    assert_eq!(versions, want);

    // Each run sends its own version's template.
    e.app.advance_clock_and_run(Duration::minutes(30)).await;
    let mut sent: Vec<(Uuid, Option<String>)> = e
        .messages()
        .await
        .into_iter()
        .map(|m| (m.contact_id, m.template_name))
        .collect();
    sent.sort();
    let mut want = vec![
        (first, Some("promo".to_owned())),
        (second, Some("order_update".to_owned())),
    ];
    want.sort();
    assert_eq!(sent, want);
}
