//! The automations API on both engines: CRUD with versions, bad input,
//! activation (validation naming nodes, the plan's limit), pause, resume,
//! recipes, the dry run (writes nothing), activity and stats.

use galantis_core::MarketingState;
use galantis_core::billing::Plan;
use galantis_core::{Permission, Role};
use galantis_store::tenant::automations::counts;
use galantis_store::tenant::billing;
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::templates::{self, SyncedTemplate};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn call(
    app: &TestApp,
    t: &TestTenant,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_as(app, &t.token, m, path, body).await
}

async fn call_as(
    app: &TestApp,
    token: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.request(m, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A template as Meta's sync would store it, with `status`.
async fn template(app: &TestApp, t: &TestTenant, name: &str, body: &str, status: &str) -> Uuid {
    let components = json!([{"type": "BODY", "text": body}]);
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let (id, _) = templates::upsert_synced(
        &mut tx,
        &SyncedTemplate {
            meta_template_id: &format!("meta-{name}"),
            name,
            language: "en",
            category: "MARKETING",
            status,
            rejection_reason: None,
            components: &components,
            parameter_format: "POSITIONAL",
        },
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn contact(
    app: &TestApp,
    t: &TestTenant,
    sid: i64,
    phone: &str,
    state: MarketingState,
) -> Uuid {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let f = CustomerFields {
        shopify_customer_id: sid,
        first_name: Some("Ana".into()),
        phone: Some(phone.into()),
        phone_raw: Some(phone.into()),
        phone_status: Some("valid"),
        marketing_state: Some(state),
        updated_at: 1,
        ..Default::default()
    };
    contacts::upsert_customer(&mut tx, &f, 1).await.unwrap();
    let id = contacts::by_shopify_id(&mut tx, sid)
        .await
        .unwrap()
        .unwrap()
        .id;
    tx.commit().await.unwrap();
    id
}

async fn set_plan(app: &TestApp, t: &TestTenant, plan: Plan) {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    billing::set_plan(&mut tx, plan, 0, chrono::Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Trigger → action → condition (reply) → yes/no actions.
fn flow(tpl: Value) -> Value {
    json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED", "position": {"x": 0, "y": 0}},
            {"id": "a", "type": "action", "template_id": tpl,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "d", "type": "delay", "amount": 1, "unit": "hours"},
            {"id": "b", "type": "action", "template_id": tpl,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "d"}, {"from": "d", "to": "b"}]
    })
}

fn body(name: &str, flow: Value) -> Value {
    json!({"name": name, "flow": flow, "frequency_cap": "24_HOURS"})
}

#[tokio::test]
async fn drafts_save_bad_input_is_refused_and_edits_of_running_flows_add_versions() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-crud").await;
    let other = app.create_tenant("auto-api-crud-other").await;
    let tpl = template(&app, &t, "hello", "Hi {{1}}", "APPROVED").await;

    // A draft without its template saves; activation would name the node.
    let mut draft = flow(json!(tpl));
    draft["nodes"][1]
        .as_object_mut()
        .unwrap()
        .remove("template_id");
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(body("Thanks", draft)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(
        (a["status"].as_str(), a["current_version"].as_i64()),
        (Some("INACTIVE"), Some(1))
    );
    assert!(
        a["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["blocking"] == true && i["node_id"] == "a"),
        "{a}"
    );
    let id = a["id"].as_str().unwrap().to_owned();
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("automation_invalid"))
    );
    assert!(
        e["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["node_id"] == "a"),
        "{e}"
    );

    // Malformed JSON, an unknown node type (named), a bad cap, a missing exclusion.
    let r = app
        .request(Method::POST, "/api/v1/automations", &t.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut bad = flow(json!(tpl));
    bad["nodes"][2] = json!({"id": "zz", "type": "teleport"});
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(body("Bad", bad)),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_flow"))
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("zz"),
        "{e}"
    );
    assert_eq!(e["error"]["details"][0]["node_id"], "zz", "{e}");
    let (s, _) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(json!({"name": "x", "flow": flow(json!(tpl)), "frequency_cap": "HOURLY"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(json!({"name": "x", "flow": flow(json!(tpl)), "exclusions": [{"type": "list", "id": Uuid::now_v7()}]})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_exclusion"))
    );

    // Unknown id, another tenant's id: 404. A role without the permission: 403.
    let unknown = Uuid::now_v7();
    for (m, p) in [
        (Method::GET, format!("/api/v1/automations/{unknown}")),
        (Method::GET, format!("/api/v1/automations/{id}/stats")),
        (Method::POST, format!("/api/v1/automations/{id}/activate")),
        (Method::DELETE, format!("/api/v1/automations/{id}")),
    ] {
        let (s, _) = call(&app, &other, m.clone(), &p, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}");
    }
    let (_, viewer) = app.add_member(&t, Role::Viewer).await;
    let (s, _) = call_as(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = call_as(
        &app,
        &viewer,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("automations.activate")
    );
    assert!(Role::MarketingManager.allows(Permission::AutomationsActivate));
    assert!(!Role::Analyst.allows(Permission::AutomationsActivate));

    // Editing a draft keeps version 1; activation stamps activated_at.
    let (s, a) = call(
        &app,
        &t,
        Method::PATCH,
        &format!("/api/v1/automations/{id}"),
        Some(json!({"flow": flow(json!(tpl))})),
    )
    .await;
    assert_eq!(
        (s, a["current_version"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{a}"
    );
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;
    assert_eq!(
        (s, a["status"].as_str()),
        (StatusCode::OK, Some("ACTIVE")),
        "{a}"
    );
    assert!(a["activated_at"].is_string());

    // Editing the ACTIVE flow adds version 2; an edit that would make it
    // invalid is refused and changes nothing.
    let mut v2 = flow(json!(tpl));
    v2["nodes"][2]["amount"] = json!(2);
    let (s, a) = call(
        &app,
        &t,
        Method::PATCH,
        &format!("/api/v1/automations/{id}"),
        Some(json!({"flow": v2})),
    )
    .await;
    assert_eq!(
        (s, a["current_version"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{a}"
    );
    let mut broken = flow(json!(tpl));
    broken["edges"] = json!([{"from": "t", "to": "a"}]);
    let (s, e) = call(
        &app,
        &t,
        Method::PATCH,
        &format!("/api/v1/automations/{id}"),
        Some(json!({"flow": broken})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("automation_invalid"))
    );
    let (_, a) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(a["current_version"], 2);
    assert_eq!(a["flow"]["nodes"][2]["amount"], 2);

    // An ACTIVE automation is not deleted; a paused one is.
    let (s, e) = call(
        &app,
        &t,
        Method::DELETE,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("automation_active"))
    );
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["status"].as_str()),
        (StatusCode::OK, Some("ACTIVE")),
        "resume of an active one: no-op"
    );
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/pause"),
        None,
    )
    .await;
    assert_eq!((s, a["status"].as_str()), (StatusCode::OK, Some("PAUSED")));
    let (s, _) = call(
        &app,
        &t,
        Method::DELETE,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, l) = call(&app, &t, Method::GET, "/api/v1/automations", None).await;
    assert_eq!(
        (s, l["data"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn activation_refuses_cycles_without_delay_and_unapproved_templates_naming_nodes() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-validate").await;
    let pending = template(&app, &t, "pending", "Hi {{1}}", "PENDING").await;
    let ok = template(&app, &t, "ok", "Hi {{1}}", "APPROVED").await;
    let var = json!({"1": {"source": "customer.first_name", "fallback": "there"}});
    let cyc = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
            {"id": "x", "type": "action", "template_id": ok, "variables": var},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [
                {"condition": "ORDER_VALUE", "operator": ">", "value": 100}]}},
            {"id": "y", "type": "action", "template_id": pending, "variables": var}
        ],
        "edges": [{"from": "t", "to": "x"}, {"from": "x", "to": "c"},
                  {"from": "c", "to": "x", "branch": "yes"}, {"from": "c", "to": "y", "branch": "no"}]
    });
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations",
        Some(body("Loop", cyc)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap();
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{id}/activate"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("automation_invalid"))
    );
    let details = e["error"]["details"].as_array().unwrap();
    assert!(
        details
            .iter()
            .any(|d| d["code"] == "cycle_without_delay" && d["node_id"].is_string()),
        "{e}"
    );
    assert!(
        details.iter().any(|d| d["node_id"] == "y"),
        "the unapproved template's node: {e}"
    );
    let (_, a) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/automations/{id}"),
        None,
    )
    .await;
    assert_eq!(a["status"], "INACTIVE", "nothing changed");
}

#[tokio::test]
async fn each_recipe_creates_a_valid_inactive_flow() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-recipes").await;
    let two = template(&app, &t, "two", "Hi {{1}}, here: {{2}}", "APPROVED").await;
    let one = template(&app, &t, "one", "Hi {{1}}", "APPROVED").await;
    let (s, seg) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/segments",
        Some(json!({"name": "VIP", "rules": {"groups": [{"conditions": [
            {"field": "total_spent", "operator": ">", "value": 500}]}]}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{seg}");
    let recipes = [
        "abandoned_checkout",
        "welcome",
        "vip_winback",
        "cross_sell",
        "back_in_stock",
        "order_confirmation",
        "shipping_update",
    ];
    for r in recipes {
        let kind = galantis_core::automation::RecipeKind::parse(r).unwrap();
        let mut b = json!({"recipe": r, "template_ids": {kind.slots()[0]: two}});
        if r == "vip_winback" {
            b["segment_id"] = seg["id"].clone();
        }
        let (s, a) = call(
            &app,
            &t,
            Method::POST,
            "/api/v1/automations/from-recipe",
            Some(b),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{r}: {a}");
        assert_eq!(a["status"], "INACTIVE", "{r}");
        assert!(a["frequency_cap"].is_string(), "{r}");
        assert!(
            !a["issues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["blocking"] == true),
            "{r}: {a}"
        );
    }
    // A one-parameter template gets one variable.
    let (s, a) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/automations/from-recipe",
        Some(json!({"recipe": "abandoned_checkout", "template_ids": {"standard": one}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for n in a["flow"]["nodes"].as_array().unwrap() {
        if n["type"] == "action" {
            assert_eq!(n["variables"].as_object().unwrap().len(), 1, "{n}");
        }
    }
    for (b, code) in [
        (
            json!({"recipe": "nope", "template_ids": {}}),
            "unknown_recipe",
        ),
        (
            json!({"recipe": "welcome", "template_ids": {}}),
            "invalid_field",
        ),
        (
            json!({"recipe": "welcome", "template_ids": {"bogus": one}}),
            "invalid_field",
        ),
        (
            json!({"recipe": "welcome", "template_ids": {"welcome": Uuid::now_v7()}}),
            "template_not_found",
        ),
        (
            json!({"recipe": "vip_winback", "template_ids": {"winback": one}}),
            "invalid_field",
        ),
    ] {
        let (s, e) = call(
            &app,
            &t,
            Method::POST,
            "/api/v1/automations/from-recipe",
            Some(b.clone()),
        )
        .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{b}"
        );
    }
}

#[tokio::test]
async fn the_plan_limits_enabled_automations() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("auto-api-plan").await;
    let tpl = template(&app, &t, "hello", "Hi {{1}}", "APPROVED").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, a) = call(
            &app,
            &t,
            Method::POST,
            "/api/v1/automations",
            Some(body(&format!("A{i}"), flow(json!(tpl)))),
        )
        .await;
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    let activate = |id: &str| format!("/api/v1/automations/{id}/activate");
    // TRIAL allows one; a paused one still counts.
    let (s, _) = call(&app, &t, Method::POST, &activate(&ids[0]), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = call(&app, &t, Method::POST, &activate(&ids[1]), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (
            StatusCode::PAYMENT_REQUIRED,
            Some("automation_limit_reached")
        )
    );
    call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{}/pause", ids[0]),
        None,
    )
    .await;
    let (s, _) = call(&app, &t, Method::POST, &activate(&ids[1]), None).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED);
    // Activating the paused one again is not a new one.
    let (s, a) = call(&app, &t, Method::POST, &activate(&ids[0]), None).await;
    assert_eq!((s, a["status"].as_str()), (StatusCode::OK, Some("ACTIVE")));
    set_plan(&app, &t, Plan::Growth).await;
    for id in &ids[1..] {
        let (s, a) = call(&app, &t, Method::POST, &activate(id), None).await;
        assert_eq!(s, StatusCode::OK, "{a}");
    }
    let (s, e) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/automations/{}/resume", Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

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
