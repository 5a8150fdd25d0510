//! The automations API's dry run (nothing sent, nothing written), the
//! activity log and stats, on both engines.

use galantis_core::MarketingState;
use galantis_store::tenant::automations::counts;
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::automations_api::{body, call, contact, flow, template};

#[tokio::test]
async fn a_dry_run_shows_gate_path_and_text_and_writes_nothing() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-dry").await;
    let std_t = template(&app, &t, "std", "Hola {{1}}, tu carrito: {{2}}", "APPROVED").await;
    let vip_t = template(&app, &t, "vip", "VIP {{1}}: {{2}}", "APPROVED").await;
    let ana = contact(&app, &t, 1, "+525512345678", MarketingState::Subscribed).await;
    let out = contact(&app, &t, 2, "+34612345678", MarketingState::Unsubscribed).await;
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations/from-recipe",
        Some(json!({"recipe": "abandoned_checkout", "template_ids": {"standard": std_t, "vip": vip_t}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;

    let snapshot = || async {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let c = counts::row_counts(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let (_, jobs) = call(&app, &t, Method::GET, "/api/v1/jobs", None).await;
        (c, jobs)
    };
    let before = snapshot().await;
    let dry = format!("/api/v1/automations/{id}/dry-run");
    let event = json!({"checkout.total_price": "150.00", "checkout.recovery_url": "https://shop.example/r/1"});
    let (s, r) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": ana, "event": event})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["gate"]["passed"], true);
    let path = r["path"].as_array().unwrap();
    assert!(
        path.iter()
            .any(|p| p["node_id"] == "is_vip" && p["branch"] == "yes"),
        "{r}"
    );
    assert!(path.iter().any(|p| p["event"] == "waits"), "{r}");
    let msgs = r["messages"].as_array().unwrap();
    assert!(!msgs.is_empty(), "{r}");
    assert_eq!(msgs[0]["text"], "VIP Ana: https://shop.example/r/1", "{r}");
    assert_eq!(msgs[0]["template_name"], "vip");

    // Under 100: the standard branch.
    let (_, r) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": ana, "event": {"checkout.total_price": 20, "checkout.recovery_url": "u"}})),
    )
    .await;
    assert_eq!(r["messages"][0]["text"], "Hola Ana, tu carrito: u", "{r}");

    // An unsubscribed contact: the consent gate blocks.
    let (s, r) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": out, "event": {}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            r["gate"]["passed"].as_bool(),
            r["gate"]["blocked_by"].as_str()
        ),
        (Some(false), Some("not_subscribed"))
    );
    assert!(r["path"].as_array().unwrap().is_empty());

    // Bad input.
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": Uuid::now_v7()})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_contact"))
    );
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": ana, "event": {"order.bogus": 1}})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
    let (s, _) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{}/dry-run", Uuid::now_v7()),
        Some(json!({"contact_id": ana})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let after = snapshot().await;
    assert_eq!(before, after, "a dry run writes nothing");

    // Activity and stats are empty but answer; the contact page has its section.
    let (s, act) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/activity?contact_id={ana}&status=SKIPPED"),
        None,
    )
    .await;
    assert_eq!(
        (s, act["data"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (s, e) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/activity?status=NOPE"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
    let (s, st) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/stats"),
        None,
    )
    .await;
    assert_eq!(
        (s, st["enrolled"].as_i64(), st["messages"]["sent"].as_i64()),
        (StatusCode::OK, Some(0), Some(0))
    );
    let (s, c) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/contacts/{ana}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(c["automation_activity"].is_array(), "{c}");
}

#[tokio::test]
async fn activity_lists_blocked_enrolments_with_filters_and_stats_count_them() {
    use galantis_store::tenant::automations::activity;
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-activity").await;
    let tpl = template(&app, &t, "hello", "Hi {{1}}", "APPROVED").await;
    let ana = contact(&app, &t, 1, "+525512345678", MarketingState::Subscribed).await;
    let (_, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(body("A", flow(json!(tpl)))),
    )
    .await;
    let id: Uuid = a["id"].as_str().unwrap().parse().unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    for (i, reason) in ["not_subscribed", "frequency_capped", "frequency_capped"]
        .iter()
        .enumerate()
    {
        activity::log_blocked(
            &mut tx,
            id,
            ana,
            "t",
            &format!("k{i}"),
            reason,
            1_000 + i as i64,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let (s, p) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/activity?limit=2&node_id=t"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["data"].as_array().unwrap().len(), 2);
    let cursor = p["next_cursor"].as_str().unwrap();
    let (_, p2) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/activity?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert!(p2["next_cursor"].is_null());
    let (_, none) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/activity?node_id=a"),
        None,
    )
    .await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let (_, st) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}/stats"),
        None,
    )
    .await;
    assert_eq!(st["blocked_by_reason"]["frequency_capped"], 2, "{st}");
    assert_eq!(st["blocked_by_reason"]["not_subscribed"], 1, "{st}");
    let (_, c) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/contacts/{ana}"),
        None,
    )
    .await;
    assert_eq!(c["automation_activity"].as_array().unwrap().len(), 3, "{c}");
}

#[tokio::test]
async fn a_dry_run_follows_delays_and_shows_a_paused_template_failing_its_node() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-dry-delay").await;
    let tpl = template(&app, &t, "hello", "Hi {{1}}", "APPROVED").await;
    let ana = contact(&app, &t, 1, "+525512345678", MarketingState::Subscribed).await;
    let (_, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(body("A", flow(json!(tpl)))),
    )
    .await;
    let id = a["id"].as_str().unwrap().to_owned();
    let dry = format!("/api/v1/automations/{id}/dry-run");
    let (s, r) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": ana})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ended"], "COMPLETED", "{r}");
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{r}");
    assert_eq!(msgs[0]["text"], "Hi Ana");
    let first: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(msgs[0]["at"].clone()).unwrap();
    let second: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(msgs[1]["at"].clone()).unwrap();
    assert_eq!(
        second - first,
        chrono::Duration::hours(1),
        "the delay is simulated: {r}"
    );

    // Meta pauses the template: the action node fails with the reason.
    template(&app, &t, "hello", "Hi {{1}}", "PAUSED").await;
    let (_, r) = call(
        &app,
        &t,
        Method::POST,
        &dry,
        Some(json!({"contact_id": ana})),
    )
    .await;
    assert_eq!(r["ended"], "FAILED", "{r}");
    assert!(
        r["path"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == "a"
                && p["event"] == "failed"
                && p["reason"] == "template_paused"),
        "{r}"
    );
    assert!(r["messages"].as_array().unwrap().is_empty());
}
