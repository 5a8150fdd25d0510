use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["database"], app.engine().as_str());
    let want_pg = std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    assert_eq!(
        app.engine() == galantis_store::Engine::Postgres,
        want_pg,
        "tests run on the engine asked for"
    );
    let _ = app.create_tenant("basics-metrics").await;
    let _ = app
        .client
        .get(app.url("/api/v1/tenant"))
        .send()
        .await
        .unwrap();
    let text = app.metrics_text().await;
    assert!(text.contains("galantis_http_requests_total"), "{text}");
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_big_bodies_get_json_errors() {
    let app = TestApp::spawn_with(|c| c.api_body_limit_bytes = 4096).await;
    let t = app.create_tenant("basics-errors").await;
    let r = app.get("/api/v1/nope", &t.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "not_found");
    assert_eq!(b["error"]["request_id"], rid);

    let r = app
        .request(Method::PUT, "/api/v1/tenant", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "method_not_allowed");

    let big = format!(
        "{{\"email\":\"a@b.co\",\"role\":\"VIEWER\",\"pad\":\"{}\"}}",
        "x".repeat(10_000)
    );
    let r = app
        .request(Method::POST, "/api/v1/members", &t.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "payload_too_large");
    let list: Value = app
        .get("/api/v1/members", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_well_formed_incoming_request_id_is_kept_and_a_bad_one_replaced() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
}
