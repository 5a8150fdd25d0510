//! `GET /openapi.json` describes what the router serves, and 503s say what
//! is down without the cause.

use std::collections::BTreeSet;

use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    // No token: the document holds no data.
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// Every `$ref` in `v` names a schema of the document.
fn refs_resolve(v: &Value, doc: &Value, at: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    let name = child
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        .unwrap_or_else(|| panic!("{at}: unexpected $ref {child}"));
                    assert!(
                        doc["components"]["schemas"].get(name).is_some(),
                        "{at}: $ref to missing schema {name}"
                    );
                } else {
                    refs_resolve(child, doc, &format!("{at}/{k}"));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs_resolve(i, doc, at)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_errors_security_and_schemas() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;

    // It parses as utoipa's model of OpenAPI and survives a round trip.
    let text = serde_json::to_string(&doc).unwrap();
    let parsed: utoipa::openapi::OpenApi = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), doc);

    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Galantis API");
    assert!(!doc["info"]["version"].as_str().unwrap().is_empty());
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    let required: BTreeSet<&str> = detail["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["code", "message", "request_id"]),
        "{detail}"
    );
    refs_resolve(&doc, &doc, "#");

    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let at = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                // 101: the WebSocket upgrade (`/api/v1/realtime`); 302: the
                // tracked-link redirect (`/r/{code}`).
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s == "101" || s == "302"),
                "{at}: no success response"
            );
            for range in ["4XX", "5XX"] {
                assert_eq!(
                    responses[range]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{at}: {range}"
                );
            }
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}"
            );
            if path.starts_with("/api/v1/") {
                assert_eq!(op["security"], serde_json::json!([{"bearer": []}]), "{at}");
                assert!(responses.contains_key("401"), "{at}");
            } else {
                assert!(op.get("security").is_none(), "{at} needs no token");
            }
            // Writes with a body describe it; the body's schema is a component.
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"].as_object().is_some_and(|c| !c.is_empty()),
                    "{at}"
                );
            }
        }
    }
    assert!(operations > 50, "{operations} operations documented");
    for documented in [
        "/healthz",
        "/readyz",
        "/api/v1/messages",
        "/api/v1/lists/{id}/imports",
    ] {
        assert!(paths.contains_key(documented), "{documented} is documented");
    }
    let create = &paths["/api/v1/members"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ["$ref"];
    assert_eq!(create, "#/components/schemas/NewMember");
    // A body that may be left out is not required, and is never `null`.
    let token = &paths["/api/v1/tokens"]["post"]["requestBody"];
    assert_ne!(token["required"], true, "{token}");
    assert_eq!(
        token["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/NewToken",
        "{token}"
    );
    let member = &doc["components"]["schemas"]["NewMember"];
    assert_eq!(member["additionalProperties"], false, "{member}");
    assert_eq!(
        member["properties"]["role"]["$ref"],
        "#/components/schemas/RoleName"
    );
    // A typed response matches what is served.
    let t = app.create_tenant("openapi-tenant").await;
    let served: Value = app
        .get("/api/v1/tenant", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = &doc["components"]["schemas"]["Tenant"];
    let documented: BTreeSet<&str> = tenant["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let got: BTreeSet<&str> = served
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(got, documented, "{served} vs {tenant}");
    let roles = &doc["components"]["schemas"]["RoleName"]["enum"];
    assert!(
        roles.as_array().unwrap().contains(&served["role"]),
        "{served}"
    );
    assert!(
        roles.as_array().unwrap().contains(&"SUPPORT_AGENT".into()),
        "{roles}"
    );
}

/// Each documented operation is served (never the router's 404 or 405;
/// 401 without a token under `/api/v1`), and every method a documented path
/// does not document is 405: the router serves nothing undocumented on these
/// paths. That no other path is served undocumented holds by construction
/// (`routes!` takes path and method from the annotation); the last check
/// keeps the route builders from routing around it with `.route(`.
#[tokio::test]
async fn every_routed_api_path_and_method_is_documented() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut api = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = app.url(&path.replace("{id}", &id).replace("{code}", "unknown"));
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.client.request(m, &url).send().await.unwrap();
            let status = r.status();
            let b: Value = r.json().await.unwrap_or(Value::Null);
            if item.get(method).is_none() {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented: {b}"
                );
            } else if path.starts_with("/api/v1/") {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {b}");
                assert_eq!(b["error"]["code"], "unauthenticated", "{method} {path}");
                api += 1;
            } else {
                // A handler's own 404 (an unknown link, a page this node does
                // not serve) names what was not found; the router's is "route".
                let router_404 =
                    status == StatusCode::NOT_FOUND && b["error"]["message"] == "route not found";
                assert!(
                    !router_404 && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status} {b}"
                );
            }
        }
    }
    assert!(api > 50, "{api}");
    for documented in ["/webhooks/shopify", "/webhooks/meta", "/healthz", "/readyz"] {
        assert!(doc["paths"].get(documented).is_some(), "{documented}");
    }

    let http = include_str!("../../src/http/mod.rs");
    let start = http.find("fn sending_routes").unwrap();
    let end = http.find("pub fn openapi").unwrap();
    let webhooks = include_str!("../../src/webhooks/mod.rs");
    let storefront = include_str!("../../src/storefront/mod.rs");
    for (file, builders) in [
        ("http/mod.rs", &http[start..end]),
        ("webhooks/mod.rs", webhooks),
        ("storefront/mod.rs", storefront),
    ] {
        assert!(
            !builders.contains(".route("),
            "{file}: documented routes are registered with `routes!`, never `.route(`"
        );
    }
}

