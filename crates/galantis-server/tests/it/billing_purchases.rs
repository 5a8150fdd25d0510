//! Credits are bought, not typed in (issue 11): no tenant route adds
//! credits or changes the plan; credit packs are bought through Shopify's
//! billing API and granted once, when Shopify reports the purchase ACTIVE.

use galantis_core::Role;
use galantis_server::shopify_client::{RecordingShopifyClient, ShopifyError};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::webhooks::{settled_ok, shopify, webhook_events};
use galantis_testkit::eventually;

fn fake(app: &TestApp) -> &RecordingShopifyClient {
    app.state
        .shopify
        .as_any()
        .downcast_ref::<RecordingShopifyClient>()
        .expect("the testkit installs the recording Shopify client")
}

async fn billing(app: &TestApp, t: &TestTenant) -> Value {
    app.get("/api/v1/billing", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn balance(app: &TestApp, t: &TestTenant) -> i64 {
    billing(app, t).await["balance"].as_i64().unwrap()
}

async fn buy(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .request(Method::POST, "/api/v1/billing/purchases", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn purchase_update(gid: &str, status: &str) -> Value {
    json!({"app_purchase_one_time": {
        "admin_graphql_api_id": gid, "name": "Galantis: 500 conversation credits",
        "status": status, "admin_graphql_api_shop_id": "gid://shopify/Shop/548380009",
        "created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-01T00:05:00Z"
    }})
}

async fn deliver(app: &TestApp, t: &TestTenant, webhook_id: &str, gid: &str, status: &str) {
    let r = shopify(
        app,
        t,
        "app_purchases_one_time/update",
        webhook_id,
        &purchase_update(gid, status),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    settled_ok(app, t).await;
}

async fn ledger_kinds(app: &TestApp, t: &TestTenant, kind: &str) -> Vec<Value> {
    let page: Value = app
        .get("/api/v1/billing/ledger?limit=1000", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn no_tenant_route_grants_credits_or_changes_the_plan() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("no-mint").await;
    let before = billing(&app, &t).await;
    let mut tokens = vec![t.token.clone()];
    for role in [Role::Admin, Role::MarketingManager, Role::Viewer] {
        tokens.push(app.add_member(&t, role).await.1);
    }
    for token in &tokens {
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/billing/top-ups",
                json!({"credits": 1_000_000}),
            ),
            (
                Method::PUT,
                "/api/v1/billing/plan",
                json!({"plan": "ENTERPRISE", "tier_credits": 1_000_000}),
            ),
            (Method::POST, "/api/v1/billing", json!({"credits": 5})),
            (
                Method::POST,
                "/api/v1/billing/ledger",
                json!({"kind": "operator_grant", "credits": 5}),
            ),
        ] {
            let r = app
                .request(method.clone(), path, token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                matches!(
                    r.status(),
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                ),
                "{method} {path}: {}",
                r.status()
            );
        }
    }
    let after = billing(&app, &t).await;
    assert_eq!(after["balance"], before["balance"]);
    assert_eq!(after["plan"], "TRIAL");
    assert_eq!(after["ledger"], before["ledger"]);
}

#[tokio::test]
async fn a_purchase_goes_through_shopify_and_is_granted_once_when_active() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("buyer").await;
    let start = balance(&app, &t).await;

    // Only the owner buys; a pack must exist; the body is checked.
    let (_, admin) = app.add_member(&t, Role::Admin).await;
    let (s, v) = buy(&app, &admin, json!({"pack": "credits_500"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, v) = buy(&app, &t.token, json!({"pack": "credits_1000000"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("unknown_credit_pack")
        ),
        "{v}"
    );
    let (s, _) = buy(&app, &t.token, json!({"pack": "credits_500", "credits": 9})).await;
    assert!(s.is_client_error(), "{s}");
    assert!(fake(&app).purchases().is_empty(), "nothing reached Shopify");

    // The owner buys: Shopify's confirmation URL comes back, nothing granted yet.
    let (s, p) = buy(&app, &t.token, json!({"pack": "credits_500"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["status"], "PENDING");
    assert_eq!(p["credits"], 500);
    assert!(
        p["confirmation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://admin.shopify.com/")
    );
    let gid = p["shopify_id"].as_str().unwrap().to_owned();
    let sent = fake(&app).purchases();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, gid);
    assert_eq!(sent[0].1, t.id);
    assert_eq!(
        (sent[0].2.amount.as_str(), sent[0].2.currency_code.as_str()),
        ("45.00", "USD")
    );
    assert_eq!(balance(&app, &t).await, start);
    let list: Value = app
        .get("/api/v1/billing/purchases", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], p["id"]);

    // ACTIVE, delivered twice (two webhook ids): granted exactly once.
    deliver(&app, &t, "p1-active", &gid, "ACTIVE").await;
    deliver(&app, &t, "p1-active-again", &gid, "ACTIVE").await;
    assert_eq!(balance(&app, &t).await, start + 500);
    let entries = ledger_kinds(&app, &t, "purchase").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["credits"], 500);
    assert_eq!(entries[0]["reference"], gid.as_str());
    // A late contradicting report changes nothing either.
    deliver(&app, &t, "p1-declined-late", &gid, "DECLINED").await;
    assert_eq!(balance(&app, &t).await, start + 500);

    // DECLINED and EXPIRED never grant, not even when an ACTIVE follows.
    for (n, status) in ["DECLINED", "EXPIRED"].into_iter().enumerate() {
        let (s, p) = buy(&app, &t.token, json!({"pack": "credits_100"})).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let gid = p["shopify_id"].as_str().unwrap().to_owned();
        deliver(&app, &t, &format!("p{n}-{status}"), &gid, status).await;
        deliver(&app, &t, &format!("p{n}-active"), &gid, "ACTIVE").await;
        assert_eq!(balance(&app, &t).await, start + 500, "{status}");
    }
    // An ACTIVE for a purchase Galantis never made: recorded, ignored.
    deliver(
        &app,
        &t,
        "forged",
        "gid://shopify/AppPurchaseOneTime/999",
        "ACTIVE",
    )
    .await;
    assert_eq!(balance(&app, &t).await, start + 500);
    let ignored = webhook_events(&app, &t, "status=ignored").await;
    assert!(
        ignored.iter().any(|e| e["external_id"] == "forged"),
        "{ignored:?}"
    );
    let b = billing(&app, &t).await;
    assert_eq!(b["usage"]["purchased"], 500);
    assert_eq!(
        ledger_kinds(&app, &t, "purchase").await.len(),
        1,
        "one purchase entry in all"
    );
}

#[tokio::test]
async fn a_shop_cannot_activate_another_shops_purchase() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("shop-a").await;
    let b = app.create_tenant("shop-b").await;
    let (a0, b0) = (balance(&app, &a).await, balance(&app, &b).await);
    let (s, p) = buy(&app, &b.token, json!({"pack": "credits_2000"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let gid = p["shopify_id"].as_str().unwrap().to_owned();
    // Signed as shop A, naming B's purchase: A has no such purchase.
    deliver(&app, &a, "cross", &gid, "ACTIVE").await;
    assert_eq!(balance(&app, &a).await, a0);
    assert_eq!(balance(&app, &b).await, b0);
    let list: Value = app
        .get("/api/v1/billing/purchases", &b.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["status"], "PENDING");
    let list: Value = app
        .get("/api/v1/billing/purchases", &a.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]), "B's purchase is not listed for A");
}

#[tokio::test]
async fn a_pending_purchase_is_read_back_from_shopify_when_no_webhook_comes() {
    let app = TestApp::spawn_with(|c| c.billing.purchase_check_secs = 1).await;
    let t = app.create_tenant("reconcile").await;
    let start = balance(&app, &t).await;
    let (s, p) = buy(&app, &t.token, json!({"pack": "credits_100"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let gid = p["shopify_id"].as_str().unwrap().to_owned();
    fake(&app).set_purchase_status(&gid, "ACTIVE");
    eventually("the purchase is read back and granted", || async {
        balance(&app, &t).await == start + 100
    })
    .await;
    // The webhook arriving afterwards grants nothing more.
    deliver(&app, &t, "late", &gid, "ACTIVE").await;
    assert_eq!(balance(&app, &t).await, start + 100);
    assert_eq!(ledger_kinds(&app, &t, "purchase").await.len(), 1);
}

#[tokio::test]
async fn shopify_refusals_and_a_missing_token_are_clear_and_store_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("refused").await;
    fake(&app).fail_next_purchase(ShopifyError::Permanent(
        "Price must be greater than 0".into(),
    ));
    let (s, v) = buy(&app, &t.token, json!({"pack": "credits_100"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("shopify_purchase_refused")
        ),
        "{v}"
    );
    fake(&app).fail_next_purchase(ShopifyError::Retryable("timeout".into()));
    let (s, _) = buy(&app, &t.token, json!({"pack": "credits_100"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    fake(&app).without_token(t.id);
    let (s, v) = buy(&app, &t.token, json!({"pack": "credits_100"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("shopify_not_connected")),
        "{v}"
    );
    let list: Value = app
        .get("/api/v1/billing/purchases", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
}

/// Migration 0009 rebuilds the SQLite ledger to widen its kinds: it must
/// stay append-only, with one entry per idempotency key, on both engines.
#[tokio::test]
async fn the_ledger_stays_append_only_after_its_kinds_were_widened() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("append-only").await;
    assert!(balance(&app, &t).await > 0, "the trial allowance is in");
    let statements = [
        "UPDATE credit_ledger SET credits = 1000000",
        "DELETE FROM credit_ledger",
        "INSERT INTO credit_ledger (id, kind, credits, period, reason, idempotency_key, created_at)
             SELECT {ID}, 'gift', 5, period, 'x', 'gift:1', created_at FROM credit_ledger",
        "INSERT INTO credit_ledger (id, kind, credits, period, reason, idempotency_key, created_at)
             SELECT {ID}, 'operator_grant', 5, period, 'x', idempotency_key, created_at FROM credit_ledger",
    ];
    // The same insert with a new kind and a fresh key is valid SQL: the
    // refusals above come from the constraints (tried, then rolled back).
    let valid = "INSERT INTO credit_ledger (id, kind, credits, period, reason, idempotency_key, created_at)
         SELECT {ID}, 'operator_grant', 5, period, 'x', 'control:' || idempotency_key, created_at FROM credit_ledger";
    match app.engine() {
        galantis_store::Engine::Sqlite => {
            let path = app
                .scratch
                .dir
                .path()
                .join("data")
                .join("tenants")
                .join(format!("{}.db", t.id));
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credit_ledger")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert!(n > 0, "the ledger is reachable");
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(valid.replace("{ID}", "randomblob(16)")))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            for q in statements {
                let q = q.replace("{ID}", "randomblob(16)");
                let r = sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                    .execute(&pool)
                    .await;
                assert!(r.is_err(), "{q} was accepted");
            }
            pool.close().await;
        }
        galantis_store::Engine::Postgres => {
            let url = app.scratch.pg.as_ref().unwrap().url.clone();
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            for q in statements {
                let mut c = pool.acquire().await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET search_path TO \"{}\"",
                    t.id.schema_name()
                )))
                .execute(&mut *c)
                .await
                .unwrap();
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credit_ledger")
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                assert!(n > 0, "the ledger is reachable");
                sqlx::query("BEGIN").execute(&mut *c).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(
                    valid.replace("{ID}", "gen_random_uuid()"),
                ))
                .execute(&mut *c)
                .await
                .unwrap();
                sqlx::query("ROLLBACK").execute(&mut *c).await.unwrap();
                let q = q.replace("{ID}", "gen_random_uuid()");
                let r = sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                    .execute(&mut *c)
                    .await;
                assert!(r.is_err(), "{q} was accepted");
            }
            pool.close().await;
        }
    }
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let sum = galantis_store::tenant::billing::ledger_sum(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sum, balance(&app, &t).await);
}
