//! Bounded work: CSV imports under a row and a byte cap, uploads that are cut
//! off end `failed` (also when the process that took them is gone), Meta
//! webhooks with too many changes, unrouted changes counted per number and
//! hour, one 413, and names that refuse control and bidi-override characters.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use galantis_core::FixedClock;
use galantis_server::error::PAYLOAD_TOO_LARGE_MESSAGE;
use galantis_server::jobs::kinds::audience::{ImportUploadDeadline, UPLOAD_INTERRUPTED};
use galantis_server::webhooks::signature::sign_meta;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::csv_imports;
use galantis_testkit::{TEST_META_SECRET, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use galantis_testkit::eventually;

async fn new_list(app: &TestApp, t: &TestTenant, name: &str) -> String {
    let r = app
        .request(Method::POST, "/api/v1/lists", &t.token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let list: Value = r.json().await.unwrap();
    list["id"].as_str().unwrap().to_owned()
}

fn csv_rows(n: usize) -> String {
    let mut csv = String::from("phone,first_name,last_name,email,consent\n");
    for i in 0..n {
        csv.push_str(&format!("+52155500{i:05},Name{i},,,\n"));
    }
    csv
}

async fn imports_of(app: &TestApp, t: &TestTenant, list: &str) -> Vec<Value> {
    let v: Value = app
        .get(&format!("/api/v1/imports?list_id={list}"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().clone()
}

async fn contact_count(app: &TestApp, t: &TestTenant) -> usize {
    let v: Value = app
        .get("/api/v1/contacts?limit=200", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().len()
}

async fn list_member_count(app: &TestApp, t: &TestTenant, list: &str) -> usize {
    let v: Value = app
        .get(&format!("/api/v1/lists/{list}/members"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().len()
}

/// Waits for the list's only import to reach `failed`, and returns it.
async fn failed_import(app: &TestApp, t: &TestTenant, list: &str) -> Value {
    eventually("the import ends failed", || async {
        let imports = imports_of(app, t, list).await;
        imports.len() == 1 && imports[0]["status"] == "failed"
    })
    .await;
    imports_of(app, t, list).await.remove(0)
}

/// Uploads `csv` with chunked transfer encoding (no length announced), 1 KB
/// a chunk, over a raw socket; returns the response's status and JSON body.
async fn chunked_upload(
    app: &TestApp,
    t: &TestTenant,
    list: &str,
    csv: &[u8],
) -> (StatusCode, Value) {
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut req = format!(
        "POST /api/v1/lists/{list}/imports HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: text/csv\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        app.addr, t.token
    )
    .into_bytes();
    for c in csv.chunks(1024) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and stop reading before the end: that is the point.
    let _ = sock.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = sock.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        StatusCode::from_u16(status).unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_one_413(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(
        body["error"]["message"], PAYLOAD_TOO_LARGE_MESSAGE,
        "{body}"
    );
}

#[tokio::test]
async fn an_import_over_the_row_cap_is_refused_failed_and_applies_nothing() {
    let app = TestApp::spawn_with(|c| c.imports.max_rows = 5).await;
    let t = app.create_tenant("bounded-rows").await;
    let list = new_list(&app, &t, "Capped").await;

    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/lists/{list}/imports"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(csv_rows(6))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "import_too_many_rows", "{b}");

    let import = failed_import(&app, &t, &list).await;
    assert!(
        import["error"].as_str().unwrap().contains("at most 5 rows"),
        "{import}"
    );
    assert_eq!(contact_count(&app, &t).await, 0);
    assert_eq!(list_member_count(&app, &t, &list).await, 0);

    // At the cap is fine.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/lists/{list}/imports"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(csv_rows(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    eventually("the import at the cap completes", || async {
        contact_count(&app, &t).await == 5
    })
    .await;
}

#[tokio::test]
async fn an_import_over_the_byte_cap_is_413_and_applies_nothing() {
    let app = TestApp::spawn_with(|c| c.imports.max_bytes = 2048).await;
    let t = app.create_tenant("bounded-bytes").await;
    let list = new_list(&app, &t, "Capped").await;
    let big = csv_rows(100);
    assert!(big.len() > 2048);

    // Announced by its length: refused before anything is read or created.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/lists/{list}/imports"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_one_413(status, &r.json().await.unwrap());
    assert!(imports_of(&app, &t, &list).await.is_empty());

    // Streamed without a length: the read stops at the cap and the import
    // ends failed.
    let (status, body) = chunked_upload(&app, &t, &list, big.as_bytes()).await;
    assert_one_413(status, &body);
    let import = failed_import(&app, &t, &list).await;
    assert_eq!(import["error"], PAYLOAD_TOO_LARGE_MESSAGE, "{import}");
    assert_eq!(contact_count(&app, &t).await, 0);
    assert_eq!(list_member_count(&app, &t, &list).await, 0);
}

#[tokio::test]
async fn an_upload_cut_off_mid_stream_ends_failed() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bounded-cut").await;
    let list = new_list(&app, &t, "Cut").await;

    // A raw socket: headers promising 1 MB, part of the file, then gone.
    let part = csv_rows(700);
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/lists/{list}/imports?filename=cut.csv HTTP/1.1\r\nhost: {}\r\n\
         authorization: Bearer {}\r\ncontent-type: text/csv\r\ncontent-length: 1048576\r\n\r\n",
        app.addr, t.token
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(part.as_bytes()).await.unwrap();
    sock.flush().await.unwrap();
    eventually("the upload has started", || async {
        imports_of(&app, &t, &list).await.len() == 1
    })
    .await;
    drop(sock);

    let import = failed_import(&app, &t, &list).await;
    assert_eq!(import["filename"], "cut.csv");
    assert!(import["error"].as_str().is_some(), "{import}");
    // Nothing of it is applied, now or later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(contact_count(&app, &t).await, 0);
    assert_eq!(list_member_count(&app, &t, &list).await, 0);
}

#[tokio::test]
async fn an_upload_left_uploading_by_a_previous_process_ends_failed() {
    // A deadline far beyond the test's run: on a loaded machine the sweep
    // below can take longer than the default (request timeout + 5 s), and
    // the live upload's snoozed check must not come round meanwhile.
    let app = TestApp::builder()
        .config(|c| c.request_timeout_secs = 600)
        .spawn()
        .await;
    let t = app.create_tenant("bounded-restart").await;
    let list = new_list(&app, &t, "Restart").await;
    let list_id: Uuid = list.parse().unwrap();
    let now = Utc::now();
    let long_ago = (now - chrono::Duration::hours(1)).timestamp_millis();

    // What a process that died mid-upload leaves behind: the import row
    // `uploading`, a staged batch, and the deadline job committed with it.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let stale = csv_imports::create(&mut tx, list_id, Some("stale.csv"), None, long_ago)
        .await
        .unwrap();
    csv_imports::set_status(&mut tx, stale, "uploading", None, long_ago)
        .await
        .unwrap();
    let row: Vec<galantis_core::audience::ImportRow> = Vec::new();
    csv_imports::add_batch(&mut tx, stale, 0, &row)
        .await
        .unwrap();
    // And a live upload of this process, whose deadline check comes early:
    // it must be left alone.
    let live = csv_imports::create(
        &mut tx,
        list_id,
        Some("live.csv"),
        None,
        now.timestamp_millis(),
    )
    .await
    .unwrap();
    csv_imports::set_status(&mut tx, live, "uploading", None, now.timestamp_millis())
        .await
        .unwrap();
    for id in [stale, live] {
        galantis_server::jobs::enqueue(&mut tx, &ImportUploadDeadline { import_id: id }, now)
            .await
            .unwrap();
    }
    // One left by a version that enqueued no deadline job: the hourly
    // (and start-up) tenant sweep ends it.
    let legacy = csv_imports::create(&mut tx, list_id, Some("legacy.csv"), None, long_ago)
        .await
        .unwrap();
    csv_imports::set_status(&mut tx, legacy, "uploading", None, long_ago)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    galantis_store::jobs::enqueue_global_now(
        app.db(),
        &galantis_server::jobs::kinds::audience::periodic_job(now),
    )
    .await
    .unwrap();

    for id in [stale, legacy] {
        eventually("the stale upload ends failed", || async {
            let mut tx = app.db().tenant_read(t.id).await.unwrap();
            let i = csv_imports::get(&mut tx, id).await.unwrap().unwrap();
            tx.commit().await.unwrap();
            i.status == "failed"
        })
        .await;
    }
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let s = csv_imports::get(&mut tx, stale).await.unwrap().unwrap();
    assert_eq!(s.error.as_deref(), Some(UPLOAD_INTERRUPTED));
    assert!(
        csv_imports::batch(&mut tx, stale, 0)
            .await
            .unwrap()
            .is_none()
    );
    let g = csv_imports::get(&mut tx, legacy).await.unwrap().unwrap();
    assert_eq!(g.error.as_deref(), Some(UPLOAD_INTERRUPTED));
    let l = csv_imports::get(&mut tx, live).await.unwrap().unwrap();
    assert_eq!(l.status, "uploading");
    tx.commit().await.unwrap();
}

// ---------------------------------------------------------------------------
// Meta webhooks
// ---------------------------------------------------------------------------

async fn meta(app: &TestApp, body: &Value) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    app.client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap()
}

/// `n` status changes for `pnid`, in one entry.
fn changes(pnid: &str, n: usize, from: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            json!({"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
                "statuses": [{"id": format!("wamid.{i}"), "status": "delivered",
                              "timestamp": "1767225600", "recipient_id": "521234567890"}]}})
        })
        .collect()
}

#[tokio::test]
async fn a_meta_post_with_more_than_1000_changes_is_413_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bounded-meta").await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: "pn-bounded".into(),
            waba_id: "waba-bounded".into(),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // 1,001 changes over two entries: one routed, the rest for nobody.
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "waba-bounded", "changes": changes("pn-bounded", 1, 0)},
        {"id": "waba-x", "changes": changes("pn-nobody", 1000, 1)},
    ]});
    let r = meta(&app, &body).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "too_many_changes", "{b}");
    assert!(
        tenants::unrouted_webhooks(app.db(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let events: Value = app
        .get("/api/v1/webhook-events", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(events["data"].as_array().unwrap().is_empty(), "{events}");

    // 1,000 is what Meta may send.
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "waba-bounded", "changes": changes("pn-bounded", 1, 0)},
        {"id": "waba-x", "changes": changes("pn-nobody", 999, 1)},
    ]});
    let r = meta(&app, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["changes"].as_i64(), b["unrouted"].as_i64()),
        (Some(1), Some(999))
    );
}

