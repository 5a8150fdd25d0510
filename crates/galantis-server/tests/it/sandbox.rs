//! The Meta Cloud API sandbox over real HTTP, with a small receiver standing
//! in for Galantis' `/webhooks/meta` to capture and verify webhooks. Time
//! that matters (rate limits, windows) comes from a `FixedClock`; webhook
//! waits poll with a bound and never assert durations.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use chrono::TimeZone;
use galantis_core::FixedClock;
use galantis_sandbox::meta::{
    DEV_PHONE_NUMBER_ID, DEV_WABA_ID, FailureMode, FailureRule, InboundMessage, MetaSandbox,
    NumberConfig, SandboxConfig, SandboxHandle, TemplateSeed,
};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "sandbox-test-meta-secret";
const TOKEN: &str = "EAAG-sandbox-test-token";
const NUMBER: &str = DEV_PHONE_NUMBER_ID;

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        chrono::Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap(),
    ))
}

/// A sandbox with one token, fast webhooks and fast template review.
fn config(clock: &Arc<FixedClock>) -> SandboxConfig {
    let mut c = SandboxConfig::default()
        .with_clock(clock.clone())
        .with_app_secret(SECRET);
    c.settings.tokens = vec![TOKEN.to_owned()];
    c.settings.template_review_ms = 10;
    c.webhooks.sent_after_ms = 0;
    c.webhooks.delivered_after_ms = Some(5);
    c.webhooks.read_after_ms = Some(10);
    c.webhooks.retry_base_ms = 10;
    c
}

async fn spawn(c: SandboxConfig) -> SandboxHandle {
    MetaSandbox::spawn(c).await.expect("sandbox starts")
}

async fn send_as(sb: &SandboxHandle, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(sb.graph_url("v23.0", &format!("{NUMBER}/messages")))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.headers()["x-galantis-sandbox"], "true");
    (r.status(), r.json().await.unwrap())
}

async fn send(sb: &SandboxHandle, body: Value) -> (StatusCode, Value) {
    send_as(sb, Some(TOKEN), body).await
}

fn text_to(to: &str) -> Value {
    json!({"messaging_product":"whatsapp","recipient_type":"individual","to":to,"type":"text","text":{"body":"hello"}})
}

fn template_to(to: &str, name: &str, lang: &str, components: Value) -> Value {
    json!({"messaging_product":"whatsapp","to":to,"type":"template",
           "template":{"name":name,"language":{"code":lang},"components":components}})
}

fn hello_to(to: &str) -> Value {
    template_to(to, "hello_world", "en_US", json!([]))
}

