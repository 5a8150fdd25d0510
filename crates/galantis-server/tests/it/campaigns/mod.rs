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

mod analytics;
mod cancel;
mod crash;
mod dispatch;
mod schedule;

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
    /// `[campaigns] batch_max`.
    batch_max: u32,
    /// The campaigns lane's concurrency (dispatchers running at once).
    campaign_workers: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            sandbox_mps: 1000,
            galantis_mps: 1000,
            clock: None,
            workers: true,
            messages_workers: 4,
            batch_max: 500,
            campaign_workers: 2,
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
    let (workers, batch_max, campaign_workers) =
        (o.messages_workers, o.batch_max, o.campaign_workers);
    let mut b = TestApp::builder().config(move |c: &mut Config| {
        c.meta_base_url = Some(base);
        c.campaigns.batch_max = batch_max;
        c.queue.concurrency.campaigns = campaign_workers;
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

/// A test send goes to one existing contact's number through the send path
/// (consent and template checks included) and leaves the campaign a draft.
#[tokio::test]
async fn a_test_send_reaches_one_number_through_the_send_path() {
    let e = env("camp-test-send", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 10).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 2, MarketingState::Subscribed).await;
    people(app, t, 50, 1, MarketingState::Unsubscribed).await;
    let l = list_of(app, t, "t", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let path = format!("/api/v1/campaigns/{id}/test-send");
    let (s, m) = call(
        app,
        t,
        Method::POST,
        &path,
        Some(json!({"phone": "+34 612 000 000"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{m}");
    assert_eq!(m["contact_id"], ids[0].to_string());
    for _ in 0..200 {
        if e.sb.counters().accepted == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(e.sb.counters().accepted_by_recipient.get(&wa(0)), Some(&1));
    assert!(
        serde_json::to_string(&e.sb.messages()[0].request)
            .unwrap()
            .contains("Ana0")
    );
    // Unknown number, invalid number, unsubscribed contact.
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &path,
            Some(json!({"phone": "+34 612 999 999"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(app, t, Method::POST, &path, Some(json!({"phone": "12"})))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (s, b) = call(
        app,
        t,
        Method::POST,
        &path,
        Some(json!({"phone": "+34 612 000 050"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "not_opted_in");
    assert_eq!(campaign(app, t, id).await["status"], "DRAFT");
}
