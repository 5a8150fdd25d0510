//! The inbox over real HTTP: conversations listed and filtered, replies
//! through the one send path (inside the window, templates outside it),
//! internal notes that are never sent, assignment, read state, roles,
//! quick replies, and analytics on a fixed clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use galantis_core::clock::FixedClock;
use galantis_core::{MemberId, Role};
use galantis_sandbox::meta::{DEV_PHONE_NUMBER_ID, DEV_WABA_ID};
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::sending;
use galantis_testkit::{TEST_SANDBOX_TOKEN, TestApp, TestTenant, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::webhooks::{events_of, meta, settled_ok};

/// The sandbox's development customer.
const DEV_WA: &str = "15551234567";
const ES_WA: &str = "34612345678";

/// A tenant on the embedded sandbox's development number, templates synced.
async fn sandbox_tenant(app: &TestApp, name: &str) -> TestTenant {
    let t = app.create_tenant(name).await;
    let mut ctl = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut ctl,
        t.id,
        &PhoneNumberLink {
            phone_number_id: DEV_PHONE_NUMBER_ID.into(),
            waba_id: DEV_WABA_ID.into(),
        },
        true,
    )
    .await
    .unwrap();
    ctl.commit().await.unwrap();
    let (s, b) = call(
        app,
        &t.token,
        Method::POST,
        "/api/v1/templates/sync",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    t
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.request(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (s, b) = call(app, token, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {b}");
    b
}

/// A text message from `wa` to the development number, as Meta sends it.
async fn inbound(app: &TestApp, t: &TestTenant, wa: &str, wamid: &str, text: &str, at: i64) {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": DEV_WABA_ID,
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": DEV_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Lucía Pérez"}, "wa_id": wa}],
            "messages": [{"from": wa, "id": wamid, "timestamp": at.to_string(), "type": "text",
                          "text": {"body": text}}]}}]}]});
    let r = meta(app, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.run_jobs_until_idle().await;
    // With workers on, one of them may hold the job a moment longer.
    settled_ok(app, t).await;
}

fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap().parse().unwrap()
}

