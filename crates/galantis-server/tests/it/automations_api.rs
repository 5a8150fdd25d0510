//! The automations API on both engines: CRUD with versions, bad input,
//! activation (validation naming nodes, the plan's limit), pause, resume,
//! recipes (the dry run, activity and stats: `automations_dry_run`).

use galantis_core::MarketingState;
use galantis_core::billing::Plan;
use galantis_core::{Permission, Role};
use galantis_store::tenant::billing;
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::templates::{self, SyncedTemplate};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) async fn call(
    app: &TestApp,
    t: &TestTenant,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_as(app, &t.token, m, path, body).await
}

pub(crate) async fn call_as(
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
pub(crate) async fn template(
    app: &TestApp,
    t: &TestTenant,
    name: &str,
    body: &str,
    status: &str,
) -> Uuid {
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

pub(crate) async fn contact(
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

pub(crate) async fn set_plan(app: &TestApp, t: &TestTenant, plan: Plan) {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    billing::set_plan(&mut tx, plan, 0, chrono::Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Trigger → action → condition (reply) → yes/no actions.
pub(crate) fn flow(tpl: Value) -> Value {
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

pub(crate) fn body(name: &str, flow: Value) -> Value {
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