#[tokio::test]
async fn unrouted_changes_are_one_row_per_number_and_hour_with_a_count() {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let app = TestApp::builder().clock(clock.clone()).spawn().await;

    for post in 0..30 {
        let body = json!({"object": "whatsapp_business_account",
            "entry": [{"id": "waba-x", "changes": changes("pn-flood", 1000, post * 1000)}]});
        let r = meta(&app, &body).await;
        assert_eq!(r.status(), StatusCode::OK, "post {post}");
        clock.advance(chrono::Duration::seconds(60));
    }
    // Another number, and the next hour, are rows of their own.
    let other = json!({"object": "whatsapp_business_account",
        "entry": [{"id": "waba-x", "changes": changes("pn-other", 2, 0)}]});
    meta(&app, &other).await;
    clock.advance(chrono::Duration::hours(1));
    let next = json!({"object": "whatsapp_business_account",
        "entry": [{"id": "waba-x", "changes": changes("pn-flood", 3, 0)}]});
    meta(&app, &next).await;

    let rows = tenants::unrouted_webhooks(app.db(), 100).await.unwrap();
    let summary: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.origin.clone(), r.hour_start.timestamp(), r.count))
        .collect();
    let hour = Utc
        .with_ymd_and_hms(2026, 1, 1, 10, 0, 0)
        .unwrap()
        .timestamp();
    assert_eq!(
        summary,
        vec![
            ("pn-flood".to_owned(), hour + 3600, 3),
            ("pn-flood".to_owned(), hour, 30_000),
            ("pn-other".to_owned(), hour, 2),
        ]
    );
    let flood = &rows[1];
    assert_eq!(flood.topic, "messages");
    assert_eq!(flood.first_seen_at, t0);
    assert!(flood.last_seen_at > flood.first_seen_at);
    assert_eq!(
        flood.sample["change"]["value"]["statuses"][0]["id"], "wamid.0",
        "the first change is kept as a sample"
    );
}