fn code(body: &Value) -> i64 {
    body["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

async fn control(
    sb: &SandboxHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sb.base_url));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Stands in for Galantis' `POST /webhooks/meta`: records every request,
/// answering 500 to the first `fail_first` of them.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug)]
struct Hit {
    signature: Option<String>,
    raw: Vec<u8>,
    json: Value,
}

#[derive(Clone)]
struct Rx {
    hits: Arc<Mutex<Vec<Hit>>>,
    fail_first: Arc<AtomicU32>,
}

async fn receive(State(rx): State<Rx>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let failing = rx
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    rx.hits.lock().unwrap().push(Hit {
        signature: headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        raw: body.to_vec(),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if failing {
        AxumStatus::INTERNAL_SERVER_ERROR
    } else {
        AxumStatus::OK
    }
}

impl Receiver {
    async fn spawn(fail_first: u32) -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let rx = Rx {
            hits: hits.clone(),
            fail_first: Arc::new(AtomicU32::new(fail_first)),
        };
        let app = axum::Router::new()
            .route("/webhooks/meta", axum::routing::post(receive))
            .with_state(rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/meta", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            hits,
            _server: server,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Polls (up to 10 s) until at least `n` recorded hits satisfy `pred`.
    async fn wait_for(&self, n: usize, pred: impl Fn(&Hit) -> bool) -> Vec<Hit> {
        for _ in 0..500 {
            let found: Vec<Hit> = self.hits().into_iter().filter(|h| pred(h)).collect();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} webhooks; got {:#?}", self.hits());
    }
}

fn signed_by(hit: &Hit, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&hit.raw);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    hit.signature.as_deref() == Some(want.as_str())
}

fn value(hit: &Hit) -> &Value {
    &hit.json["entry"][0]["changes"][0]["value"]
}

fn status_of(hit: &Hit) -> Option<(&str, &str)> {
    let s = &value(hit)["statuses"][0];
    Some((s["id"].as_str()?, s["status"].as_str()?))
}

#[tokio::test]
async fn sends_answer_in_metas_shape_and_are_marked_as_sandbox() {
    let clock = clock();
    let sb = spawn(config(&clock)).await;
    let (status, body) = send(&sb, hello_to("+52 1 234 567 8901")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(
        body["contacts"],
        json!([{"input":"+52 1 234 567 8901","wa_id":"5212345678901"}])
    );
    let id = body["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wamid."), "{id}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);

    let (_, again) = send(&sb, hello_to("5212345678901")).await;
    assert_ne!(again["messages"][0]["id"], id, "wamids are unique");

    let log = sb.messages();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|m| m.sandbox && m.wa_id == "5212345678901"));
    assert_eq!(log[0].id, id);
    assert_eq!(log[0].template_name.as_deref(), Some("hello_world"));
    let (s, http_log) = control(
        &sb,
        reqwest::Method::GET,
        "/sandbox/messages?to=%2B5212345678901",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(http_log["total"], 2);
    assert_eq!(http_log["data"][0]["sandbox"], true);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_190_with_401() {
    let clock = clock();
    let sb = spawn(config(&clock)).await;
    for token in [None, Some("EAAG-wrong")] {
        let (status, body) = send_as(&sb, token, hello_to("15551230001")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code(&body), 190);
        assert_eq!(body["error"]["type"], "OAuthException");
        assert!(body["error"]["fbtrace_id"].is_string());
        assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
    }
    // Graph also takes the token as a query parameter.
    let r = reqwest::Client::new()
        .post(format!(
            "{}?access_token={TOKEN}",
            sb.graph_url("v23.0", &format!("{NUMBER}/messages"))
        ))
        .json(&hello_to("15551230001"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A token revoked at run time stops working at once.
    sb.set_tokens(vec!["EAAG-other".into()]);
    let (status, body) = send(&sb, hello_to("15551230001")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, 190));
    assert_eq!(sb.counters().errors_by_code[&190], 3);
}

#[tokio::test]
async fn throughput_beyond_n_per_second_is_130429_until_time_moves() {
    let clock = clock();
    let sb = spawn(
        config(&clock).with_number(NumberConfig::new(NUMBER, DEV_WABA_ID).messages_per_second(5)),
    )
    .await;
    for i in 0..5 {
        let (status, body) = send(&sb, hello_to(&format!("1555200000{i}"))).await;
        assert_eq!(status, StatusCode::OK, "send {i}: {body}");
    }
    let (status, body) = send(&sb, hello_to("15552000009")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, 130429)
    );
    assert_eq!(body["error"]["message"], "(#130429) Rate limit hit");

    clock.advance(chrono::Duration::milliseconds(199));
    let (_, body) = send(&sb, hello_to("15552000009")).await;
    assert_eq!(
        code(&body),
        130429,
        "one slot frees after 200 ms, not before"
    );
    clock.advance(chrono::Duration::milliseconds(801));
    for i in 0..5 {
        let (status, _) = send(&sb, hello_to(&format!("1555200001{i}"))).await;
        assert_eq!(status, StatusCode::OK, "a second later the burst is back");
    }
    // Meta is not consistent about the HTTP status; the code is what counts.
    sb.update_settings(|s| s.throttle_http_status = 400);
    let (status, body) = send(&sb, hello_to("15552000009")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, 130429));
    let c = sb.counters();
    assert_eq!((c.accepted, c.errors_by_code[&130429]), (10, 3));
}

#[tokio::test]
async fn pair_rate_allows_a_burst_then_131056_until_the_interval_passes() {
    let clock = clock();
    let mut c = config(&clock);
    c.settings.pair_burst = 3;
    c.settings.pair_interval_ms = 6_000;
    let sb = spawn(c).await;
    for _ in 0..3 {
        assert_eq!(send(&sb, hello_to("15551110000")).await.0, StatusCode::OK);
    }
    let (status, body) = send(&sb, hello_to("15551110000")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, 131056)
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pair rate limit hit")
    );
    assert_eq!(
        send(&sb, hello_to("15552220000")).await.0,
        StatusCode::OK,
        "other recipients are not affected"
    );
    clock.advance(chrono::Duration::milliseconds(5_999));
    assert_eq!(code(&send(&sb, hello_to("15551110000")).await.1), 131056);
    clock.advance(chrono::Duration::milliseconds(1));
    assert_eq!(send(&sb, hello_to("15551110000")).await.0, StatusCode::OK);
    assert_eq!(sb.sends_to("15551110000"), 4);
}

#[tokio::test]
async fn free_form_needs_the_service_window_that_an_inbound_message_opens() {
    let clock = clock();
    let rx = Receiver::spawn(0).await;
    let sb = spawn(config(&clock).with_webhook_url(&rx.url)).await;
    let (status, body) = send(&sb, text_to("15553330000")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, 131047));
    assert_eq!(body["error"]["message"], "(#131047) Re-engagement message");

    let (s, r) = control(
        &sb,
        reqwest::Method::POST,
        "/sandbox/inbound",
        Some(json!({"from":"+1 555 333 0000","name":"Jane Smith","text":"Where is my order?"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let inbound_id = r["id"].as_str().unwrap().to_owned();
    let hit = rx
        .wait_for(1, |h| value(h)["messages"].is_array())
        .await
        .remove(0);
    assert!(signed_by(&hit, SECRET));
    assert_eq!(hit.json["object"], "whatsapp_business_account");
    assert_eq!(hit.json["entry"][0]["id"], DEV_WABA_ID);
    assert_eq!(hit.json["entry"][0]["changes"][0]["field"], "messages");
    let v = value(&hit);
    assert_eq!(v["metadata"]["phone_number_id"], NUMBER);
    assert_eq!(
        v["contacts"][0],
        json!({"profile":{"name":"Jane Smith"},"wa_id":"15553330000"})
    );
    let m = &v["messages"][0];
    assert_eq!(
        (m["from"].as_str(), m["id"].as_str(), m["type"].as_str()),
        (Some("15553330000"), Some(inbound_id.as_str()), Some("text"))
    );
    assert_eq!(m["text"]["body"], "Where is my order?");

    let (status, body) = send(&sb, text_to("15553330000")).await;
    assert_eq!(status, StatusCode::OK, "inside the window: {body}");
    let replied = body["messages"][0]["id"].as_str().unwrap().to_owned();

    // A quick-reply tap answering that message, in-process this time.
    sb.inbound(
        InboundMessage::button_reply("15553330000", "track_order", "Track").replying_to(&replied),
    )
    .unwrap();
    let hit = rx
        .wait_for(1, |h| value(h)["messages"][0]["type"] == "interactive")
        .await
        .remove(0);
    let m = &value(&hit)["messages"][0];
    assert_eq!(
        m["interactive"],
        json!({"type":"button_reply","button_reply":{"id":"track_order","title":"Track"}})
    );
    assert_eq!(m["context"]["id"], replied.as_str());

    clock.advance(chrono::Duration::hours(24));
    assert_eq!(
        code(&send(&sb, text_to("15553330000")).await.1),
        131047,
        "the window closes after 24 h"
    );
    assert_eq!(
        send(&sb, hello_to("15553330000")).await.0,
        StatusCode::OK,
        "templates need no window"
    );
    sb.set_window(NUMBER, "15553330000", true);
    assert_eq!(send(&sb, text_to("15553330000")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_or_unapproved_templates_are_refused() {
    let clock = clock();
    let c = config(&clock)
        .with_template(TemplateSeed::approved("order_update", "es", "Hola").status("PENDING"))
        .with_template(TemplateSeed::approved("flash_sale", "en", "Sale!").status("REJECTED"))
        .with_template(TemplateSeed::approved("weekly", "en", "News"));
    let sb = spawn(c).await;
    for (name, lang) in [
        ("nope", "en"),
        ("hello_world", "es"),
        ("order_update", "es"),
        ("flash_sale", "en"),
    ] {
        let (status, body) = send(&sb, template_to("15554440000", name, lang, json!([]))).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, 132001),
            "{name}/{lang}"
        );
        assert!(
            body["error"]["error_data"]["details"]
                .as_str()
                .unwrap()
                .contains(name)
        );
    }
    assert_eq!(
        send(&sb, template_to("15554440000", "weekly", "en", json!([])))
            .await
            .0,
        StatusCode::OK
    );
    sb.set_template_status(DEV_WABA_ID, "weekly", None, "PAUSED", None)
        .unwrap();
    assert_eq!(
        code(
            &send(&sb, template_to("15554440000", "weekly", "en", json!([])))
                .await
                .1
        ),
        132015
    );
    sb.set_template_status(DEV_WABA_ID, "weekly", None, "DISABLED", None)
        .unwrap();
    assert_eq!(
        code(
            &send(&sb, template_to("15554440000", "weekly", "en", json!([])))
                .await
                .1
        ),
        132016
    );
}

#[tokio::test]
async fn wrong_parameter_counts_are_132000() {
    let clock = clock();
    let components = json!([
        {"type":"HEADER","format":"TEXT","text":"Order {{1}}"},
        {"type":"BODY","text":"Hi {{1}}, your order {{2}} has shipped."},
        {"type":"BUTTONS","buttons":[{"type":"URL","text":"Track","url":"https://track.example/{{1}}"}]}
    ]);
    let sb = spawn(
        config(&clock)
            .with_template(TemplateSeed::approved("shipped", "en", "x").components(components)),
    )
    .await;
    let t = |v: &str| json!({"type":"text","text":v});
    let good = json!([
        {"type":"header","parameters":[t("#1042")]},
        {"type":"body","parameters":[t("Jane"), t("#1042")]},
        {"type":"button","sub_type":"url","index":"0","parameters":[t("1042")]}
    ]);
    let (status, body) = send(
        &sb,
        template_to("15555550000", "shipped", "en", good.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cases = [
        (
            "body",
            1,
            json!([good[0], {"type":"body","parameters":[t("Jane")]}, good[2]]),
        ),
        ("header", 0, json!([good[1], good[2]])),
        (
            "header",
            2,
            json!([{"type":"header","parameters":[t("a"), t("b")]}, good[1], good[2]]),
        ),
        ("buttons", 0, json!([good[0], good[1]])),
    ];
    for (part, got, components) in cases {
        clock.advance(chrono::Duration::seconds(10));
        let (status, body) =
            send(&sb, template_to("15555550000", "shipped", "en", components)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, 132000),
            "{part}"
        );
        let details = body["error"]["error_data"]["details"].as_str().unwrap();
        assert!(
            details.starts_with(&format!("{part}: number of localizable_params ({got})")),
            "{details}"
        );
    }
    assert_eq!(
        code(
            &send(
                &sb,
                template_to(
                    "15555550000",
                    "hello_world",
                    "en_US",
                    json!([{"type":"body","parameters":[t("x")]}])
                )
            )
            .await
            .1
        ),
        132000
    );
    assert_eq!(sb.sends_to("15555550000"), 1);
}

#[tokio::test]
async fn configured_failures_answer_now_or_arrive_as_failed_webhooks() {
    let clock = clock();
    let rx = Receiver::spawn(0).await;
    let mut c = config(&clock).with_webhook_url(&rx.url);
    c.failures = vec![
        FailureRule::recipient("15556660001", 131026, FailureMode::Sync),
        FailureRule::recipient("15556660002", 131049, FailureMode::Async),
    ];
    let sb = spawn(c).await;
    let (status, body) = send(&sb, hello_to("15556660001")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, 131026));
    assert_eq!(body["error"]["message"], "(#131026) Message undeliverable");

    let mut msg = hello_to("15556660002");
    msg["biz_opaque_callback_data"] = json!("send:42");
    let (status, body) = send(&sb, msg).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "accepted first, failed later: {body}"
    );
    let id = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let hit = rx
        .wait_for(1, |h| status_of(h) == Some((id.as_str(), "failed")))
        .await
        .remove(0);
    assert!(signed_by(&hit, SECRET));
    let s = &value(&hit)["statuses"][0];
    assert_eq!(s["recipient_id"], "15556660002");
    assert_eq!(s["biz_opaque_callback_data"], "send:42");
    assert_eq!(s["errors"][0]["code"], 131049);
    assert!(
        s["errors"][0]["title"].is_string() && s["errors"][0]["error_data"]["details"].is_string()
    );
    assert!(sb.webhooks_settled(Duration::from_secs(10)).await);
    assert!(
        rx.hits()
            .iter()
            .all(|h| status_of(h).is_none_or(|(i, st)| i != id || st == "failed")),
        "no sent/delivered for a failed message"
    );

    // Tenant-halting states: the whole number fails (here once, then recovers).
    sb.add_failure(FailureRule::number(NUMBER, 131042).times(1));
    let (status, body) = send(&sb, hello_to("15556660003")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, 131042));
    assert_eq!(send(&sb, hello_to("15556660003")).await.0, StatusCode::OK);
    let (s, _) = control(
        &sb,
        reqwest::Method::POST,
        "/sandbox/failures",
        Some(json!({"phone_number_id": NUMBER, "code": 368})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        send(&sb, hello_to("15556660004")).await.0,
        StatusCode::FORBIDDEN
    );
    let c = sb.counters();
    assert_eq!(
        (
            c.async_failures,
            c.errors_by_code[&131026],
            c.errors_by_code[&368]
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn statuses_progress_and_are_signed_even_when_duplicated_and_reordered() {
    let clock = clock();
    let rx = Receiver::spawn(0).await;
    let sb = spawn(config(&clock).with_webhook_url(&rx.url)).await;
    let mut msg = hello_to("15557770000");
    msg["biz_opaque_callback_data"] = json!("campaign:7:contact:9");
    let (_, body) = send(&sb, msg.clone()).await;
    let first = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let hits = rx
        .wait_for(3, |h| status_of(h).is_some_and(|(i, _)| i == first))
        .await;
    let order: Vec<&str> = hits.iter().map(|h| status_of(h).unwrap().1).collect();
    assert_eq!(order, ["sent", "delivered", "read"]);
    for h in &hits {
        assert!(signed_by(h, SECRET));
        assert!(!signed_by(h, "some-other-secret"));
        assert_eq!(h.json["entry"][0]["id"], DEV_WABA_ID);
        let v = value(h);
        assert_eq!(v["metadata"]["phone_number_id"], NUMBER);
        assert_eq!(v["statuses"][0]["recipient_id"], "15557770000");
        assert_eq!(
            v["statuses"][0]["biz_opaque_callback_data"],
            "campaign:7:contact:9"
        );
        assert!(
            v["statuses"][0]["timestamp"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
    }
    assert_eq!(
        value(&hits[0])["statuses"][0]["pricing"]["category"],
        "utility"
    );

    sb.update_webhooks(|w| {
        w.duplicate_probability = 1.0;
        w.reorder_probability = 1.0;
    });
    clock.advance(chrono::Duration::seconds(60));
    let (_, body) = send(&sb, msg).await;
    let second = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let hits = rx
        .wait_for(6, |h| status_of(h).is_some_and(|(i, _)| i == second))
        .await;
    let order: Vec<&str> = hits.iter().map(|h| status_of(h).unwrap().1).collect();
    assert_eq!(
        order,
        ["read", "read", "delivered", "delivered", "sent", "sent"]
    );
    assert!(hits.iter().all(|h| signed_by(h, SECRET)));
    let ts = |s: &str| -> i64 {
        let h = hits.iter().find(|h| status_of(h).unwrap().1 == s).unwrap();
        value(h)["statuses"][0]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        ts("sent") <= ts("delivered") && ts("delivered") <= ts("read"),
        "timestamps stay true"
    );
    assert!(sb.webhooks_settled(Duration::from_secs(10)).await);
    let w = sb.counters().webhooks;
    assert_eq!(
        (
            w.scheduled,
            w.delivered,
            w.duplicated,
            w.reordered,
            w.pending
        ),
        (6, 9, 3, 1, 0)
    );
}

#[tokio::test]
async fn webhooks_are_retried_while_galantis_answers_errors() {
    let clock = clock();
    let rx = Receiver::spawn(2).await;
    let mut c = config(&clock).with_webhook_url(&rx.url);
    c.webhooks.delivered_after_ms = None;
    c.webhooks.read_after_ms = None;
    let sb = spawn(c).await;
    let (_, body) = send(&sb, hello_to("15558880000")).await;
    let id = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let hits = rx
        .wait_for(3, |h| status_of(h) == Some((id.as_str(), "sent")))
        .await;
    assert!(
        hits.windows(2).all(|w| w[0].raw == w[1].raw),
        "the same body is redelivered"
    );
    assert!(sb.webhooks_settled(Duration::from_secs(10)).await);
    let w = sb.counters().webhooks;
    assert_eq!((w.failed_attempts, w.delivered, w.abandoned), (2, 1, 0));

    // A receiver that never recovers: bounded attempts, then abandoned.
    sb.update_webhooks(|w| {
        w.url = Some("http://127.0.0.1:9/unreachable".into());
        w.max_attempts = 3;
    });
    send(&sb, hello_to("15558880001")).await;
    assert!(sb.webhooks_settled(Duration::from_secs(10)).await);
    let w = sb.counters().webhooks;
    assert_eq!((w.failed_attempts, w.abandoned), (5, 1));
}

#[tokio::test]
async fn submitted_templates_are_reviewed_and_announced_by_webhook() {
    let clock = clock();
    let rx = Receiver::spawn(0).await;
    let sb = spawn(config(&clock).with_webhook_url(&rx.url)).await;
    let edge = sb.graph_url("v23.0", &format!("{DEV_WABA_ID}/message_templates"));
    let client = reqwest::Client::new();
    let submit = |name: &str| {
        client.post(&edge).bearer_auth(TOKEN).json(&json!({
            "name": name, "language": "es", "category": "MARKETING",
            "components": [{"type":"BODY","text":"Hola {{1}}, tu pedido {{2}} está listo"}]
        }))
    };
    let r = submit("order_ready").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        (created["status"].as_str(), created["category"].as_str()),
        (Some("PENDING"), Some("MARKETING"))
    );
    let id: u64 = created["id"].as_str().unwrap().parse().unwrap();
    let update =
        |h: &Hit| h.json["entry"][0]["changes"][0]["field"] == "message_template_status_update";
    let hit = rx.wait_for(1, update).await.remove(0);
    assert!(signed_by(&hit, SECRET));
    assert_eq!(hit.json["entry"][0]["id"], DEV_WABA_ID);
    assert_eq!(
        *value(&hit),
        json!({"event":"APPROVED","message_template_id":id,"message_template_name":"order_ready","message_template_language":"es","reason":null})
    );

    let dup = submit("order_ready").send().await.unwrap();
    assert_eq!(dup.status(), StatusCode::BAD_REQUEST);
    let r: Value = submit("reject_spammy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "PENDING");
    let hit = rx
        .wait_for(1, |h| update(h) && value(h)["event"] == "REJECTED")
        .await
        .remove(0);
    assert_eq!(value(&hit)["message_template_name"], "reject_spammy");
    assert_eq!(value(&hit)["reason"], "INVALID_FORMAT");

    let list: Value = client
        .get(format!("{edge}?name=order_ready"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["status"], "APPROVED");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let t = |v: &str| json!({"type":"text","text":v});
    let params = json!([{"type":"body","parameters":[t("Ana"), t("#7")]}]);
    assert_eq!(
        send(
            &sb,
            template_to("15559990000", "order_ready", "es", params.clone())
        )
        .await
        .0,
        StatusCode::OK
    );

    let (s, changed) = control(
        &sb,
        reqwest::Method::POST,
        "/sandbox/templates/status",
        Some(json!({"name":"order_ready","status":"PAUSED","reason":"LOW_QUALITY"})),
    )
    .await;
    assert_eq!(
        (s, changed[0]["status"].as_str()),
        (StatusCode::OK, Some("PAUSED"))
    );
    let hit = rx
        .wait_for(1, |h| update(h) && value(h)["event"] == "PAUSED")
        .await
        .remove(0);
    assert_eq!(value(&hit)["reason"], "LOW_QUALITY");
    clock.advance(chrono::Duration::seconds(10));
    assert_eq!(
        code(
            &send(&sb, template_to("15559990000", "order_ready", "es", params))
                .await
                .1
        ),
        132015
    );

    let del = client
        .delete(format!("{edge}?name=order_ready"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.json::<Value>().await.unwrap(), json!({"success": true}));
    assert_eq!(
        sb.templates(Some(DEV_WABA_ID))
            .iter()
            .filter(|t| t.name == "order_ready")
            .count(),
        0
    );
    assert_eq!(sb.counters().templates_submitted, 2);
}

#[tokio::test]
async fn counters_prove_how_often_each_callback_reference_was_sent() {
    let clock = clock();
    let sb = spawn(config(&clock)).await;
    for (to, key) in [
        ("15550100001", "k1"),
        ("15550100002", "k2"),
        ("15550100003", "k1"),
    ] {
        let mut m = hello_to(to);
        m["biz_opaque_callback_data"] = json!(key);
        assert_eq!(send(&sb, m).await.0, StatusCode::OK);
    }
    let mut refused = hello_to("15550100001");
    refused["template"]["name"] = json!("missing");
    refused["biz_opaque_callback_data"] = json!("k3");
    send(&sb, refused).await;
    assert_eq!(
        (
            sb.sends_with_callback_data("k1"),
            sb.sends_with_callback_data("k2")
        ),
        (2, 1)
    );
    assert_eq!(
        sb.sends_with_callback_data("k3"),
        0,
        "refused sends are not sends"
    );
    let (_, c) = control(
        &sb,
        reqwest::Method::GET,
        "/sandbox/counters?callback_data=k1",
        None,
    )
    .await;
    assert_eq!(c["accepted_by_callback_data"], json!({"k1": 2}));
    assert_eq!(
        (
            c["requests"].as_u64(),
            c["accepted"].as_u64(),
            c["duplicate_callback_data"].as_u64()
        ),
        (Some(4), Some(3), Some(1))
    );
    let (_, c) = control(&sb, reqwest::Method::POST, "/sandbox/reset", None).await;
    assert_eq!(c["success"], true);
    assert_eq!(sb.counters().accepted, 0);
}

#[tokio::test]
async fn bad_input_gets_meta_errors_and_never_a_panic() {
    let clock = clock();
    let mut c = config(&clock).with_number(NumberConfig {
        access_tokens: vec!["EAAG-tenant-b".into()],
        ..NumberConfig::new("100000000000002", "200000000000002")
    });
    c.settings.tokens.push("EAAG-tenant-b".into());
    c.settings.max_body_bytes = 2048;
    let sb = spawn(c).await;
    let client = reqwest::Client::new();
    let raw = |path: String, body: &'static str| {
        client
            .post(path)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
    };
    let messages = sb.graph_url("v23.0", &format!("{NUMBER}/messages"));
    let r = raw(messages.clone(), "{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (code(&b), b["error"]["message"].as_str()),
        (100, Some("(#100) Invalid parameter"))
    );
    for body in [
        "[]",
        r#"{"messaging_product":"whatsapp"}"#,
        r#"{"messaging_product":"whatsapp","to":42}"#,
        r#"{"messaging_product":"whatsapp","to":"abc"}"#,
        r#"{"to":"15550001111"}"#,
        r#"{"messaging_product":"whatsapp","to":"15550001111","type":"hologram"}"#,
        r#"{"messaging_product":"whatsapp","to":"15550001111","type":"text","text":{"body":""}}"#,
    ] {
        let r = raw(messages.clone(), body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(code(&r.json().await.unwrap()), 100, "{body}");
    }
    let (_, b) = send(
        &sb,
        json!({"messaging_product":"whatsapp","to":"15550001111"}),
    )
    .await;
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text['body']"),
        "{b}"
    );
    sb.set_window(NUMBER, "15550001111", true);
    let buttons: Vec<Value> = (1..=4)
        .map(|i| json!({"type":"reply","reply":{"id":format!("b{i}"),"title":"T"}}))
        .collect();
    let four = json!({"messaging_product":"whatsapp","to":"15550001111","type":"interactive",
        "interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":buttons}}});
    assert_eq!(code(&send(&sb, four).await.1), 100);
    let image = json!({"messaging_product":"whatsapp","to":"15550001111","type":"image","image":{"link":"https://cdn.example/p.png"}});
    assert_eq!(send(&sb, image).await.0, StatusCode::OK);

    let big = format!(
        r#"{{"messaging_product":"whatsapp","to":"15550001111","text":{{"body":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = client
        .post(&messages)
        .bearer_auth(TOKEN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&r.json().await.unwrap()), 100);

    for (path, token) in [
        ("999999/messages", TOKEN),
        ("100000000000002/messages", TOKEN),
    ] {
        let r = client
            .post(sb.graph_url("v23.0", path))
            .bearer_auth(token)
            .json(&hello_to("15550001111"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            (
                code(&b),
                b["error"]["error_subcode"].as_i64(),
                b["error"]["type"].as_str()
            ),
            (100, Some(33), Some("GraphMethodException"))
        );
    }
    let r = client
        .post(sb.graph_url("v23.0", "100000000000002/messages"))
        .bearer_auth("EAAG-tenant-b")
        .json(&template_to(
            "15550001111",
            "hello_world",
            "en_US",
            json!([]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the number's own token may use it"
    );
    let r = client
        .post(format!("{}/graph/{NUMBER}/messages", sb.base_url))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().contains_key("x-galantis-sandbox"));
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Unknown path components")
    );
    let r = client
        .put(&messages)
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "Unsupported put request."
    );
}

#[tokio::test]
async fn number_info_template_paging_and_the_control_api() {
    let clock = clock();
    let mut c = config(&clock);
    for n in 0..3 {
        c = c.with_template(
            TemplateSeed::approved(format!("promo_{n}"), "en", "Deal {{1}}").category("MARKETING"),
        );
    }
    let sb = spawn(c).await;
    let client = reqwest::Client::new();
    let get = |url: String| client.get(url).bearer_auth(TOKEN).send();
    let info: Value = get(sb.graph_url("v23.0", NUMBER))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["id"].as_str(), info["quality_rating"].as_str()),
        (Some(NUMBER), Some("GREEN"))
    );
    assert_eq!(info["throughput"]["level"], "STANDARD");
    assert_eq!(info["display_phone_number"], "+15550000001");
    let only: Value = get(format!(
        "{}?fields=verified_name",
        sb.graph_url("v23.0", NUMBER)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(only.as_object().unwrap().len(), 2, "{only}");

    let edge = sb.graph_url("v23.0", &format!("{DEV_WABA_ID}/message_templates"));
    let mut names = Vec::new();
    let mut url = format!("{edge}?limit=2&category=MARKETING");
    loop {
        let page: Value = get(url.clone()).await.unwrap().json().await.unwrap();
        names.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match page["paging"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(names, ["promo_0", "promo_1", "promo_2"]);

    let (s, body) = control(
        &sb,
        reqwest::Method::PATCH,
        "/sandbox/settings",
        Some(json!({"pair_burst": 9, "typo": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = control(
        &sb,
        reqwest::Method::PATCH,
        "/sandbox/settings",
        Some(json!({"pair_burst": 9, "app_secret": "new"})),
    )
    .await;
    assert_eq!((s, body["pair_burst"].as_u64()), (StatusCode::OK, Some(9)));
    assert!(
        body.get("app_secret").is_none(),
        "the secret is never shown"
    );
    assert_eq!(sb.settings().app_secret, "new");
    let (s, _) = control(&sb, reqwest::Method::POST, "/sandbox/numbers",
        Some(json!({"phone_number_id":"100000000000009","waba_id":"200000000000009","messages_per_second":1000}))).await;
    assert_eq!(s, StatusCode::OK);
    let info: Value = get(sb.graph_url("v23.0", "100000000000009"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["throughput"]["level"], "HIGH");
    let (_, overview) = control(&sb, reqwest::Method::GET, "/sandbox", None).await;
    assert_eq!(overview["numbers"].as_array().unwrap().len(), 2);
    assert!(
        !overview.to_string().contains("new\""),
        "no secret in the overview"
    );
    let (s, w) = control(
        &sb,
        reqwest::Method::POST,
        "/sandbox/windows",
        Some(json!({"wa_id":"+1 555 010 9999"})),
    )
    .await;
    assert_eq!((s, w["open"].as_bool()), (StatusCode::OK, Some(true)));
}

#[tokio::test]
async fn the_standalone_command_serves_the_sandbox() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_galantis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GALANTIS_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["sandbox", "meta", "--bind", "127.0.0.1:0", "--no-webhooks"])
        .args(["--token", "cli-token", "--messages-per-second", "2"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run galantis");
    // The command prints one pretty JSON object, then serves.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            if line == "}" {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the sandbox prints its address");
    let started: Value = serde_json::from_str(&printed).unwrap();
    let base = started["base_url"].as_str().unwrap();
    assert_eq!(started["phone_number_id"], NUMBER);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for to in ["15553000001", "15553000002", "15553000003"] {
        let r = client
            .post(format!("{base}/v23.0/{NUMBER}/messages"))
            .bearer_auth("cli-token")
            .json(&hello_to(to))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // Two per second on the wall clock: the third is refused unless half a
    // second (one slot) went by during the sends; never assert on timing.
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses[2] == 429 || statuses[2] == 200);
    let r = client
        .post(format!("{base}/v23.0/{NUMBER}/messages"))
        .bearer_auth("other")
        .json(&hello_to("15553000004"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    child.kill().await.unwrap();
}
