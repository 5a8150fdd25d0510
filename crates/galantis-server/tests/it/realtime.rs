//! `GET /api/v1/realtime`: a tenant's events pushed over a WebSocket, to
//! that tenant's clients only, across nodes, replayable with `since`.

use std::time::Duration;

use futures::StreamExt;
use galantis_core::Role;
use galantis_server::app;
use galantis_server::http::ServeRole;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_testkit::webhooks::meta;
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for a frame before failing (a bound, not a
/// measurement: delivery normally takes milliseconds).
const WAIT: Duration = Duration::from_secs(15);
const WA: &str = "34612345678";

async fn tenant(app: &TestApp, name: &str) -> TestTenant {
    let t = app.create_tenant(name).await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: format!("pn-{}", t.shop.as_str()),
            waba_id: format!("waba-{}", t.shop.as_str()),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t
}

/// An inbound text message from a customer, as Meta sends it.
fn inbound(t: &TestTenant, wamid: &str, text: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": format!("waba-{}", t.shop.as_str()),
    "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": format!("pn-{}", t.shop.as_str())},
        "contacts": [{"profile": {"name": "Lucía Pérez"}, "wa_id": WA}],
        "messages": [{"from": WA, "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": text}}],
    }}]}]})
}

async fn receive_inbound(app: &TestApp, t: &TestTenant, wamid: &str) {
    let r = meta(app, &inbound(t, wamid, "hola")).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.run_jobs_until_idle().await;
}

fn ws_url(base: &str, query: &str) -> String {
    format!(
        "{}/api/v1/realtime{query}",
        base.replace("http://", "ws://")
    )
}

/// Connects with the token in `Sec-WebSocket-Protocol`.
async fn connect(base: &str, token: &str, query: &str) -> Result<Ws, WsError> {
    let mut req = ws_url(base, query).into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("bearer, {token}")).unwrap(),
    );
    let (ws, resp) = handshake(req).await?;
    assert_eq!(resp.headers()["sec-websocket-protocol"], "bearer");
    Ok(ws)
}