// ---------------------------------------------------------------------------
// One 413, and clean names
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_413_has_the_same_code_and_message() {
    let app = TestApp::spawn_with(|c| {
        c.api_body_limit_bytes = 4096;
        c.webhook_body_limit_bytes = 4096;
        c.imports.max_bytes = 4096;
    })
    .await;
    let t = app.create_tenant("bounded-413").await;
    let list = new_list(&app, &t, "L").await;
    let pad = "x".repeat(10_000);

    let r = app
        .request(Method::POST, "/api/v1/lists", &t.token)
        .json(&json!({ "name": "n", "description": pad }))
        .send()
        .await
        .unwrap();
    let s = r.status();
    assert_one_413(s, &r.json().await.unwrap());

    let raw = pad.clone().into_bytes();
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .body(raw)
        .send()
        .await
        .unwrap();
    let s = r.status();
    assert_one_413(s, &r.json().await.unwrap());

    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/lists/{list}/imports"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(pad)
        .send()
        .await
        .unwrap();
    let s = r.status();
    assert_one_413(s, &r.json().await.unwrap());
}

#[tokio::test]
async fn names_with_control_or_bidi_characters_or_too_long_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bounded-names").await;
    let list = new_list(&app, &t, "Fine").await;
    let rules =
        json!({"groups": [{"conditions": [{"field": "country", "operator": "=", "value": "MX"}]}]});

    let bad_names = [
        "nul\u{0}name",
        "esc\u{1b}[31m",
        "line\nbreak",
        "c1\u{85}x",
        "evil\u{202E}gpj.exe",
        "iso\u{2066}late",
    ];
    let too_long = "n".repeat(121);
    let mut cases: Vec<(Method, String, Value, &str)> = Vec::new();
    for name in bad_names.iter().copied().chain([too_long.as_str()]) {
        cases.push((
            Method::POST,
            "/api/v1/lists".into(),
            json!({ "name": name }),
            "name",
        ));
        cases.push((
            Method::PATCH,
            format!("/api/v1/lists/{list}"),
            json!({ "name": name }),
            "name",
        ));
        cases.push((
            Method::POST,
            "/api/v1/segments".into(),
            json!({ "name": name, "rules": rules }),
            "name",
        ));
    }
    for d in ["nul\u{0}", "rtl\u{202B}x", &"d".repeat(1001)] {
        cases.push((
            Method::POST,
            "/api/v1/lists".into(),
            json!({ "name": "ok", "description": d }),
            "description",
        ));
        cases.push((
            Method::PATCH,
            format!("/api/v1/lists/{list}"),
            json!({ "description": d }),
            "description",
        ));
    }
    for (method, path, body, field) in cases {
        let r = app
            .request(method.clone(), &path, &t.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}"
        );
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "invalid_field", "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{b}"
        );
    }
    // Nothing changed: one list, still named Fine, no segment.
    let lists: Value = app
        .get("/api/v1/lists", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lists = lists["data"].as_array().unwrap();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0]["name"], "Fine");
    assert!(lists[0]["description"].is_null());
    let segs: Value = app
        .get("/api/v1/segments", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(segs["data"].as_array().unwrap().is_empty());

    // Ordinary text, line breaks in a description included, is fine.
    let r = app
        .request(Method::PATCH, &format!("/api/v1/lists/{list}"), &t.token)
        .json(&json!({ "name": "VIP — México 🇲🇽", "description": "line one\nline two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // So are token labels.
    for label in ["tab\tlabel", "rlo\u{202E}x", &"l".repeat(101)] {
        let r = app
            .request(Method::POST, "/api/v1/tokens", &t.token)
            .json(&json!({ "label": label }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{label:?}");
        let b: Value = r.json().await.unwrap();
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("label:"),
            "{b}"
        );
    }

    // A CSV import's file name is held to the same rules.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/lists/{list}/imports?filename=a%E2%80%AEvsc.exe"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(csv_rows(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("filename:"),
        "{b}"
    );
    assert!(imports_of(&app, &t, &list).await.is_empty());
}
