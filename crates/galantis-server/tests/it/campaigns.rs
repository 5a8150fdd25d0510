//! Campaigns through HTTP and the Meta sandbox: CRUD and validation, the
//! estimate against what is resolved, the pre-launch checks, exactly-once
//! batch dispatch at the number's rate, failures and the final status, the
//! send window, the missed-schedule grace and overlapping launches. Waits
//! are bounded polls; no test asserts a duration.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use galantis_core::campaign::CampaignStatus;
use galantis_core::templates::TemplateCategory;
use galantis_core::{ConsentSource, FixedClock, MarketingState};
use galantis_sandbox::meta::{
    FailureMode, FailureRule, MetaSandbox, NumberConfig, SandboxConfig, SandboxHandle, TemplateSeed,
};
use galantis_server::campaigns::launch::{Started, start_in};
use galantis_server::config::Config;
use galantis_store::tenant::campaigns::{self as cstore, recipients};
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::{billing, templates};
use galantis_testkit::{TEST_META_SECRET, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const TOKEN: &str = "EAAG-campaign-test-token";
const NUMBER: &str = "100000000000888";
const WABA: &str = "200000000000888";

struct Env {
    app: TestApp,
    sb: SandboxHandle,
    t: TestTenant,
}

struct Opts {
    sandbox_mps: u32,
    galantis_mps: u32,
    clock: Option<Arc<FixedClock>>,
    workers: bool,
    messages_workers: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            sandbox_mps: 1000,
            galantis_mps: 1000,
            clock: None,
            workers: true,
            messages_workers: 4,
        }
    }
}

