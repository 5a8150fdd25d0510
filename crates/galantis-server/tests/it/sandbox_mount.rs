//! The Meta sandbox mounted at `/sandbox-meta` (issue 11, finding 1): absent
//! in production, behind the operator token when mounted, unable to move its
//! webhook target or signing secret, and unable to reach a tenant that has
//! real Meta credentials.

use std::time::Duration;

use galantis_core::{MarketingState, SecretName};
use galantis_sandbox::meta::{CONTROL_BODY_LIMIT, CONTROL_ROUTES, DEV_PHONE_NUMBER_ID};
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::webhook_events;
use galantis_testkit::{TEST_SANDBOX_TOKEN, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use galantis_testkit::eventually;

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn inbound(number: &str, from: &str, text: &str) -> Value {
    json!({ "phone_number_id": number, "from": from, "text": text })
}

/// The development mode of this engine: on SQLite the real thing (no Meta
/// app secret; the token is generated into the data directory); PostgreSQL
/// has no development mode, so there the sandbox is enabled explicitly.
async fn development_app() -> (TestApp, String) {
    let sqlite = std::env::var("TEST_DATABASE_URL").map_or(true, |u| u.is_empty());
    if !sqlite {
        return (
            TestApp::builder().sandbox().spawn().await,
            TEST_SANDBOX_TOKEN.to_owned(),
        );
    }
    let app = TestApp::spawn_with(|c| c.meta_app_secret = None).await;
    let path = app.state.config.data_dir.join("sandbox.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "sandbox.token must be owner-only");
    }
    let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert!(token.len() >= 32, "a generated token is long: {token}");
    (app, token)
}

#[tokio::test]
async fn production_configuration_has_no_sandbox() {
    // The test configuration is production's: every secret set, no
    // meta_base_url, the sandbox not enabled.
    let app = TestApp::spawn().await;
    assert!(app.state.sending.embedded_sandbox().is_none());
    for (method, path, body) in [
        (Method::GET, "/sandbox-meta/sandbox", None),
        (
            Method::POST,
            "/sandbox-meta/sandbox/inbound",
            Some(inbound(DEV_PHONE_NUMBER_ID, "15551230000", "STOP")),
        ),
        (Method::GET, "/sandbox-meta/sandbox/messages", None),
        (
            Method::PATCH,
            "/sandbox-meta/sandbox/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        ),
        (
            Method::GET,
            &format!("/sandbox-meta/v23.0/{DEV_PHONE_NUMBER_ID}"),
            None,
        ),
    ] {
        for token in [None, Some(TEST_SANDBOX_TOKEN)] {
            let (s, b) = call(&app, method.clone(), path, token, body.clone()).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {b}");
            assert_eq!(b["error"]["code"], "not_found", "{b}");
        }
    }

    // A tenant without credentials has nowhere to send: refused clearly.
    let t = app.create_tenant("no-sandbox").await;
    let r = app
        .request(Method::PUT, "/api/v1/settings/whatsapp", &t.token)
        .json(&json!({"waba_id": "200000000000042",
                      "phone_numbers": [{"phone_number_id": "100000000000042", "default": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "access_token_required", "{b}");
    link(&app, &t, "100000000000042").await;
    let (s, conn) = call(
        &app,
        Method::GET,
        "/api/v1/settings/whatsapp",
        Some(&t.token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(conn["state"], "disconnected", "{conn}");
    let contact = subscribed_contact(&app, &t, "+15557770001").await;
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v1/messages",
        Some(&t.token),
        Some(json!({"contact_id": contact, "template": {"name": "hello_world", "language": "en_US"}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "whatsapp_not_connected", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no sandbox"),
        "{b}"
    );
}

#[tokio::test]
async fn development_mode_mounts_the_sandbox_behind_its_token() {
    let (app, token) = development_app().await;
    assert!(app.state.sending.embedded_sandbox().is_some());
    let inbound_body = inbound(DEV_PHONE_NUMBER_ID, "15551230001", "hello");
    for (method, path, body) in [
        (Method::GET, "/sandbox-meta/sandbox", None),
        (
            Method::POST,
            "/sandbox-meta/sandbox/inbound",
            Some(inbound_body.clone()),
        ),
    ] {
        for wrong in [None, Some("not-the-token"), Some(TEST_SANDBOX_TOKEN)] {
            if wrong == Some(token.as_str()) {
                continue;
            }
            let (s, b) = call(&app, method.clone(), path, wrong, body.clone()).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {wrong:?}: {b}"
            );
            assert_eq!(b["error"]["code"], "sandbox_token_required", "{b}");
        }
        let (s, b) = call(&app, method.clone(), path, Some(&token), body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {b}");
    }
    let counters = app.state.sending.embedded_sandbox().unwrap().counters();
    assert_eq!(
        counters.inbound_messages, 1,
        "only the authorised inbound ran"
    );
}

#[tokio::test]
async fn explicitly_enabled_in_production_it_needs_the_token() {
    let app = TestApp::builder().sandbox().spawn().await;
    let (s, b) = call(&app, Method::GET, "/sandbox-meta/sandbox", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = call(
        &app,
        Method::GET,
        "/sandbox-meta/sandbox",
        Some(TEST_SANDBOX_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["sandbox"], true);
}

#[tokio::test]
async fn no_route_under_the_mount_answers_without_its_token() {
    let app = TestApp::builder().sandbox().spawn().await;
    let all = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    for (route, methods) in CONTROL_ROUTES {
        let path = format!("/sandbox-meta{route}");
        for m in *methods {
            for token in [None, Some("wrong-token-wrong-token")] {
                let (s, b) = call(&app, m.clone(), &path, token, Some(json!({}))).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path} {token:?}: {b}");
            }
            // The list matches the router: the route exists with the token.
            let (s, b) = call(&app, m.clone(), &path, Some(TEST_SANDBOX_TOKEN), None).await;
            assert!(
                ![
                    StatusCode::NOT_FOUND,
                    StatusCode::METHOD_NOT_ALLOWED,
                    StatusCode::UNAUTHORIZED
                ]
                .contains(&s),
                "{m} {path} with the token: {s} {b}"
            );
        }
        for m in all.iter().filter(|m| !methods.contains(m)) {
            let (s, b) = call(&app, m.clone(), &path, Some(TEST_SANDBOX_TOKEN), None).await;
            assert!(!s.is_success(), "{m} {path} is not listed: {s} {b}");
            assert!(
                b["error"]["message"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Unsupported")),
                "{m} {path} is not listed, so the router must not have it: {b}"
            );
        }
    }
    // Unknown control paths and the Graph routes: nothing 2xx without the
    // Graph access token; the operator token is not one.
    let access = app.state.sending.sandbox_access_token().unwrap().to_owned();
    let n = DEV_PHONE_NUMBER_ID;
    let w = galantis_sandbox::meta::DEV_WABA_ID;
    let send = json!({"messaging_product": "whatsapp", "to": "15551230002", "type": "template",
                      "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    for (m, path, body) in [
        (
            Method::GET,
            "/sandbox-meta/sandbox/nothing".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/sandbox-meta/sandbox/numbers/x".to_owned(),
            None,
        ),
        (Method::GET, format!("/sandbox-meta/v23.0/{n}"), None),
        (Method::GET, format!("/sandbox-meta/v23.0/{w}"), None),
        (
            Method::GET,
            format!("/sandbox-meta/v23.0/{w}/phone_numbers"),
            None,
        ),
        (
            Method::GET,
            format!("/sandbox-meta/v23.0/{w}/message_templates"),
            None,
        ),
        (
            Method::POST,
            format!("/sandbox-meta/v23.0/{w}/message_templates"),
            Some(json!({"name": "x", "language": "en", "category": "UTILITY", "components": []})),
        ),
        (
            Method::DELETE,
            format!("/sandbox-meta/v23.0/{w}/message_templates?name=hello_world"),
            None,
        ),
        (
            Method::POST,
            format!("/sandbox-meta/v23.0/{n}/messages"),
            Some(send.clone()),
        ),
    ] {
        for token in [None, Some(TEST_SANDBOX_TOKEN), Some("EAAG-guessed")] {
            let (s, b) = call(&app, m.clone(), &path, token, body.clone()).await;
            assert!(!s.is_success(), "{m} {path} {token:?}: {s} {b}");
        }
    }
    let (s, b) = call(
        &app,
        Method::GET,
        &format!("/sandbox-meta/v23.0/{n}"),
        Some(&access),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the process's own access token works: {b}"
    );
}

#[tokio::test]
async fn the_mounted_sandbox_keeps_its_webhook_target_and_secret() {
    let app = TestApp::builder().sandbox().spawn().await;
    let tok = Some(TEST_SANDBOX_TOKEN);
    let (_, before) = call(
        &app,
        Method::GET,
        "/sandbox-meta/sandbox/webhooks",
        tok,
        None,
    )
    .await;
    assert!(
        before["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/webhooks/meta")),
        "{before}"
    );
    for body in [
        json!({"url": "http://127.0.0.1:9/steal"}),
        json!({"url": null}),
        json!({"url": "http://127.0.0.1:9/steal", "duplicate_probability": 0.5}),
    ] {
        let (s, b) = call(
            &app,
            Method::PATCH,
            "/sandbox-meta/sandbox/webhooks",
            tok,
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["error"]["code"], "sandbox_setting_locked", "{b}");
    }
    for body in [
        json!({"app_secret": "attacker-chosen"}),
        json!({"tokens": []}),
    ] {
        let (s, b) = call(
            &app,
            Method::PATCH,
            "/sandbox-meta/sandbox/settings",
            tok,
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    }
    let (s, b) = call(
        &app,
        Method::PATCH,
        "/sandbox-meta/sandbox/settings",
        tok,
        Some(json!({"pair_burst": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "other settings stay patchable: {b}");
    let (_, after) = call(
        &app,
        Method::GET,
        "/sandbox-meta/sandbox/webhooks",
        tok,
        None,
    )
    .await;
    assert_eq!(after, before, "nothing changed");
    // The rest of the behaviour stays patchable.
    let (s, b) = call(
        &app,
        Method::PATCH,
        "/sandbox-meta/sandbox/webhooks",
        tok,
        Some(json!({"duplicate_probability": 0.25})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["duplicate_probability"], 0.25);
    assert_eq!(b["url"], before["url"]);

    // Control bodies are bounded, declared or streamed.
    let big = "x".repeat(CONTROL_BODY_LIMIT + 1);
    let (s, b) = call(
        &app,
        Method::POST,
        "/sandbox-meta/sandbox/inbound",
        tok,
        Some(inbound(DEV_PHONE_NUMBER_ID, "15551230003", &big)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large", "{b}");
    // Streamed (chunked, no length declared): cut at the limit, not buffered.
    let (status, body) = chunked_post(
        &app,
        "/sandbox-meta/sandbox/inbound",
        20,
        CONTROL_BODY_LIMIT / 8,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    assert_eq!(
        app.state
            .sending
            .embedded_sandbox()
            .unwrap()
            .counters()
            .inbound_messages,
        0
    );
}

/// A POST whose body is `chunks` chunks of `size` spaces with
/// `Transfer-Encoding: chunked`; returns the status and the raw response.
async fn chunked_post(app: &TestApp, path: &str, chunks: usize, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TEST_SANDBOX_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
    for _ in 0..chunks {
        // The server may answer and close before everything is written.
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn link(app: &TestApp, t: &TestTenant, number: &str) {
    let mut ctl = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut ctl,
        t.id,
        &PhoneNumberLink {
            phone_number_id: number.into(),
            waba_id: format!("2{}", &number[1..]),
        },
        true,
    )
    .await
    .unwrap();
    ctl.commit().await.unwrap();
    app.state.sending.invalidate(t.id);
}

async fn subscribed_contact(app: &TestApp, t: &TestTenant, phone: &str) -> uuid::Uuid {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let f = CustomerFields {
        shopify_customer_id: 4242,
        first_name: Some("Real".into()),
        phone: Some(phone.to_owned()),
        phone_raw: Some(phone.to_owned()),
        phone_status: Some("valid"),
        marketing_state: Some(MarketingState::Subscribed),
        updated_at: 1,
        ..Default::default()
    };
    contacts::upsert_customer(&mut tx, &f, 1).await.unwrap();
    let c = contacts::by_phone(&mut tx, phone).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    c.id
}

async fn state_of(app: &TestApp, t: &TestTenant, phone: &str) -> Option<String> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_phone(&mut tx, phone).await.unwrap();
    tx.commit().await.unwrap();
    c.map(|c| c.marketing_state.to_string())
}

async fn events(app: &TestApp, t: &TestTenant) -> usize {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let f = webhook_events::Filter {
        limit: 100,
        ..Default::default()
    };
    let n = webhook_events::list(&mut tx, &f).await.unwrap().len();
    tx.commit().await.unwrap();
    n
}

#[tokio::test]
async fn a_sandbox_inbound_never_reaches_a_tenant_with_real_credentials() {
    let app = TestApp::builder().sandbox().spawn().await;
    let sb = app.state.sending.embedded_sandbox().unwrap().clone();
    let tok = Some(TEST_SANDBOX_TOKEN);
    let (real_number, play_number) = ("100000000000501", "100000000000502");
    let real = app.create_tenant("real-credentials").await;
    let play = app.create_tenant("sandbox-only").await;
    link(&app, &real, real_number).await;
    link(&app, &play, play_number).await;
    app.state
        .secrets
        .put(
            real.id,
            SecretName::MetaAccessToken,
            &SecretString::from("EAAG-real-meta-token"),
        )
        .await
        .unwrap();
    let customer = "+15558880001";
    subscribed_contact(&app, &real, customer).await;
    for n in [real_number, play_number] {
        let (s, b) = call(
            &app,
            Method::POST,
            "/sandbox-meta/sandbox/numbers",
            tok,
            Some(json!({"phone_number_id": n, "waba_id": format!("2{}", &n[1..])})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    // The delivery path works: a sandbox tenant gets its inbound message.
    let (s, b) = call(
        &app,
        Method::POST,
        "/sandbox-meta/sandbox/inbound",
        tok,
        Some(inbound(play_number, "15558880002", "hi")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    eventually("the sandbox tenant stores the inbound message", || async {
        state_of(&app, &play, "+15558880002").await.is_some()
    })
    .await;

    // The real tenant: STOP and a stranger's message, both ignored.
    for (from, text) in [(&customer[1..], "STOP"), ("15558880003", "hello")] {
        let (s, b) = call(
            &app,
            Method::POST,
            "/sandbox-meta/sandbox/inbound",
            tok,
            Some(inbound(real_number, from, text)),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert!(sb.webhooks_settled(Duration::from_secs(30)).await);
    let c = sb.counters().webhooks;
    assert_eq!(c.delivered, 3, "acknowledged, so never retried: {c:?}");
    assert_eq!(c.failed_attempts, 0, "{c:?}");
    assert_eq!(
        state_of(&app, &real, customer).await.as_deref(),
        Some(MarketingState::Subscribed.as_str()),
        "consent unchanged"
    );
    assert_eq!(
        state_of(&app, &real, "+15558880003").await,
        None,
        "no contact"
    );
    assert_eq!(
        events(&app, &real).await,
        0,
        "nothing stored for the real tenant"
    );
    let (_, convs) = call(
        &app,
        Method::GET,
        "/api/v1/contacts",
        Some(&real.token),
        None,
    )
    .await;
    assert_eq!(convs["data"].as_array().map(Vec::len), Some(1), "{convs}");
}

/// Runs `galantis sandbox meta` with `args` and `env`; returns the child and
/// its base URL, or the exit status and stderr when it refuses to start.
async fn standalone(
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(tokio::process::Child, String), (std::process::ExitStatus, String)> {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_galantis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GALANTIS_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["sandbox", "meta", "--no-webhooks"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run galantis");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            if line == "}" {
                return true;
            }
        }
        false
    };
    let started = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the sandbox starts or exits");
    if !started {
        let out = child.wait_with_output().await.unwrap();
        return Err((
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let v: Value = serde_json::from_str(&printed).unwrap();
    Ok((child, v["base_url"].as_str().unwrap().to_owned()))
}

#[tokio::test]
async fn the_standalone_sandbox_takes_an_operator_token() {
    const T: &str = "standalone-operator-token";
    let client = reqwest::Client::new();
    for (args, env) in [
        (
            vec!["--bind", "127.0.0.1:0"],
            vec![("GALANTIS_SANDBOX_TOKEN", T)],
        ),
        (
            vec!["--bind", "127.0.0.1:0"],
            vec![("GALANTIS_SANDBOX__TOKEN", T)],
        ),
        (vec!["--bind", "127.0.0.1:0", "--control-token", T], vec![]),
    ] {
        let (mut child, base) = standalone(&args, &env).await.expect("starts");
        let r = client.get(format!("{base}/sandbox")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{args:?} {env:?}");
        let r = client
            .get(format!("{base}/sandbox"))
            .bearer_auth(T)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{args:?} {env:?}");
        child.kill().await.unwrap();
    }
    // Without a token the control API is open, so only on loopback.
    let (status, stderr) = standalone(&["--bind", "0.0.0.0:0"], &[])
        .await
        .expect_err("refuses to start");
    assert!(!status.success());
    assert!(stderr.contains("--control-token"), "{stderr}");
}

#[tokio::test]
async fn the_send_path_uses_the_mounts_own_tokens() {
    use galantis_core::sending::{Lookup, MessageSender};
    let app = TestApp::builder().sandbox().spawn().await;
    let t = app.create_tenant("mount-send").await;
    link(&app, &t, DEV_PHONE_NUMBER_ID).await;
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v1/templates/sync",
        Some(&t.token),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let contact = subscribed_contact(&app, &t, "+15557770009").await;
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v1/messages",
        Some(&t.token),
        Some(
            json!({"contact_id": contact, "idempotency_key": "mount-send-1",
                    "template": {"name": "hello_world", "language": "en_US"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let sb = app.state.sending.embedded_sandbox().unwrap().clone();
    eventually("the mounted sandbox accepted the send", || async {
        sb.counters().accepted == 1
    })
    .await;
    // Sent with the per-process access token, the only one the mount takes.
    let sent = sb.messages();
    assert_eq!(sent.len(), 1);
    // Reconciliation reads the control API with the operator token; a
    // client without it is refused there and learns nothing.
    let mount = format!("http://{}/sandbox-meta", app.addr);
    let key = sent[0].biz_opaque_callback_data.clone().unwrap();
    let found = app
        .state
        .sending
        .api(&mount)
        .lookup(DEV_PHONE_NUMBER_ID, &key)
        .await
        .unwrap();
    assert!(
        matches!(found, Lookup::Accepted { wamid: Some(_) }),
        "{found:?}"
    );
    let outsider =
        galantis_server::sending::CloudApi::with_client(reqwest::Client::new(), &mount, "v23.0");
    let refused = outsider.lookup(DEV_PHONE_NUMBER_ID, &key).await.unwrap();
    assert!(matches!(refused, Lookup::Unsupported), "{refused:?}");
}

#[tokio::test]
async fn the_sandbox_signature_is_accepted_only_where_the_sandbox_is_mounted() {
    use galantis_sandbox::meta::{signature, webhook_secret_for};
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "200000000000999",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000999", "phone_number_id": "100000000000999"},
            "messages": [{"from": "15551230099", "id": "wamid.x", "timestamp": "1700000000",
                          "type": "text", "text": {"body": "STOP"}}]}}]}]})
    .to_string();
    let sig = signature(&webhook_secret_for(TEST_SANDBOX_TOKEN), body.as_bytes());
    assert_ne!(
        webhook_secret_for(TEST_SANDBOX_TOKEN),
        galantis_testkit::TEST_META_SECRET
    );
    // Another node of the same deployment (same token) accepts it…
    let mounted = TestApp::builder().sandbox().spawn().await;
    // …a production node does not: only Meta's own signature counts there.
    let production = TestApp::spawn().await;
    for (app, want) in [
        (&mounted, StatusCode::OK),
        (&production, StatusCode::UNAUTHORIZED),
    ] {
        let r = app
            .client
            .post(app.url("/webhooks/meta"))
            .header("x-hub-signature-256", &sig)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
    }
}