async fn outbound_count(app: &TestApp, t: &TestTenant) -> usize {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let all = sending::list_outbound(
        &mut tx,
        &sending::OutboundFilter {
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    all.len()
}

async fn sandbox_accepted(app: &TestApp) -> i64 {
    let c: Value = app
        .client
        .get(app.url("/sandbox-meta/sandbox/counters"))
        .bearer_auth(TEST_SANDBOX_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    c["accepted"].as_i64().unwrap_or(0)
}

async fn open_sandbox_window(app: &TestApp, wa: &str) {
    let r = app
        .client
        .post(app.url("/sandbox-meta/sandbox/windows"))
        .bearer_auth(TEST_SANDBOX_TOKEN)
        .json(&json!({"wa_id": wa}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

fn conversations(page: &Value) -> Vec<Value> {
    page["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn agents_list_read_and_reply_and_other_roles_and_tenants_cannot() {
    let app = TestApp::builder().sandbox().spawn().await;
    let t = sandbox_tenant(&app, "inbox-main").await;
    let other = app.create_tenant("inbox-other").await;
    let (agent_id, agent) = app.add_member(&t, Role::SupportAgent).await;
    let (_, marketing) = app.add_member(&t, Role::MarketingManager).await;
    let (_, operator) = app.add_member(&t, Role::CampaignOperator).await;
    let (_, viewer) = app.add_member(&t, Role::Viewer).await;
    let now = Utc::now().timestamp();
    inbound(&app, &t, DEV_WA, "wamid.in-1", "Hola, ¿mi pedido?", now).await;

    // Listed, unread, unassigned, with a preview; filters.
    let page = get(&app, &agent, "/api/v1/conversations").await;
    let list = conversations(&page);
    assert_eq!(list.len(), 1, "{page}");
    let c = &list[0];
    let conv = id_of(c);
    assert_eq!(c["status"], "OPEN");
    assert_eq!(c["unread_count"], 1);
    assert_eq!(c["last_message_preview"], "Hola, ¿mi pedido?");
    assert!(c["assignee_id"].is_null());
    for (q, n) in [
        ("unread=true", 1),
        ("assignee=unassigned", 1),
        ("assignee=me", 0),
        ("status=open", 1),
        ("status=RESOLVED", 0),
        ("q=555%20123", 1),
        ("q=%25", 0),
        ("q=nobody", 0),
    ] {
        let p = get(&app, &agent, &format!("/api/v1/conversations?{q}")).await;
        assert_eq!(conversations(&p).len(), n, "{q}: {p}");
    }
    for (q, code) in [
        ("status=DONE", "invalid_status"),
        ("assignee=someone", "invalid_assignee"),
        ("cursor=not-ours", "invalid_cursor"),
        ("q=a%00b", "invalid_field"),
    ] {
        let (s, b) = call(
            &app,
            &agent,
            Method::GET,
            &format!("/api/v1/conversations?{q}"),
            None,
        )
        .await;
        assert!(s.is_client_error(), "{q}: {s}");
        assert_eq!(b["error"]["code"], code, "{q}: {b}");
    }
    // A viewer reads the inbox; nobody but the inbox's roles writes in it.
    get(&app, &viewer, &format!("/api/v1/conversations/{conv}")).await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    for token in [&marketing, &operator, &viewer] {
        let (s, _) = call(
            &app,
            token,
            Method::POST,
            &path,
            Some(json!({"text": "hi"})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    // A support agent sends nothing outside the inbox.
    let (s, _) = call(
        &app,
        &agent,
        Method::POST,
        "/api/v1/messages",
        Some(json!({"contact_id": c["contact_id"], "text": {"body": "hi"}})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Another tenant's token: every route answers 404.
    for (m, p, body) in [
        (Method::GET, format!("/api/v1/conversations/{conv}"), None),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{conv}"),
            Some(json!({"status": "RESOLVED"})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{conv}/read"),
            None,
        ),
        (Method::POST, path.clone(), Some(json!({"text": "hi"}))),
        (Method::POST, path.clone(), Some(json!({"note": "hi"}))),
    ] {
        let (s, b) = call(&app, &other.token, m.clone(), &p, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}: {b}");
    }
    assert!(conversations(&get(&app, &other.token, "/api/v1/conversations").await).is_empty());

    // Bad replies: 4xx, nothing queued.
    for body in [
        json!({}),
        json!({"text": "a", "note": "b"}),
        json!({"text": "  "}),
        json!({"image": {"link": "https://x.example/a.png", "id": "123"}}),
        json!({"image": {"link": "ftp://x.example/a.png"}}),
        json!({"audio": {"id": "123", "caption": "no"}}),
        json!({"video": {"id": "1", "filename": "x"}}),
        json!({"note": ""}),
        json!({"note": "a\u{0}b"}),
        json!({"text": "evil \u{202E}txt"}),
        json!({"template": {"name": "", "language": "en"}}),
    ] {
        let (s, b) = call(&app, &agent, Method::POST, &path, Some(body.clone())).await;
        assert!(s.is_client_error(), "{body}: {s} {b}");
    }
    assert_eq!(outbound_count(&app, &t).await, 0);

    // A note: shown to members, never sent.
    let (s, note) = call(
        &app,
        &agent,
        Method::POST,
        &path,
        Some(json!({"note": "VIP, be nice"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{note}");
    assert_eq!(outbound_count(&app, &t).await, 0);
    let detail = get(&app, &agent, &format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(detail["notes"][0]["body"], "VIP, be nice");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 1);
    assert_eq!(detail["service_window"]["open"], true);
    assert!(detail["service_window"]["expires_at"].is_string());
    assert_eq!(detail["contact"]["phone"], "+15551234567");
    assert_eq!(detail["contact"]["orders_count"], 0);

    // The support agent replies inside the window: queued through the send
    // path, and the unassigned conversation becomes theirs.
    open_sandbox_window(&app, DEV_WA).await;
    let (s, m) = call(
        &app,
        &agent,
        Method::POST,
        &path,
        Some(json!({"text": "¡Hola! Ya sale hoy.", "idempotency_key": "reply-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{m}");
    assert_eq!(m["source"], "inbox");
    assert_eq!(m["auto_assigned"], true);
    // The same key: the same message, nothing new.
    let (s, again) = call(
        &app,
        &agent,
        Method::POST,
        &path,
        Some(json!({"text": "¡Hola! Ya sale hoy.", "idempotency_key": "reply-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["id"], m["id"]);
    let mine = get(&app, &agent, "/api/v1/conversations?assignee=me").await;
    assert_eq!(conversations(&mine).len(), 1);
    assert_eq!(conversations(&mine)[0]["assignee_id"], agent_id.to_string());
    let by_id = get(
        &app,
        &t.token,
        &format!("/api/v1/conversations?assignee={agent_id}"),
    )
    .await;
    assert_eq!(conversations(&by_id).len(), 1);

    // Auto-assignment happens once: unassigned by hand, a later reply
    // leaves it unassigned.
    let (s, b) = call(
        &app,
        &t.token,
        Method::PATCH,
        &format!("/api/v1/conversations/{conv}"),
        Some(json!({"assignee_id": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["assignee_id"].is_null());
    let (s, m2) = call(
        &app,
        &agent,
        Method::POST,
        &path,
        Some(json!({"image": {"link": "https://cdn.example/p.jpg", "caption": "Tu pedido"}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{m2}");
    assert_eq!(m2["auto_assigned"], false);
    assert_eq!(m2["type"], "image");
    let c = get(&app, &agent, &format!("/api/v1/conversations/{conv}")).await;
    assert!(c["conversation"]["assignee_id"].is_null());

    // The key may come as the `Idempotency-Key` header.
    let mut ids = Vec::new();
    for expected in [StatusCode::ACCEPTED, StatusCode::OK] {
        let r = app
            .request(Method::POST, &path, &agent)
            .header("idempotency-key", "hdr-1")
            .json(&json!({"text": "¿Algo más?"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
        ids.push(id_of(&r.json::<Value>().await.unwrap()));
    }
    assert_eq!(ids[0], ids[1]);

    // A template reply goes out through the sandbox.
    let before = sandbox_accepted(&app).await;
    let (s, tpl) = call(
        &app,
        &agent,
        Method::POST,
        &path,
        Some(json!({"template": {"name": "hello_world", "language": "en_US"}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{tpl}");
    let tpl_id = id_of(&tpl);
    eventually("the template reply is accepted by the sandbox", || async {
        let d = get(&app, &agent, &format!("/api/v1/conversations/{conv}")).await;
        d["messages"].as_array().unwrap().iter().any(|m| {
            m["id"] == tpl_id.to_string()
                && ["SENT", "DELIVERED", "READ"].contains(&m["status"].as_str().unwrap())
        })
    })
    .await;
    assert!(sandbox_accepted(&app).await > before);
    let d = get(&app, &agent, &format!("/api/v1/conversations/{conv}")).await;
    let kinds: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["inbound", "outbound", "outbound", "outbound", "outbound"]
    );

    // Read: unread back to zero, announced.
    let (s, r) = call(
        &app,
        &agent,
        Method::POST,
        &format!("/api/v1/conversations/{conv}/read"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["unread_count"], 0);
    assert!(
        conversations(&get(&app, &agent, "/api/v1/conversations?unread=true").await).is_empty()
    );
    let updates = events_of(&app, &t, "ConversationUpdated").await;
    let changes: Vec<&str> = updates
        .iter()
        .map(|e| e["payload"]["change"].as_str().unwrap_or_default())
        .collect();
    for c in ["auto_assignment", "assignment", "read"] {
        assert!(changes.contains(&c), "{c} in {changes:?}");
    }
}

#[tokio::test]
async fn resolved_reopens_on_inbound_and_stop_shows_unsubscribed() {
    let app = TestApp::builder().sandbox().without_workers().spawn().await;
    let t = sandbox_tenant(&app, "inbox-reopen").await;
    let (_, agent) = app.add_member(&t, Role::SupportAgent).await;
    let now = Utc::now().timestamp();
    inbound(&app, &t, ES_WA, "wamid.r-1", "¿Hay talla M?", now).await;
    let conv = id_of(&conversations(&get(&app, &agent, "/api/v1/conversations").await)[0]);
    let patch = format!("/api/v1/conversations/{conv}");
    for (body, code) in [
        (json!({}), "invalid_field"),
        (json!({"status": "DONE"}), "invalid_status"),
        (
            json!({"assignee_id": MemberId::new().to_string()}),
            "unknown_member",
        ),
        (json!({"assignee_id": 5}), "invalid_field"),
    ] {
        let (s, b) = call(&app, &agent, Method::PATCH, &patch, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(b["error"]["code"], code, "{body}: {b}");
    }
    let (s, b) = call(
        &app,
        &agent,
        Method::PATCH,
        &patch,
        Some(json!({"status": "RESOLVED"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "RESOLVED");
    assert_eq!(
        conversations(&get(&app, &agent, "/api/v1/conversations?status=RESOLVED").await).len(),
        1
    );
    inbound(&app, &t, ES_WA, "wamid.r-2", "Otra pregunta", now + 5).await;
    let d = get(&app, &agent, &patch).await;
    assert_eq!(d["conversation"]["status"], "OPEN");
    let created = events_of(&app, &t, "ConversationMessageCreated").await;
    assert!(
        created.iter().any(|e| e["payload"]["reopened"] == true),
        "{created:?}"
    );
    let updated = events_of(&app, &t, "ConversationUpdated").await;
    assert!(updated.iter().any(|e| e["payload"]["status"] == "RESOLVED"));

    inbound(&app, &t, ES_WA, "wamid.r-3", "STOP", now + 10).await;
    let d = get(&app, &agent, &patch).await;
    assert_eq!(d["contact"]["marketing_state"], "UNSUBSCRIBED", "{d}");
    assert_eq!(d["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn quick_replies_are_per_tenant() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("qr-a").await;
    let other = app.create_tenant("qr-b").await;
    let (_, agent) = app.add_member(&t, Role::SupportAgent).await;
    let path = "/api/v1/quick-replies";
    let (s, q) = call(
        &app,
        &agent,
        Method::POST,
        path,
        Some(json!({"shortcut": "Shipping", "body": "Ships in 2 days."})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{q}");
    assert_eq!(q["shortcut"], "shipping");
    let (s, b) = call(
        &app,
        &agent,
        Method::POST,
        path,
        Some(json!({"shortcut": "shipping", "body": "again"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    for body in [
        json!({"shortcut": "two words", "body": "x"}),
        json!({"shortcut": "ok", "body": " "}),
        json!({"shortcut": "ok"}),
    ] {
        let (s, _) = call(&app, &agent, Method::POST, path, Some(body.clone())).await;
        assert!(s.is_client_error(), "{body}");
    }
    assert_eq!(
        get(&app, &agent, path).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        get(&app, &other.token, path).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let one = format!("{path}/{}", id_of(&q));
    let (s, _) = call(&app, &other.token, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, &agent, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, &agent, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// 2026-03-02T10:00:00Z.
fn t0() -> DateTime<Utc> {
    "2026-03-02T10:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn analytics_on_a_fixed_scenario_and_no_free_form_after_the_window() {
    let clock = Arc::new(FixedClock::new(t0()));
    let app = TestApp::builder()
        .sandbox()
        .without_workers()
        .fixed_clock(clock.clone())
        .spawn()
        .await;
    let t = sandbox_tenant(&app, "inbox-analytics").await;
    let (a1, agent1) = app.add_member(&t, Role::SupportAgent).await;
    let (a2, agent2) = app.add_member(&t, Role::SupportAgent).await;
    let (_, analyst) = app.add_member(&t, Role::DataAnalyst).await;
    let at = |secs: i64| t0() + Duration::seconds(secs);
    clock.set(at(30));
    inbound(&app, &t, DEV_WA, "wamid.a-1", "Hola", at(0).timestamp()).await;
    inbound(&app, &t, ES_WA, "wamid.b-1", "Hi", at(30).timestamp()).await;
    let list = conversations(&get(&app, &agent1, "/api/v1/conversations").await);
    // Most recent activity first.
    let (conv_b, conv_a) = (id_of(&list[0]), id_of(&list[1]));
    let reply = |c: Uuid| format!("/api/v1/conversations/{c}/messages");
    // One at a time: the cursor walks the same order, nothing twice.
    let p1 = get(&app, &agent1, "/api/v1/conversations?limit=1").await;
    assert_eq!(id_of(&conversations(&p1)[0]), conv_b);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = get(
        &app,
        &agent1,
        &format!("/api/v1/conversations?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(id_of(&conversations(&p2)[0]), conv_a);
    assert!(p2["next_cursor"].is_null(), "{p2}");

    clock.set(at(60));
    let (s, _) = call(
        &app,
        &agent1,
        Method::POST,
        &reply(conv_a),
        Some(json!({"text": "Hola"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    clock.set(at(120));
    let (s, _) = call(
        &app,
        &agent1,
        Method::POST,
        &reply(conv_a),
        Some(json!({"text": "¿Algo más?"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    clock.set(at(330));
    let (s, _) = call(
        &app,
        &agent2,
        Method::POST,
        &reply(conv_b),
        Some(json!({"text": "Hello"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = call(
        &app,
        &agent2,
        Method::POST,
        &reply(conv_b),
        Some(json!({"note": "follow up"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    clock.set(at(600));
    let (s, _) = call(
        &app,
        &agent1,
        Method::PATCH,
        &format!("/api/v1/conversations/{conv_a}"),
        Some(json!({"status": "RESOLVED"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = call(&app, &agent1, Method::GET, "/api/v1/inbox/analytics", None).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "support agents do not read analytics"
    );
    let r = get(
        &app,
        &analyst,
        "/api/v1/inbox/analytics?from=2026-03-02&to=2026-03-02",
    )
    .await;
    assert_eq!(r["volume"]["conversations"], 2, "{r}");
    assert_eq!(r["volume"]["inbound_messages"], 2);
    assert_eq!(r["volume"]["replies"], 3);
    assert_eq!(r["first_response"]["count"], 2);
    assert_eq!(r["first_response"]["avg_ms"], 180_000);
    assert_eq!(r["first_response"]["median_ms"], 180_000);
    assert_eq!(r["first_response"]["unanswered"], 0);
    assert_eq!(r["resolution"]["count"], 1);
    assert_eq!(r["resolution"]["avg_ms"], 600_000);
    let agent = |id: MemberId| {
        r["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["member_id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    assert_eq!(
        agent(a1),
        json!({"member_id": a1.to_string(), "replies": 2, "first_responses": 1, "resolved": 1, "notes": 0})
    );
    assert_eq!(
        agent(a2),
        json!({"member_id": a2.to_string(), "replies": 1, "first_responses": 1, "resolved": 0, "notes": 1})
    );
    let empty = get(
        &app,
        &analyst,
        "/api/v1/inbox/analytics?from=2026-03-03&to=2026-03-04",
    )
    .await;
    assert_eq!(empty["volume"]["inbound_messages"], 0);
    assert!(empty["first_response"]["avg_ms"].is_null());
    for q in [
        "from=2026-03-04&to=2026-03-03",
        "from=yesterday",
        "from=2020-01-01&to=2026-01-01",
    ] {
        let (s, b) = call(
            &app,
            &analyst,
            Method::GET,
            &format!("/api/v1/inbox/analytics?{q}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert_eq!(b["error"]["code"], "invalid_range");
    }

    // A day later the window is closed: free-form is refused and nothing is
    // queued; a template is accepted.
    clock.set(at(25 * 3600));
    let queued = outbound_count(&app, &t).await;
    let (s, b) = call(
        &app,
        &agent2,
        Method::POST,
        &reply(conv_b),
        Some(json!({"text": "Still there?"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "outside_service_window");
    let (s, _) = call(
        &app,
        &agent2,
        Method::POST,
        &reply(conv_b),
        Some(json!({"document": {"id": "4490709327384033"}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outbound_count(&app, &t).await, queued);
    let d = get(&app, &agent2, &format!("/api/v1/conversations/{conv_b}")).await;
    assert_eq!(d["service_window"]["open"], false);
    let (s, b) = call(
        &app,
        &agent2,
        Method::POST,
        &reply(conv_b),
        Some(json!({"template": {"name": "hello_world", "language": "en_US"}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(outbound_count(&app, &t).await, queued + 1);
}