/// The WebSocket handshake, bounded so a server that never answers fails
/// the test instead of hanging it.
async fn handshake(
    req: impl IntoClientRequest + Unpin,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    WsError,
> {
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("the handshake ends within the wait bound")
}

/// The next event frame (pings are answered by the client library).
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event within the wait bound")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn status_of(e: WsError) -> StatusCode {
    match e {
        WsError::Http(resp) => StatusCode::from_u16(resp.status().as_u16()).unwrap(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn an_inbound_message_reaches_that_tenants_clients_only() {
    let app = TestApp::builder().without_workers().spawn().await;
    let a = tenant(&app, "rt-a").await;
    let b = tenant(&app, "rt-b").await;
    let mut ws_a = connect(&app.base_url, &a.token, "").await.unwrap();
    // A role without `inbox.read` is not sent conversation events (the hub
    // serves every client of a tenant in one pass, so once A's owner has the
    // frame, this one would have it too).
    let mut creator = app.state.realtime.subscribe(
        a.id,
        Role::ContentCreator,
        app.state.realtime.last_seq(a.id).await.unwrap(),
    );
    // The query-string token works too.
    let (mut ws_b, _) = handshake(ws_url(&app.base_url, &format!("?token={}", b.token)))
        .await
        .unwrap();

    receive_inbound(&app, &a, "wamid.RT-A1").await;
    let ev = next_event(&mut ws_a).await;
    assert_eq!(ev["type"], "conversation.message_created");
    assert_eq!(ev["data"]["wamid"], "wamid.RT-A1");
    assert!(ev["data"]["message_id"].is_string());
    assert!(ev["data"]["conversation_id"].is_string());
    assert!(ev["seq"].as_i64().unwrap() > 0);
    assert!(
        creator.rx.try_recv().is_err(),
        "no inbox events without inbox.read"
    );

    // B's first frame is B's own message: A's never reached it.
    receive_inbound(&app, &b, "wamid.RT-B1").await;
    let ev = next_event(&mut ws_b).await;
    assert_eq!(ev["data"]["wamid"], "wamid.RT-B1");
    // And B's event did not reach A.
    receive_inbound(&app, &a, "wamid.RT-A2").await;
    assert_eq!(next_event(&mut ws_a).await["data"]["wamid"], "wamid.RT-A2");
    app.stop().await;
    // Shutting down closes the sockets with "going away".
    let code = loop {
        match tokio::time::timeout(WAIT, ws_a.next())
            .await
            .expect("closed within the bound")
        {
            Some(Ok(Message::Close(Some(f)))) => break f.code,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Away);
}

#[tokio::test]
async fn invalid_or_revoked_tokens_cannot_open_or_keep_the_socket() {
    let app = TestApp::builder()
        .without_workers()
        .config(|c| c.realtime.auth_recheck_secs = 1)
        .spawn()
        .await;
    let t = tenant(&app, "rt-auth").await;

    // No token, a bad one, a malformed header.
    let e = handshake(ws_url(&app.base_url, "")).await.unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
    let e = connect(
        &app.base_url,
        "glt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
    let e = connect(&app.base_url, &format!("{}x", t.token), "")
        .await
        .unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
    // A bad `since` is 400, before anything is set up.
    for q in ["?since=-1", "?since=abc"] {
        let e = connect(&app.base_url, &t.token, q).await.unwrap_err();
        assert_eq!(status_of(e), StatusCode::BAD_REQUEST, "{q}");
    }
    // A plain GET (no upgrade) with a valid token: 400 with the JSON error.
    let r = app.get("/api/v1/realtime", &t.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_upgrade_required");

    // Revoked while connected: the socket closes with 4001.
    let (_, agent) = app.add_member(&t, Role::SupportAgent).await;
    let mut ws = connect(&app.base_url, &agent, "").await.unwrap();
    let list: Value = app
        .get("/api/v1/tokens", &agent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .request(Method::DELETE, &format!("/api/v1/tokens/{id}"), &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let code = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed within the bound")
        {
            Some(Ok(Message::Close(Some(f)))) => break f.code,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Library(4001));
    // And it cannot open again.
    let e = connect(&app.base_url, &agent, "").await.unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn reconnecting_with_since_receives_exactly_what_was_missed() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "rt-since").await;
    let mut ws = connect(&app.base_url, &t.token, "").await.unwrap();
    receive_inbound(&app, &t, "wamid.S1").await;
    let first = next_event(&mut ws).await;
    assert_eq!(first["data"]["wamid"], "wamid.S1");
    let seen = first["seq"].as_i64().unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    // Missed while disconnected.
    receive_inbound(&app, &t, "wamid.S2").await;
    receive_inbound(&app, &t, "wamid.S3").await;

    let mut ws = connect(&app.base_url, &t.token, &format!("?since={seen}"))
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut last = seen;
    for _ in 0..2 {
        let ev = next_event(&mut ws).await;
        let seq = ev["seq"].as_i64().unwrap();
        assert!(seq > last, "increasing: {seq} after {last}");
        last = seq;
        got.push(ev["data"]["wamid"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["wamid.S2", "wamid.S3"]);
    // Then live, with nothing repeated in between.
    receive_inbound(&app, &t, "wamid.S4").await;
    let ev = next_event(&mut ws).await;
    assert_eq!(ev["data"]["wamid"], "wamid.S4");
    assert!(ev["seq"].as_i64().unwrap() > last);

    // From the start: every message once, in order.
    let mut ws0 = connect(&app.base_url, &t.token, "?since=0").await.unwrap();
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(
            next_event(&mut ws0).await["data"]["wamid"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(all, ["wamid.S1", "wamid.S2", "wamid.S3", "wamid.S4"]);
    app.stop().await;
}

#[tokio::test]
async fn a_client_too_slow_to_read_is_dropped_without_holding_back_others() {
    let app = TestApp::builder()
        .without_workers()
        .config(|c| c.realtime.client_buffer = 1)
        .spawn()
        .await;
    let t = tenant(&app, "rt-slow").await;
    // A registration nobody reads, beside a real client.
    let mut slow = app.state.realtime.subscribe(
        t.id,
        Role::Owner,
        app.state.realtime.last_seq(t.id).await.unwrap(),
    );
    let mut ws = connect(&app.base_url, &t.token, "").await.unwrap();
    for i in 0..3 {
        receive_inbound(&app, &t, &format!("wamid.SL{i}")).await;
        assert_eq!(
            next_event(&mut ws).await["data"]["wamid"],
            format!("wamid.SL{i}")
        );
    }
    // It got what fit in its buffer, then was let go.
    assert!(slow.rx.recv().await.is_some());
    assert!(
        tokio::time::timeout(WAIT, slow.rx.recv())
            .await
            .unwrap()
            .is_none(),
        "the slow client's feed is closed"
    );
    assert_eq!(
        slow.dropped(),
        Some(galantis_server::realtime::hub::Dropped::TooSlow)
    );
    app.stop().await;
}

/// A second node on node 1's store (no workers), serving until dropped.
struct Node2 {
    base_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn second_node(node1: &TestApp) -> Node2 {
    let config = (*node1.state.config).clone();
    let state = app::build_state(config).await.expect("node 2 state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app::serve(state, listener, ServeRole::Api, None, async {
        let _ = rx.await;
    }));
    Node2 {
        base_url: format!("http://{addr}"),
        _stop: tx,
    }
}

async fn across_nodes(redis: bool) {
    let node1 = TestApp::builder()
        .without_workers()
        .config(move |c| {
            // Only the cross-node notification may deliver it (no resync).
            c.realtime.resync_secs = 3600;
            if redis {
                c.redis_url = Some("redis://127.0.0.1:6379".into());
            }
        })
        .spawn()
        .await;
    let t = tenant(&node1, if redis { "rt-redis" } else { "rt-pg" }).await;
    let node2 = second_node(&node1).await;
    let mut ws = connect(&node2.base_url, &t.token, "").await.unwrap();
    // The client is registered before the event exists; node 2's
    // LISTEN/SUBSCRIBE re-reads on connect, so whichever is ready first,
    // the event is read once the notification (or the connect) arrives.
    receive_inbound(&node1, &t, "wamid.NODE1").await;
    let ev = next_event(&mut ws).await;
    assert_eq!(ev["type"], "conversation.message_created");
    assert_eq!(ev["data"]["wamid"], "wamid.NODE1");
    drop(ws);
    drop(node2);
    node1.stop().await;
}

#[tokio::test]
async fn a_client_on_another_node_receives_events_through_postgres() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        return; // Two nodes share a store only on PostgreSQL.
    }
    across_nodes(false).await;
}

#[tokio::test]
async fn a_client_on_another_node_receives_events_through_redis() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        return;
    }
    across_nodes(true).await;
}

/// The inbox's changes reach the dashboards too: resolving a conversation
/// through the API pushes `conversation.updated` with its new status.
#[tokio::test]
async fn a_conversation_status_change_is_pushed_as_conversation_updated() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "rt-inbox").await;
    let mut ws = connect(&app.base_url, &t.token, "").await.unwrap();
    receive_inbound(&app, &t, "wamid.RT-INBOX1").await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "conversation.message_created");
    let conversation = created["data"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/conversations/{conversation}"),
            &t.token,
        )
        .json(&json!({"status": "RESOLVED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let updated = next_event(&mut ws).await;
    assert_eq!(updated["type"], "conversation.updated", "{updated}");
    assert_eq!(updated["data"]["conversation_id"], conversation.as_str());
    assert_eq!(updated["data"]["status"], "RESOLVED");
    assert!(updated["seq"].as_i64().unwrap() > created["seq"].as_i64().unwrap());
    app.stop().await;
}
