//! Back in stock, storefront side: the widget script, App Proxy-signed
//! submissions (and every refusal storing nothing), per-IP pacing, the
//! settings and subscriptions API, tracked links and analytics.

use galantis_core::MarketingState;
use galantis_server::storefront::proxy;
use galantis_server::webhooks::signature::sign_meta;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::back_in_stock as bis;
use galantis_store::tenant::catalog::{self, ProductFields, VariantFields};
use galantis_store::tenant::contacts;
use galantis_testkit::{
    TEST_META_SECRET, TEST_SANDBOX_TOKEN, TEST_SHOPIFY_SECRET, TestApp, TestTenant,
};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) const SOLD_OUT: i64 = 8001;
pub(crate) const IN_STOCK: i64 = 8002;
pub(crate) const OTHER_PRODUCT_VARIANT: i64 = 9001;
pub(crate) const PHONE: &str = "+52 55 1234 5678";

/// Two products in the tenant's catalog: 7001 (S sold out, M in stock) and 7002.
pub async fn seed_catalog(app: &TestApp, t: &TestTenant) {
    let variant = |id: i64, title: &str, qty: i64| VariantFields {
        shopify_variant_id: id,
        title: Some(title.into()),
        price: Some("20.00".into()),
        inventory_quantity: Some(qty),
        option1: Some(title.into()),
        position: Some(id),
        ..Default::default()
    };
    let now = app.state.clock.now().timestamp_millis();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    for (pid, variants) in [
        (
            7001,
            vec![variant(SOLD_OUT, "S", 0), variant(IN_STOCK, "M", 4)],
        ),
        (7002, vec![variant(OTHER_PRODUCT_VARIANT, "One size", 0)]),
    ] {
        catalog::upsert_product(
            &mut tx,
            &ProductFields {
                shopify_product_id: pid,
                title: Some(format!("Product {pid}")),
                options: json!([{"name": "Size"}]),
                payload: json!({"id": pid}),
                variants,
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

pub(crate) fn signed(app: &TestApp, shop: &str, age_secs: i64) -> String {
    let ts = (app.state.clock.now().timestamp() - age_secs).to_string();
    proxy::signed_query(
        &[
            ("shop", shop),
            ("logged_in_customer_id", ""),
            ("path_prefix", "/apps/galantis"),
            ("timestamp", &ts),
        ],
        &SecretString::from(TEST_SHOPIFY_SECRET),
    )
}

pub(crate) async fn submit_raw(
    app: &TestApp,
    query: &str,
    body: &str,
    ip: &str,
) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(&format!("/storefront/back-in-stock?{query}")))
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn submit(app: &TestApp, t: &TestTenant, body: Value) -> (StatusCode, Value) {
    submit_raw(
        app,
        &signed(app, t.shop.as_str(), 0),
        &body.to_string(),
        "198.51.100.1",
    )
    .await
}

pub(crate) async fn subscriptions(app: &TestApp, t: &TestTenant, query: &str) -> Value {
    let r = app
        .get(
            &format!("/api/v1/back-in-stock/subscriptions{query}"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(crate) async fn contact_count(app: &TestApp, t: &TestTenant) -> usize {
    let v: Value = app
        .get("/api/v1/contacts", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_widget_script_is_served_with_the_shops_settings_and_cache_headers() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-script").await;
    let r = app
        .client
        .get(app.url("/storefront/back-in-stock.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let js = r.text().await.unwrap();
    assert!(js.contains("Notify me on WhatsApp"));
    assert!(!js.contains("__GALANTIS_SETTINGS__"));

    let r = app
        .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .json(&json!({"button_text": "Avísame </script>", "button_color": "#123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let js = app
        .client
        .get(app.url(&format!(
            "/storefront/back-in-stock.js?shop={}",
            t.shop.as_str()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        js.contains("Avísame \\u003c/script>"),
        "settings inlined, `<` escaped"
    );
    assert!(js.contains("#123456"));
    // Another shop, or an unknown one, gets the defaults.
    let js = app
        .client
        .get(app.url("/storefront/back-in-stock.js?shop=nobody.myshopify.com"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("Notify me on WhatsApp"));
}

#[tokio::test]
async fn a_signed_submission_subscribes_with_widget_consent_and_a_repeat_returns_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-subscribe").await;
    seed_catalog(&app, &t).await;
    let body = json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true, "first_name": "Ana", "options": {"Size": "S"}});
    let (s, created) = submit(&app, &t, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["subscription"]["status"], "ACTIVE");
    assert_eq!(created["subscription"]["product_id"], 7001);
    assert!(
        created["subscription"].get("contact_phone").is_none(),
        "public reply holds no personal data"
    );

    // The repeat (even with the id as a string) returns the same one.
    let mut again = body.clone();
    again["variant_id"] = json!(SOLD_OUT.to_string());
    let (s, repeat) = submit(&app, &t, again).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(repeat["subscription"]["id"], created["subscription"]["id"]);

    let list = subscriptions(&app, &t, "").await;
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["contact_phone"], "+525512345678");
    assert_eq!(rows[0]["options"], json!({"Size": "S"}));
    assert_eq!(rows[0]["source"], "back_in_stock_widget");

    // The contact is SUBSCRIBED with the widget as its consent proof.
    let contact: Uuid = rows[0]["contact_id"].as_str().unwrap().parse().unwrap();
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::get(&mut tx, contact).await.unwrap().unwrap();
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(c.first_name.as_deref(), Some("Ana"));
    let proof = contacts::consent_history(&mut tx, contact).await.unwrap();
    assert_eq!(proof.len(), 1);
    assert_eq!(proof[0].source.as_str(), "back_in_stock_widget");
    assert_eq!(proof[0].reference.as_deref(), Some("variant:8001"));
    tx.commit().await.unwrap();

    // Another variant is another subscription; the contact is reused.
    let (s, _) = submit(
        &app,
        &t,
        json!({"variant_id": OTHER_PRODUCT_VARIANT, "phone": "+525512345678", "consent": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(contact_count(&app, &t).await, 1);
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_bad_bodies_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-refusals").await;
    seed_catalog(&app, &t).await;
    let ok_body = json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true}).to_string();
    let shop = t.shop.as_str();
    let good = signed(&app, shop, 0);
    let cases: Vec<(String, String, StatusCode, &str)> = vec![
        // Signature: missing, wrong, for other parameters, with another secret.
        (
            good.split("&signature=").next().unwrap().to_owned(),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            format!(
                "{}&signature={}",
                good.split("&signature=").next().unwrap(),
                "ab".repeat(32)
            ),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            good.replace(
                "path_prefix=%2Fapps%2Fgalantis",
                "path_prefix=%2Fapps%2Fother",
            ),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            proxy::signed_query(
                &[
                    ("shop", shop),
                    ("timestamp", &app.state.clock.now().timestamp().to_string()),
                ],
                &SecretString::from("not-the-secret"),
            ),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        // Signed, but too old or from the future.
        (
            signed(&app, shop, 301),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            signed(&app, shop, -301),
            ok_body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        // Signed for a shop that is not installed.
        (
            signed(&app, "nobody.myshopify.com", 0),
            ok_body.clone(),
            StatusCode::NOT_FOUND,
            "unknown_shop",
        ),
        // Bodies.
        (
            good.clone(),
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": "12345", "consent": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_calling_code",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": "+52 1", "consent": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": PHONE}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_required",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": false}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_required",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": "true"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_required",
        ),
        (
            good.clone(),
            json!({"variant_id": 424242, "phone": PHONE, "consent": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_variant",
        ),
        (
            good.clone(),
            json!({"variant_id": -1, "phone": PHONE, "consent": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true, "options": ["S"]})
                .to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            good.clone(),
            json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true, "extra": 1})
                .to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ];
    for (i, (query, body, status, code)) in cases.into_iter().enumerate() {
        let (s, b) = submit_raw(&app, &query, &body, &format!("203.0.113.{i}")).await;
        assert_eq!(s, status, "case {i}: {b}");
        assert_eq!(b["error"]["code"], code, "case {i}: {b}");
    }
    assert_eq!(subscriptions(&app, &t, "").await["data"], json!([]));
    assert_eq!(contact_count(&app, &t).await, 0, "nothing stored");
}

#[tokio::test]
async fn submissions_are_paced_per_client_ip() {
    let app = TestApp::spawn_with(|c| {
        c.storefront.subscriptions_per_minute_per_ip = 1;
        c.storefront.subscriptions_burst_per_ip = 2;
    })
    .await;
    let t = app.create_tenant("bis-pace").await;
    seed_catalog(&app, &t).await;
    let body = json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true}).to_string();
    let q = signed(&app, t.shop.as_str(), 0);
    for _ in 0..2 {
        let (s, _) = submit_raw(&app, &q, &body, "192.0.2.10").await;
        assert!(s.is_success());
    }
    let r = app
        .client
        .post(app.url(&format!("/storefront/back-in-stock?{q}")))
        .header("content-type", "application/json")
        .header("x-forwarded-for", "192.0.2.10, 10.0.0.1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let (s, _) = submit_raw(&app, &q, &body, "192.0.2.11").await;
    assert_eq!(s, StatusCode::OK, "another IP is not held back");
}

#[tokio::test]
async fn whatsapp_confirmation_mode_keeps_subscriptions_pending_until_confirmed() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-pending").await;
    seed_catalog(&app, &t).await;
    let r = app
        .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .json(&json!({"confirmation_mode": "whatsapp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, b) = submit(
        &app,
        &t,
        json!({"variant_id": SOLD_OUT, "phone": PHONE, "consent": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b["subscription"]["status"], "PENDING");
    let row = &subscriptions(&app, &t, "?status=PENDING").await["data"][0];
    let contact: Uuid = row["contact_id"].as_str().unwrap().parse().unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    assert_eq!(
        contacts::get(&mut tx, contact)
            .await
            .unwrap()
            .unwrap()
            .marketing_state,
        MarketingState::Pending
    );
    // Not loaded by the pipeline while pending.
    assert!(
        bis::active_for_variant(&mut tx, SOLD_OUT, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        bis::activate_pending_for_contact(&mut tx, contact, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        bis::active_for_variant(&mut tx, SOLD_OUT, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_start_reply_on_whatsapp_confirms_pending_subscriptions() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-confirm").await;
    let mut ctx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut ctx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: "pn-bis-confirm".into(),
            waba_id: "waba-bis-confirm".into(),
        },
        true,
    )
    .await
    .unwrap();
    ctx.commit().await.unwrap();
    seed_catalog(&app, &t).await;
    app.request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .json(&json!({"confirmation_mode": "whatsapp"}))
        .send()
        .await
        .unwrap();
    for variant in [SOLD_OUT, OTHER_PRODUCT_VARIANT] {
        let (s, b) = submit(
            &app,
            &t,
            json!({"variant_id": variant, "phone": PHONE, "consent": true}),
        )
        .await;
        assert_eq!(
            (s, b["subscription"]["status"].as_str()),
            (StatusCode::CREATED, Some("PENDING"))
        );
    }
    // Meta writes this Mexican mobile with the legacy `1`: the same contact.
    let at = app.state.clock.now().timestamp() + 1;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba-bis-confirm", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "521234567890", "phone_number_id": "pn-bis-confirm"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5215512345678"}],
        "messages": [{"from": "5215512345678", "id": "wamid.BIS-START", "timestamp": at.to_string(), "type": "text", "text": {"body": "START"}}]}}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.run_jobs_until_idle().await;
    let rows = subscriptions(&app, &t, "").await;
    let statuses: Vec<&str> = rows["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ACTIVE", "ACTIVE"], "{rows}");
    assert_eq!(contact_count(&app, &t).await, 1);
}

#[tokio::test]
async fn the_demo_page_is_served_only_where_the_sandbox_is_mounted_and_with_its_token() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-demo-off").await;
    let r = app
        .client
        .get(app.url(&format!(
            "/storefront/demo?shop={}&token={TEST_SANDBOX_TOKEN}",
            t.shop.as_str()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let app = TestApp::builder().sandbox().spawn().await;
    let t = app.create_tenant("bis-demo-on").await;
    let demo = |query: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/storefront/demo?{query}")))
                .send()
                .await
                .unwrap()
        }
    };
    let shop = t.shop.as_str();
    let r = demo(format!(
        "shop=nobody.myshopify.com&token={TEST_SANDBOX_TOKEN}"
    ))
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Without the operator token (missing, empty or wrong): 404 with a
    // stable code, even for an installed shop, and nothing is written.
    for q in [
        format!("shop={shop}"),
        format!("shop={shop}&token="),
        format!("shop={shop}&token=not-the-sandbox-token"),
        "shop=nobody.myshopify.com&token=nope".to_owned(),
    ] {
        let r = demo(q.clone()).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "invalid_sandbox_token",
            "{q}: {body}"
        );
    }
    let products: Value = app
        .get("/api/v1/products", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 0, "{products}");

    let r = demo(format!("shop={shop}&token={TEST_SANDBOX_TOKEN}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("/storefront/back-in-stock.js?shop=bis-demo-on.myshopify.com"));
    assert!(
        html.contains("data-endpoint=\"/storefront/back-in-stock?shop=bis-demo-on.myshopify.com")
    );
    assert!(html.contains("sold out"));
    // The sample product is in the catalog once, whatever the reloads.
    demo(format!("shop={shop}&token={TEST_SANDBOX_TOKEN}")).await;
    let products: Value = app
        .get("/api/v1/products", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 1);
}
