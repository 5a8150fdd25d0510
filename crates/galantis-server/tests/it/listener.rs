//! The listener against slow, idle and too many clients, and who may read
//! /metrics. Timeouts are configured short; the assertions allow the
//! configured timeout plus slack and never measure speed.

use std::time::Duration;

use galantis_testkit::TestApp;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (or `limit` passes: then `None`).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

/// Status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: body {body:?}"));
    (status, body)
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.listener.header_read_timeout_secs = 1;
        c.listener.idle_timeout_secs = 60;
    })
    .await;
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "closed within the header timeout (1 s) + 1 s"
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    const SOCKETS: usize = 2_000;
    let app = TestApp::spawn_with(|c| {
        // Only the idle timeout can close these.
        c.listener.header_read_timeout_secs = 120;
        c.listener.idle_timeout_secs = 1;
    })
    .await;
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        sockets.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // A kept-alive connection that answered a request also goes idle.
    let mut used = TcpStream::connect(app.addr).await.unwrap();
    used.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let raw = read_until_closed(&mut used, Duration::from_secs(30))
        .await
        .expect("the kept-alive connection is closed once idle");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    let closed = futures::future::join_all(
        sockets
            .iter_mut()
            .map(|s| read_until_closed(s, Duration::from_secs(30))),
    )
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "every idle socket was closed"
    );
    // The server still serves.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_in_the_json_error_shape() {
    let app = TestApp::spawn_with(|c| {
        c.listener.body_read_timeout_secs = 1;
    })
    .await;
    let t = app.create_tenant("stalled-body").await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/lists HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        t.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let raw = read_until_closed(&mut s, Duration::from_secs(30))
        .await
        .expect("answered and closed");
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(body["error"]["request_id"].as_str().is_some());
    // Nothing was created.
    let lists: Value = app
        .get("/api/v1/lists", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lists["data"].as_array().map(Vec::len), Some(0), "{lists}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_over_the_request_timeout_is_answered_503_in_the_json_error_shape() {
    // A body trickling fast enough for the body timeout still hits the
    // whole-request timeout, which used to answer with an empty body.
    let app = TestApp::spawn_with(|c| {
        c.request_timeout_secs = 1;
        c.listener.body_read_timeout_secs = 30;
    })
    .await;
    let t = app.create_tenant("slow-body").await;
    let s = TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = s.into_split();
    let head = format!(
        "POST /api/v1/lists HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        t.token
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        loop {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&raw).contains("}}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    trickle.abort();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(body["error"]["request_id"].as_str().is_some());
    app.stop().await;
}

#[tokio::test]
async fn over_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let app = TestApp::spawn_with(|c| {
        c.listener.max_connections = 3;
        c.listener.header_read_timeout_secs = 120;
        c.listener.idle_timeout_secs = 120;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        // Served, so certainly accepted, then kept alive.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut fourth = TcpStream::connect(app.addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut fourth, Duration::from_millis(700))
            .await
            .is_none(),
        "the fourth connection is not served while three are open"
    );
    drop(held.pop());
    let raw = read_until_closed(&mut fourth, Duration::from_secs(30))
        .await
        .expect("served once a slot is free");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn metrics_with_a_token_require_it() {
    const TOKEN: &str = "metrics-token-0123456789";
    let app = TestApp::spawn_with(|c| {
        c.metrics.token = Some(TOKEN.to_owned().into());
    })
    .await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let r = app
        .get("/metrics", "wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app.get("/metrics", TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("galantis_http_requests_total")
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_on_their_own_address_are_not_on_the_main_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let app = TestApp::spawn_with(move |c| {
        c.metrics.bind = Some(metrics_addr);
    })
    .await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut served = None;
    for _ in 0..100 {
        if let Ok(r) = app
            .client
            .get(format!("http://{metrics_addr}/healthz"))
            .send()
            .await
        {
            served = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = served.expect("the metrics listener answers");
    assert_eq!(r.status(), 404, "only /metrics on the metrics address");
    let r = app
        .metrics_at(&format!("http://{metrics_addr}/metrics"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("galantis_http_requests_total")
    );
    let r = app
        .client
        .get(format!("http://{metrics_addr}/api/v1/tenant"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "only /metrics on the metrics address");
    app.stop().await;
}

/// The listener alone, on a router of the test's own.
async fn serve_router(
    app: axum::Router,
    settings: galantis_server::config::ListenerConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(galantis_server::listener::serve(
        listener, app, settings, stop_rx,
    ));
    (addr, stop, task)
}

#[tokio::test]
async fn upgraded_connections_work_and_outlive_the_idle_timeout() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: WebSocketUpgrade| async {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(msg)) = socket.recv().await {
                    if let Message::Text(_) = msg
                        && socket.send(msg).await.is_err()
                    {
                        return;
                    }
                }
            })
        }),
    );
    let settings = galantis_server::config::ListenerConfig {
        idle_timeout_secs: 1,
        header_read_timeout_secs: 1,
        ..Default::default()
    };
    let (addr, stop, task) = serve_router(app, settings).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Longer than both timeouts: they govern HTTP, not the upgraded stream.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, &[0x81, 2, b'h', b'i']);
    drop(s);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn on_shutdown_in_flight_requests_finish_and_new_connections_are_refused() {
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = {
        let started = started.clone();
        axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }
            }),
        )
    };
    let (addr, stop, task) = serve_router(app, Default::default()).await;
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://{addr}/slow"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    started.notified().await;
    stop.send(true).unwrap();
    assert_eq!(in_flight.await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve returns once the connection closed")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_body_the_handler_never_reads_cannot_hold_the_connection() {
    let app = TestApp::spawn_with(|c| {
        c.listener.header_read_timeout_secs = 120;
        c.listener.idle_timeout_secs = 1;
        c.listener.body_read_timeout_secs = 120;
    })
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // Unauthenticated: answered 401 before the body is read; the rest of the
    // body never comes.
    s.write_all(
        b"POST /api/v1/lists HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let raw = read_until_closed(&mut s, Duration::from_secs(30))
        .await
        .expect("closed, not held open");
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 401, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_dropped() {
    const SIZE: usize = 64 << 20;
    let app = axum::Router::new().route("/big", axum::routing::get(|| async { vec![b'x'; SIZE] }));
    let settings = galantis_server::config::ListenerConfig {
        idle_timeout_secs: 1,
        ..Default::default()
    };
    let (addr, stop, task) = serve_router(app, settings).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the server's writes block. Past the idle timeout (1 s)
    // with slack, the server has given up on it…
    tokio::time::sleep(Duration::from_secs(4)).await;
    // …so only what the kernels had buffered arrives, then the end.
    let raw = read_until_closed(&mut s, Duration::from_secs(30))
        .await
        .expect("the connection ends");
    assert!(
        raw.len() < SIZE,
        "the response was cut off ({} bytes)",
        raw.len()
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