async fn env(name: &str, o: Opts, sb_tweak: impl FnOnce(&mut SandboxConfig)) -> Env {
    let mut c = SandboxConfig::default().with_app_secret(TEST_META_SECRET);
    c.settings.tokens = vec![TOKEN.to_owned()];
    c.numbers = vec![
        NumberConfig::new(NUMBER, WABA)
            .messages_per_second(o.sandbox_mps)
            .display("19990000888"),
    ];
    c.webhooks.sent_after_ms = 0;
    c.webhooks.delivered_after_ms = Some(5);
    c.webhooks.read_after_ms = None;
    c.webhooks.retry_base_ms = 20;
    c = c
        .with_template(
            TemplateSeed::approved("promo", "en", "Sale for {{1}}!")
                .waba(WABA)
                .category("MARKETING"),
        )
        .with_template(
            TemplateSeed::approved("notice", "en", "Store notice")
                .waba(WABA)
                .category("UTILITY"),
        );
    sb_tweak(&mut c);
    let sb = MetaSandbox::spawn(c).await.expect("sandbox");
    let base = sb.base_url.clone();
    let workers = o.messages_workers;
    let mut b = TestApp::builder().config(move |c: &mut Config| {
        c.meta_base_url = Some(base);
        c.sending.pair_interval_ms = 10;
        c.sending.pair_burst = 1;
        c.queue.concurrency.messages = workers;
        c.campaigns.monitor_interval_secs = 1;
    });
    if let Some(clock) = o.clock {
        b = b.fixed_clock(clock);
    }
    if !o.workers {
        b = b.without_workers();
    }
    let app = b.spawn().await;
    sb.update_webhooks(|w| w.url = Some(format!("{}/webhooks/meta", app.base_url)));
    let t = app.create_tenant(name).await;
    let r = call(
        &app,
        &t,
        Method::PUT,
        "/api/v1/settings/whatsapp",
        Some(json!({"access_token": TOKEN, "waba_id": WABA,
            "phone_numbers": [{"phone_number_id": NUMBER, "messages_per_second": o.galantis_mps, "default": true}]})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let r = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/templates/sync",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    Env { app, sb, t }
}

async fn call(
    app: &TestApp,
    t: &TestTenant,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.request(method, path, &t.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn grant(app: &TestApp, t: &TestTenant, credits: i64) {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    billing::set_plan(
        &mut tx,
        "ENTERPRISE".parse().unwrap(),
        0,
        app.state.clock.now(),
    )
    .await
    .unwrap();
    billing::operator_grant(
        &mut tx,
        credits,
        "campaign test",
        "campaign",
        app.state.clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Contacts with valid Spanish mobiles `+34 612 xxx xxx`; `state` each.
async fn people(
    app: &TestApp,
    t: &TestTenant,
    from: usize,
    n: usize,
    state: MarketingState,
) -> Vec<Uuid> {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let mut out = Vec::new();
    for i in from..from + n {
        let phone = format!("+34612{i:06}");
        let f = CustomerFields {
            shopify_customer_id: i as i64 + 1,
            first_name: (i % 2 == 0).then(|| format!("Ana{i}")),
            phone: Some(phone.clone()),
            phone_raw: Some(phone.clone()),
            phone_status: Some("valid"),
            marketing_state: Some(state),
            updated_at: 1,
            ..Default::default()
        };
        contacts::upsert_customer(&mut tx, &f, 1).await.unwrap();
        out.push(
            contacts::by_phone(&mut tx, &phone)
                .await
                .unwrap()
                .unwrap()
                .id,
        );
    }
    tx.commit().await.unwrap();
    out
}

fn wa(i: usize) -> String {
    format!("34612{i:06}")
}

async fn list_of(app: &TestApp, t: &TestTenant, name: &str, ids: &[Uuid]) -> Uuid {
    let (s, l) = call(
        app,
        t,
        Method::POST,
        "/api/v1/lists",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let id: Uuid = l["id"].as_str().unwrap().parse().unwrap();
    for chunk in ids.chunks(5000) {
        let (s, b) = call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/lists/{id}/members"),
            Some(json!({"contact_ids": chunk})),
        )
        .await;
        assert!(s.is_success(), "{s} {b}");
    }
    id
}

async fn template_id(app: &TestApp, t: &TestTenant, name: &str) -> Uuid {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let id = templates::by_name(&mut tx, name, "en")
        .await
        .unwrap()
        .unwrap()
        .id;
    tx.commit().await.unwrap();
    id
}

async fn create(app: &TestApp, t: &TestTenant, body: Value) -> Uuid {
    let (s, c) = call(app, t, Method::POST, "/api/v1/campaigns", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().parse().unwrap()
}

fn promo(template: Uuid, include: &[Uuid], exclude: &[Uuid]) -> Value {
    let refs = |ids: &[Uuid]| -> Vec<Value> {
        ids.iter()
            .map(|id| json!({"type": "list", "id": id}))
            .collect()
    };
    json!({
        "name": "Spring sale",
        "template_id": template,
        "variables_mapping": {"1": {"field": "customer.first_name", "fallback": "friend"}},
        "audience": {"include": refs(include), "exclude": refs(exclude)},
    })
}

async fn campaign(app: &TestApp, t: &TestTenant, id: Uuid) -> Value {
    let (s, c) = call(
        app,
        t,
        Method::GET,
        &format!("/api/v1/campaigns/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c
}

/// Polls (bounded, like `eventually`) until the campaign has status `want`.
async fn wait_status(app: &TestApp, t: &TestTenant, id: Uuid, want: &str) -> Value {
    let mut c = Value::Null;
    for _ in 0..2400 {
        c = campaign(app, t, id).await;
        if c["status"] == want {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("campaign never became {want}: {c}");
}

async fn all_recipients(app: &TestApp, t: &TestTenant, id: Uuid) -> Vec<recipients::RecipientRow> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let r = recipients::list(&mut tx, id, None, None, 1_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    r
}

#[tokio::test]
async fn crud_validates_and_only_drafts_and_scheduled_change() {
    let e = env("camp-crud", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 3, MarketingState::Subscribed).await;
    let l = list_of(app, t, "vip", &ids).await;

    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let c = campaign(app, t, id).await;
    assert_eq!(c["status"], "DRAFT");
    assert_eq!(c["audience"]["include"][0]["id"], l.to_string());

    // Bad input: 422 naming the field, 404 for unknown ids, 400 for bad JSON.
    for (body, code, needle) in [
        (
            json!({"name": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_id",
        ),
        (
            json!({"name": "x", "template_id": tpl, "audience": {"include": [{"type": "tag", "id": l}]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "audience.include[0].type",
        ),
        (
            json!({"name": "x", "template_id": tpl, "send_window": {"start": "09:00", "end": "21:00", "timezone": "Mars/Base"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "send_window.timezone",
        ),
        (
            json!({"name": "x", "template_id": tpl, "scheduled_at": "2001-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "scheduled_at",
        ),
        (
            json!({"name": "x", "template_id": Uuid::now_v7()}),
            StatusCode::NOT_FOUND,
            "template",
        ),
        (
            json!({"name": "x", "template_id": tpl, "audience": {"include": [{"type": "segment", "id": Uuid::now_v7()}]}}),
            StatusCode::NOT_FOUND,
            "list or segment",
        ),
    ] {
        let (s, b) = call(app, t, Method::POST, "/api/v1/campaigns", Some(body)).await;
        assert_eq!(s, code, "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{b}"
        );
    }
    let r = app
        .request(Method::POST, "/api/v1/campaigns", &t.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Scheduling and unscheduling through PATCH.
    let at = (app.state.clock.now() + Duration::hours(2)).to_rfc3339();
    let (s, c) = call(
        app,
        t,
        Method::PATCH,
        &format!("/api/v1/campaigns/{id}"),
        Some(json!({"scheduled_at": at, "name": "Spring sale 2"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "SCHEDULED");
    assert_eq!(c["name"], "Spring sale 2");
    let (_, c) = call(
        app,
        t,
        Method::PATCH,
        &format!("/api/v1/campaigns/{id}"),
        Some(json!({"scheduled_at": null})),
    )
    .await;
    assert_eq!(c["status"], "DRAFT");

    // Duplicate, list, another tenant sees nothing.
    let (s, copy) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/duplicate"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(copy["name"], "Spring sale 2 (copy)");
    assert_eq!(copy["status"], "DRAFT");
    let (_, page) = call(app, t, Method::GET, "/api/v1/campaigns?status=DRAFT", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let other = app.create_tenant("camp-crud-other").await;
    for (m, p) in [
        (Method::GET, format!("/api/v1/campaigns/{id}")),
        (Method::POST, format!("/api/v1/campaigns/{id}/launch")),
        (Method::DELETE, format!("/api/v1/campaigns/{id}")),
    ] {
        assert_eq!(
            call(app, &other, m, &p, None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    // Launched: no longer editable or deletable; a second launch is 409.
    grant(app, t, 100).await;
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "PENDING");
    assert_eq!(c["type"], "promotional");
    for (m, p, body) in [
        (
            Method::PATCH,
            format!("/api/v1/campaigns/{id}"),
            Some(json!({"name": "late"})),
        ),
        (Method::DELETE, format!("/api/v1/campaigns/{id}"), None),
        (Method::POST, format!("/api/v1/campaigns/{id}/launch"), None),
        (Method::POST, format!("/api/v1/campaigns/{id}/resume"), None),
    ] {
        let (s, b) = call(app, t, m, &p, body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{p} {b}");
    }
    let c = wait_status(app, t, id, "SENT").await;
    assert_eq!(c["counts"]["sent"], 3);
    // The copy is deleted; the sent one cannot be.
    let copy_id = copy["id"].as_str().unwrap();
    assert_eq!(
        call(
            app,
            t,
            Method::DELETE,
            &format!("/api/v1/campaigns/{copy_id}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(
            app,
            t,
            Method::GET,
            &format!("/api/v1/campaigns/{copy_id}"),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/cancel"),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    // Variables: the first name, or the fallback.
    let sent = e.sb.messages();
    assert_eq!(sent.len(), 3);
}

#[tokio::test]
async fn each_prelaunch_check_refuses_with_its_code() {
    let e = env("camp-checks", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 12, MarketingState::Subscribed).await;
    let l = list_of(app, t, "all", &ids).await;
    let empty = list_of(app, t, "empty", &[]).await;
    let launch = |id: Uuid| async move {
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/launch"),
            None,
        )
        .await
    };

    // Credits: the trial's 10 do not cover 12 recipients → 402.
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let (_, est) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/estimate"),
        None,
    )
    .await;
    assert_eq!(est["total"], 12, "{est}");
    assert!(est["credits_available"].as_i64().unwrap() < 12, "{est}");
    assert_eq!(est["checks"][0]["code"], "insufficient_credits", "{est}");
    let (s, b) = launch(id).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_credits");

    // No eligible recipient.
    let id = create(app, t, promo(tpl, &[empty], &[])).await;
    let (s, b) = launch(id).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["code"], "no_eligible_recipients");

    // Template not approved (paused at Meta).
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let draft = templates::insert_draft(
        &mut tx,
        &templates::TemplateContent {
            name: "draft_promo",
            language: "en",
            category: "MARKETING",
            components: &json!([{"type": "BODY", "text": "Hello"}]),
            parameter_format: "positional",
            format: None,
        },
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let id = create(app, t, promo(draft, &[l], &[])).await;
    let (s, b) = launch(id).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["code"], "template_not_approved");

    // Category mismatch: an AUTHENTICATION template.
    let notice = template_id(app, t, "notice").await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    templates::set_category(
        &mut tx,
        notice,
        TemplateCategory::Authentication,
        "UTILITY",
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let id = create(
        app,
        t,
        json!({"name": "otp", "template_id": notice,
        "audience": {"include": [{"type": "list", "id": l}]}}),
    )
    .await;
    let (s, b) = launch(id).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["code"], "template_category_mismatch");
    let (_, est) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/estimate"),
        None,
    )
    .await;
    assert!(
        est["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "template_category_mismatch"),
        "{est}"
    );

    // Nothing was queued by any refusal.
    assert!(e.sb.messages().is_empty());
    assert_eq!(campaign(app, t, id).await["status"], "DRAFT");
}

/// Overlapping lists, an exclusion list and unsubscribed contacts: the
/// estimate's terms, and exactly its total resolved and sent, each once.
#[tokio::test]
async fn the_estimate_equals_what_is_resolved_and_each_recipient_gets_one_message() {
    let e = env("camp-estimate", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 1000).await;
    let tpl = template_id(app, t, "promo").await;
    let sub = people(app, t, 0, 30, MarketingState::Subscribed).await;
    let unsub = people(app, t, 100, 4, MarketingState::Unsubscribed).await;
    // A: 0..20 + 2 unsubscribed; B: 10..30 + 2 unsubscribed (overlap 10..20
    // and those 2); X excludes 25..30 and one of A-only.
    let a = list_of(app, t, "A", &[&sub[0..20], &unsub[0..2]].concat()).await;
    let b = list_of(app, t, "B", &[&sub[10..30], &unsub[0..2]].concat()).await;
    let x = list_of(app, t, "X", &[&sub[25..30], &sub[0..1]].concat()).await;
    let id = create(app, t, promo(tpl, &[a, b], &[x])).await;
    let (s, est) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/estimate"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{est}");
    assert_eq!(est["included"], 22 + 22);
    assert_eq!(est["duplicates"], 12);
    assert_eq!(est["excluded"], 6);
    assert_eq!(est["not_subscribed"], 2);
    assert_eq!(est["total"], 24);
    assert_eq!(est["checks"], json!([]));

    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let c = wait_status(app, t, id, "SENT").await;
    assert_eq!(c["counts"]["recipients"], 24);
    assert_eq!(c["counts"]["sent"], 24);
    assert_eq!(c["counts"]["failed"], 0);
    let rs = all_recipients(app, t, id).await;
    assert_eq!(rs.len(), 24);
    let mut want: Vec<Uuid> = sub[1..25].to_vec();
    want.sort();
    let mut got: Vec<Uuid> = rs.iter().map(|r| r.contact_id).collect();
    got.sort();
    assert_eq!(got, want, "exclusion wins, consent filtered, each once");
    let k = e.sb.counters();
    assert_eq!(k.accepted, 24);
    assert!(k.accepted_by_recipient.values().all(|n| *n == 1), "{k:?}");
    assert_eq!(k.duplicate_callback_data, 0);
    // Variables: the first name, or the fallback for those without one.
    let bodies: Vec<String> =
        e.sb.messages()
            .iter()
            .map(|m| serde_json::to_string(&m.request).unwrap())
            .collect();
    assert!(bodies.iter().any(|b| b.contains("Ana2")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("friend")), "{bodies:?}");
}

/// The acceptance run, scaled for the suite (the 5,000 and 100,000 runs are
/// `galantis bench campaign`'s): 4 send workers, the sandbox and the number
/// at 80/s; each recipient exactly once, no 130429, final SENT once the
/// sandbox has delivered everything.
#[tokio::test]
async fn a_campaign_sends_each_recipient_exactly_once_at_the_numbers_rate() {
    const N: usize = 400;
    let e = env(
        "camp-rate",
        Opts {
            sandbox_mps: 80,
            galantis_mps: 80,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 10_000).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, N, MarketingState::Subscribed).await;
    let l = list_of(app, t, "everyone", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let c = wait_status(app, t, id, "SENT").await;
    assert_eq!(c["counts"]["sent"], N as i64);
    assert_eq!(c["counts"]["delivered"], N as i64);
    let k = e.sb.counters();
    assert_eq!(k.accepted, N as u64);
    assert_eq!(k.accepted_by_recipient.len(), N);
    assert!(k.accepted_by_recipient.values().all(|n| *n == 1));
    assert_eq!(k.duplicate_callback_data, 0);
    assert_eq!(k.errors_by_code.get(&130429), None, "{k:?}");
    for i in [0, N / 2, N - 1] {
        assert_eq!(k.accepted_by_recipient.get(&wa(i)), Some(&1));
    }
}

/// 10 % of recipients fail permanently (Meta accepts, then reports
/// `failed`): PARTIALLY_SENT with each failure's code and reason; when
/// every send fails, FAILED.
#[tokio::test]
async fn failures_give_partially_sent_with_reasons_and_all_failing_gives_failed() {
    const N: usize = 40;
    let e = env("camp-fail", Opts::default(), |c| {
        for i in (0..N).step_by(10) {
            c.failures
                .push(FailureRule::recipient(wa(i), 131026, FailureMode::Async));
        }
        for i in 1000..1005 {
            c.failures
                .push(FailureRule::recipient(wa(i), 131026, FailureMode::Sync));
        }
    })
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 1000).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, N, MarketingState::Subscribed).await;
    let l = list_of(app, t, "some fail", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let c = wait_status(app, t, id, "PARTIALLY_SENT").await;
    assert_eq!(c["counts"]["failed"], (N / 10) as i64, "{c}");
    assert_eq!(c["counts"]["sent"], (N - N / 10) as i64, "{c}");
    let failed: Vec<_> = all_recipients(app, t, id)
        .await
        .into_iter()
        .filter(|r| r.status == "FAILED")
        .collect();
    assert_eq!(failed.len(), N / 10);
    for r in &failed {
        assert_eq!(r.error_code.as_deref(), Some("131026"), "{r:?}");
        assert!(
            r.error_reason.as_deref().is_some_and(|s| !s.is_empty()),
            "{r:?}"
        );
        assert!(r.failed_at.is_some());
    }

    let all_bad = people(app, t, 1000, 5, MarketingState::Subscribed).await;
    let l = list_of(app, t, "all fail", &all_bad).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let c = wait_status(app, t, id, "FAILED").await;
    assert_eq!(c["counts"]["failed"], 5, "{c}");
    assert_eq!(c["counts"]["sent"], 0);
}

fn fixed(at: &str) -> Arc<FixedClock> {
    Arc::new(FixedClock::new(at.parse::<DateTime<Utc>>().unwrap()))
}

async fn messages_count(app: &TestApp, t: &TestTenant) -> i64 {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let n = galantis_store::tenant::sending::list_outbound(
        &mut tx,
        &galantis_store::tenant::sending::OutboundFilter {
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .len() as i64;
    tx.commit().await.unwrap();
    n
}

/// Launched at 03:00 in Mexico City with a 09:00–21:00 window: nothing is
/// resolved or queued until the window opens (fixed clock), then all is.
#[tokio::test]
async fn a_closed_send_window_holds_dispatch_until_it_opens() {
    let clock = fixed("2026-03-10T09:00:00Z"); // 03:00 in Mexico City
    let e = env(
        "camp-window",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 5, MarketingState::Subscribed).await;
    let l = list_of(app, t, "w", &ids).await;
    let mut body = promo(tpl, &[l], &[]);
    body["send_window"] =
        json!({"start": "09:00", "end": "21:00", "timezone": "America/Mexico_City"});
    let id = create(app, t, body).await;
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(Duration::hours(5)).await; // 08:00 local
    assert_eq!(messages_count(app, t).await, 0);
    assert!(all_recipients(app, t, id).await.is_empty());
    assert_eq!(campaign(app, t, id).await["status"], "PENDING");
    // 09:00 local: the window opens and the campaign goes out.
    app.advance_clock_and_run(Duration::hours(1)).await;
    for _ in 0..20 {
        if messages_count(app, t).await == 5 {
            break;
        }
        app.advance_clock_and_run(Duration::seconds(1)).await;
    }
    assert_eq!(messages_count(app, t).await, 5);
    assert_eq!(all_recipients(app, t, id).await.len(), 5);
}

/// The scheduled start runs at its time; one whose time passed while no
/// node ran starts within the grace and is cancelled with
/// `missed_schedule` past it.
#[tokio::test]
async fn a_missed_schedule_starts_within_the_grace_and_is_cancelled_past_it() {
    let clock = fixed("2026-03-10T12:00:00Z");
    let e = env(
        "camp-missed",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 2, MarketingState::Subscribed).await;
    let l = list_of(app, t, "m", &ids).await;
    let mut within = promo(tpl, &[l], &[]);
    within["scheduled_at"] = json!("2026-03-10T13:00:00Z");
    let within = create(app, t, within).await;
    let mut late = promo(tpl, &[l], &[]);
    late["scheduled_at"] = json!("2026-03-10T12:30:00Z");
    let late = create(app, t, late).await;
    assert_eq!(campaign(app, t, within).await["status"], "SCHEDULED");
    // Nothing before its time.
    app.run_jobs_until_idle().await;
    assert_eq!(campaign(app, t, within).await["status"], "SCHEDULED");
    assert_eq!(campaign(app, t, late).await["status"], "SCHEDULED");

    // No node ran until 18:59: 5 h 59 min after the first's time (within
    // the 6 h grace), 6 h 29 min after the second's (past it).
    clock.advance(Duration::minutes(6 * 60 + 59));
    app.run_jobs_until_idle().await;
    let c = campaign(app, t, within).await;
    assert!(c["status"] == "PENDING" || c["status"] == "SENT", "{c}");
    assert!(c["launched_at"].is_string());
    assert!(c["cancel_reason"].is_null());
    let c = campaign(app, t, late).await;
    assert_eq!(c["status"], "CANCELLED", "{c}");
    assert_eq!(c["cancel_reason"], "missed_schedule");
    assert!(c["launched_at"].is_null());
}

/// Two launches at the same moment (two nodes' scheduled starts): one
/// dispatch, each recipient once.
#[tokio::test]
async fn two_overlapping_starts_launch_one_dispatch() {
    let e = env("camp-overlap", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 6, MarketingState::Subscribed).await;
    let l = list_of(app, t, "o", &ids).await;
    let mut body = promo(tpl, &[l], &[]);
    body["scheduled_at"] = json!((app.state.clock.now() + Duration::hours(1)).to_rfc3339());
    let id = create(app, t, body).await;
    let start = || async {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        let c = cstore::get(&mut tx, id).await.unwrap().unwrap();
        let r = start_in(
            &mut tx,
            &c,
            &[CampaignStatus::Scheduled],
            app.state.clock.now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        r
    };
    let (a, b) = tokio::join!(start(), start());
    let launched = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Started::Launched))
        .count();
    assert_eq!(launched, 1, "{a:?} {b:?}");
    // And two HTTP launches after it: both 409.
    for _ in 0..2 {
        assert_eq!(
            call(
                app,
                t,
                Method::POST,
                &format!("/api/v1/campaigns/{id}/launch"),
                None
            )
            .await
            .0,
            StatusCode::CONFLICT
        );
    }
    wait_status(app, t, id, "SENT").await;
    let k = e.sb.counters();
    assert_eq!(k.accepted, 6);
    assert!(k.accepted_by_recipient.values().all(|n| *n == 1));
}

/// A contact who unsubscribes after the audience was resolved is SKIPPED
/// with `CUSTOMER_IS_NOT_OPTED_IN`; the others still go out. Pause stops
/// dispatch, resume continues it, cancel stops it for good.
#[tokio::test]
async fn unsubscribed_after_launch_is_skipped_and_pause_resume_cancel_control_dispatch() {
    let clock = fixed("2026-03-10T12:00:00Z");
    let e = env(
        "camp-control",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 6, MarketingState::Subscribed).await;
    let l = list_of(app, t, "c", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // The dispatcher's first step: resolution. Then a contact opts out.
    let c = {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let c = cstore::get(&mut tx, id).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        c
    };
    galantis_server::campaigns::dispatch::resolve(&app.state, t.id, &c, app.state.clock.now())
        .await
        .unwrap();
    assert_eq!(all_recipients(app, t, id).await.len(), 6);
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    contacts::set_marketing_state(
        &mut tx,
        ids[3],
        MarketingState::Unsubscribed,
        ConsentSource::StopReply,
        None,
        2,
        2,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Paused before any batch: nothing is queued.
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "PAUSED");
    app.run_jobs_until_idle().await;
    assert_eq!(messages_count(app, t).await, 0);
    // Resumed: everyone but the opted-out contact is queued and sent.
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    for _ in 0..30 {
        app.advance_clock_and_run(Duration::seconds(1)).await;
        if campaign(app, t, id).await["status"] == "SENT" {
            break;
        }
    }
    assert_eq!(messages_count(app, t).await, 5);
    let rs = all_recipients(app, t, id).await;
    let skipped: Vec<_> = rs.iter().filter(|r| r.status == "SKIPPED").collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].contact_id, ids[3]);
    assert_eq!(
        skipped[0].error_code.as_deref(),
        Some("CUSTOMER_IS_NOT_OPTED_IN")
    );

    // Cancel before dispatch: nothing is ever queued.
    let id2 = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id2}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id2}/cancel"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["cancel_reason"], "cancelled_by_member");
    app.advance_clock_and_run(Duration::seconds(5)).await;
    assert_eq!(messages_count(app, t).await, 5);
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id2}/resume"),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
}