#[tokio::test]
async fn readyz_says_database_unreachable_and_nothing_more() {
    let app = TestApp::spawn().await;
    app.db().close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "service_unavailable");
    assert_eq!(b["error"]["message"], "database unreachable", "{b}");
}

#[tokio::test]
async fn readyz_says_migrations_pending_and_nothing_more() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("ready-pending").await;
    let behind = "UPDATE tenants SET schema_version = 0 WHERE shop_domain = $1";
    match app.engine() {
        galantis_store::Engine::Sqlite => {
            let path = app.scratch.dir.path().join("data").join("control.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let n = sqlx::query(behind)
                .bind(t.shop.as_str())
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(n.rows_affected(), 1);
            pool.close().await;
        }
        galantis_store::Engine::Postgres => {
            let n = sqlx::query(behind)
                .bind(t.shop.as_str())
                .execute(app.db().pg_pool().unwrap())
                .await
                .unwrap();
            assert_eq!(n.rows_affected(), 1);
        }
    }
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "service_unavailable");
    assert_eq!(b["error"]["message"], "migrations pending", "{b}");
}

/// A dependency's error text (here the refused connection to Meta, with its
/// address) is logged, not sent: the client reads the public sentence.
#[tokio::test]
async fn an_unavailable_dependency_answers_503_without_its_cause() {
    let app = TestApp::spawn_with(|c| c.meta_base_url = Some("http://127.0.0.1:1".into())).await;
    let t = app.create_tenant("unavailable-meta").await;
    let r = app
        .request(Method::PUT, "/api/v1/settings/whatsapp", &t.token)
        .json(&serde_json::json!({
            "access_token": "EAAG-unavailable",
            "waba_id": "waba-unavailable",
            "phone_numbers": [{"phone_number_id": "pn-unavailable", "default": true}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "service_unavailable");
    assert_eq!(
        b["error"]["message"], "Meta could not be reached to verify the credentials",
        "{b}"
    );
    let text = b.to_string();
    assert!(!text.contains("127.0.0.1"), "{text}");
    // Nothing was stored.
    let r = app
        .get("/api/v1/settings/whatsapp", &t.token)
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert!(!b.to_string().contains("waba-unavailable"), "{b}");
}
