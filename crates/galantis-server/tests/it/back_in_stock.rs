//! Back in stock, storefront side: the widget script, App Proxy-signed
//! submissions (and every refusal storing nothing), per-IP pacing, the
//! settings and subscriptions API, tracked links and analytics.

use galantis_core::MarketingState;
use galantis_core::back_in_stock::SubscriptionStatus;
use galantis_server::storefront::proxy;
use galantis_server::webhooks::signature::sign_meta;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::back_in_stock as bis;
use galantis_store::tenant::catalog::{self, ProductFields, VariantFields};
use galantis_store::tenant::orders::{self, OrderFields};
use galantis_store::tenant::{contacts, short_links};
use galantis_testkit::{TEST_META_SECRET, TEST_SHOPIFY_SECRET, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

pub const SOLD_OUT: i64 = 8001;
pub const IN_STOCK: i64 = 8002;
pub const OTHER_PRODUCT_VARIANT: i64 = 9001;
const PHONE: &str = "+52 55 1234 5678";

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

fn signed(app: &TestApp, shop: &str, age_secs: i64) -> String {
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

async fn submit_raw(app: &TestApp, query: &str, body: &str, ip: &str) -> (StatusCode, Value) {
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

async fn submit(app: &TestApp, t: &TestTenant, body: Value) -> (StatusCode, Value) {
    submit_raw(
        app,
        &signed(app, t.shop.as_str(), 0),
        &body.to_string(),
        "198.51.100.1",
    )
    .await
}

async fn subscriptions(app: &TestApp, t: &TestTenant, query: &str) -> Value {
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

async fn contact_count(app: &TestApp, t: &TestTenant) -> usize {
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
async fn settings_are_validated_merged_and_tenant_scoped() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-settings").await;
    let other = app.create_tenant("bis-settings-other").await;
    let get = |token: String| {
        let app = &app;
        async move {
            app.get("/api/v1/settings/back-in-stock", &token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let defaults = get(t.token.clone()).await;
    assert_eq!(defaults["confirmation_mode"], "none");
    assert_eq!(defaults["position"], "below_add_to_cart");
    for (bad, path) in [
        (json!({"button_color": "red"}), "$.button_color"),
        (json!({"position": "top"}), "$.position"),
        (
            json!({"confirmation_mode": "sms", "button_text": "ok"}),
            "$.confirmation_mode",
        ),
        (json!({"nope": 1}), "$.nope"),
    ] {
        let r = app
            .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let b: Value = r.json().await.unwrap();
        assert!(
            b["error"]["message"].as_str().unwrap().contains(path),
            "{b}"
        );
    }
    let r = app
        .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .body("{oops")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        get(t.token.clone()).await,
        defaults,
        "refusals changed nothing"
    );
    let r = app
        .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .json(&json!({"position": "floating"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(Method::PUT, "/api/v1/settings/back-in-stock", &t.token)
        .json(&json!({"text_color": "#000"}))
        .send()
        .await
        .unwrap();
    let now: Value = r.json().await.unwrap();
    assert_eq!(now["position"], "floating", "earlier changes kept");
    assert_eq!(now["text_color"], "#000");
    assert_eq!(
        get(other.token.clone()).await,
        defaults,
        "another tenant unaffected"
    );
}

#[tokio::test]
async fn subscriptions_filter_paginate_cancel_and_export() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-list").await;
    let other = app.create_tenant("bis-list-other").await;
    seed_catalog(&app, &t).await;
    for (variant, phone) in [
        (SOLD_OUT, "+52 55 1234 5678"),
        (SOLD_OUT, "+34 612 345 678"),
        (OTHER_PRODUCT_VARIANT, "+1 613 555 0123"),
    ] {
        let (s, _) = submit(
            &app,
            &t,
            json!({"variant_id": variant, "phone": phone, "consent": true, "first_name": "=cmd"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    assert_eq!(
        subscriptions(&app, &t, &format!("?variant_id={SOLD_OUT}")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        subscriptions(&app, &t, "?product_id=7002").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        subscriptions(&app, &t, "?status=notified").await["data"],
        json!([])
    );
    let r = app
        .get("/api/v1/back-in-stock/subscriptions?status=SOON", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Pages of two, newest first, no row twice.
    let p1 = subscriptions(&app, &t, "?limit=2").await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = subscriptions(&app, &t, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert!(p2["next_cursor"].is_null());
    let ids: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["data"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3);

    // Cancel: once, again (unchanged), unknown and other tenant's → 404.
    let id = ids[0];
    let cancel = |token: &str, id: &str| {
        app.request(
            Method::POST,
            &format!("/api/v1/back-in-stock/subscriptions/{id}/cancel"),
            token,
        )
        .send()
    };
    let r = cancel(&t.token, id).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["status"], "CANCELLED");
    let r = cancel(&t.token, id).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["cancelled_at"],
        first["cancelled_at"]
    );
    assert_eq!(
        cancel(&other.token, id).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cancel(&t.token, &Uuid::now_v7().to_string())
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cancel(&t.token, "not-an-id").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // A notified subscription is history: 409.
    let notified: Uuid = ids[1].parse().unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    assert_eq!(
        bis::mark_notified(&mut tx, &[notified, id.parse().unwrap()], 1_000)
            .await
            .unwrap(),
        1,
        "only ACTIVE ones change"
    );
    assert_eq!(
        bis::mark_notified(&mut tx, &[notified], 2_000)
            .await
            .unwrap(),
        0,
        "twice changes nothing"
    );
    tx.commit().await.unwrap();
    let r = cancel(&t.token, &notified.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "subscription_notified"
    );

    // The subscriber can subscribe again after cancelling.
    let (s, _) = submit(
        &app,
        &t,
        json!({"variant_id": OTHER_PRODUCT_VARIANT, "phone": "+1 613 555 0123", "consent": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // CSV export: header, one line a subscription, formulas neutralised.
    let r = app
        .get("/api/v1/back-in-stock/subscriptions.csv", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,status,variant_id,product_id,options,phone"));
    assert_eq!(
        lines.len(),
        1 + subscriptions(&app, &t, "?limit=200").await["data"]
            .as_array()
            .unwrap()
            .len()
    );
    assert!(csv.contains("'=cmd"));
    assert!(csv.contains("NOTIFIED") && csv.contains("CANCELLED"));
    let csv = app
        .get(
            &format!(
                "/api/v1/back-in-stock/subscriptions.csv?variant_id={SOLD_OUT}&status=NOTIFIED"
            ),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2);
    let other_csv = app
        .get("/api/v1/back-in-stock/subscriptions.csv", &other.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(other_csv.lines().count(), 1, "another tenant sees none");
}

#[tokio::test]
async fn tracked_links_count_each_click_and_redirect() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-links").await;
    let other = app.create_tenant("bis-links-other").await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let link = short_links::create(
        &mut tx,
        "https://shop.example/products/tee?variant=8001",
        Default::default(),
        1,
    )
    .await
    .unwrap();
    assert!(
        short_links::create(&mut tx, "javascript:alert(1)", Default::default(), 1)
            .await
            .is_err()
    );
    tx.commit().await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = client
            .get(app.url(&format!("/r/{}", link.code)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            r.headers()["location"],
            "https://shop.example/products/tee?variant=8001"
        );
    }
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    assert_eq!(
        short_links::clicks(&mut tx, &link.code).await.unwrap(),
        Some(2)
    );
    tx.commit().await.unwrap();
    // Unknown codes: garbage, a well-formed code of another tenant, one char off.
    let forged = format!(
        "{}{}",
        &short_links::create(
            &mut app.db().tenant_tx(other.id).await.unwrap(),
            "https://x.example/",
            Default::default(),
            1
        )
        .await
        .unwrap()
        .code[..22],
        &link.code[22..]
    );
    let mut off = link.code.clone();
    off.pop();
    off.push(if link.code.ends_with('A') { 'B' } else { 'A' });
    for code in ["nope", forged.as_str(), off.as_str(), "%00"] {
        let r = client
            .get(app.url(&format!("/r/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{code}");
    }
}

#[tokio::test]
async fn analytics_count_notifications_clicks_and_attributed_orders() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-analytics").await;
    seed_catalog(&app, &t).await;
    for (variant, phone) in [
        (SOLD_OUT, "+52 55 1234 5678"),
        (SOLD_OUT, "+34 612 345 678"),
        (OTHER_PRODUCT_VARIANT, "+1 613 555 0123"),
        (IN_STOCK, "+1 613 555 0124"),
    ] {
        let (s, _) = submit(
            &app,
            &t,
            json!({"variant_id": variant, "phone": phone, "consent": true}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let rows = subscriptions(&app, &t, "").await["data"]
        .as_array()
        .unwrap()
        .clone();
    let by_phone = |p: &str| {
        rows.iter()
            .find(|r| r["contact_phone"] == p)
            .unwrap()
            .clone()
    };
    let ana = by_phone("+525512345678");
    let bea = by_phone("+34612345678");
    let cal = by_phone("+16135550123");
    let id = |r: &Value| r["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let contact = |r: &Value| r["contact_id"].as_str().unwrap().parse::<Uuid>().unwrap();

    let day: i64 = 86_400_000;
    let notified_at = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    assert_eq!(
        bis::mark_notified(&mut tx, &[id(&ana), id(&bea), id(&cal)], notified_at)
            .await
            .unwrap(),
        3
    );
    // Ana clicks her link and buys two of the variant 3 days later; Bea
    // buys it 8 days later (outside the window); Cal buys something else.
    let link = short_links::create(
        &mut tx,
        "https://shop.example/products/p?variant=8001",
        short_links::Attribution {
            contact_id: Some(contact(&ana)),
            subscription_id: Some(id(&ana)),
            message_id: None,
        },
        notified_at,
    )
    .await
    .unwrap();
    short_links::click(&mut tx, &link.code, notified_at + 1000)
        .await
        .unwrap();
    for (n, who, at, lines) in [
        (
            1,
            contact(&ana),
            notified_at + 3 * day,
            json!([{"variant_id": SOLD_OUT, "price": "20.00", "quantity": 2}, {"variant_id": IN_STOCK, "price": "9.00", "quantity": 1}]),
        ),
        (
            2,
            contact(&bea),
            notified_at + 8 * day,
            json!([{"variant_id": SOLD_OUT, "price": "20.00", "quantity": 1}]),
        ),
        (
            3,
            contact(&cal),
            notified_at + day,
            json!([{"variant_id": IN_STOCK, "price": "20.00", "quantity": 1}]),
        ),
    ] {
        orders::upsert(
            &mut tx,
            &OrderFields {
                shopify_order_id: 5000 + n,
                contact_id: Some(who),
                line_items: Some(lines),
                created_at: Some(at),
                version: at,
                payload: json!({"id": 5000 + n}),
                ..Default::default()
            },
            at,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let a: Value = app
        .get(
            "/api/v1/back-in-stock/analytics?from=2026-01-01&to=2026-01-01",
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["active_subscriptions"], 1, "{a}");
    assert_eq!(a["notifications_sent"], 3);
    assert_eq!(a["clicked"], 1);
    assert_eq!(a["converted"], 1);
    assert_eq!(
        a["revenue_cents"], 4000,
        "only the notified variant's lines count"
    );
    assert!((a["click_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(a["attribution_days"], 7);
    let products = a["products"].as_array().unwrap();
    let p7001 = products.iter().find(|p| p["product_id"] == 7001).unwrap();
    assert_eq!(p7001["notifications_sent"], 2);
    assert_eq!(p7001["active_subscriptions"], 1);
    assert_eq!(p7001["conversion_rate"], 0.5);
    let p7002 = products.iter().find(|p| p["product_id"] == 7002).unwrap();
    assert_eq!(p7002["converted"], 0);

    // Another range: nothing notified; bad ranges are 422.
    let a: Value = app
        .get(
            "/api/v1/back-in-stock/analytics?from=2025-01-01&to=2025-01-31",
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["notifications_sent"], 0);
    assert_eq!(a["click_rate"], 0.0);
    for q in ["?from=yesterday", "?from=2026-02-01&to=2026-01-01"] {
        let r = app
            .get(&format!("/api/v1/back-in-stock/analytics{q}"), &t.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
    assert_eq!(SubscriptionStatus::Notified.as_str(), "NOTIFIED");
}

#[tokio::test]
async fn the_demo_page_is_served_only_where_the_sandbox_is_mounted() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bis-demo-off").await;
    let r = app
        .client
        .get(app.url(&format!("/storefront/demo?shop={}", t.shop.as_str())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let app = TestApp::builder().sandbox().spawn().await;
    let t = app.create_tenant("bis-demo-on").await;
    let r = app
        .client
        .get(app.url("/storefront/demo?shop=nobody.myshopify.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .client
        .get(app.url(&format!("/storefront/demo?shop={}", t.shop.as_str())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("/storefront/back-in-stock.js?shop=bis-demo-on.myshopify.com"));
    assert!(
        html.contains("data-endpoint=\"/storefront/back-in-stock?shop=bis-demo-on.myshopify.com")
    );
    assert!(html.contains("sold out"));
    // The sample product is in the catalog once, whatever the reloads.
    app.client
        .get(app.url(&format!("/storefront/demo?shop={}", t.shop.as_str())))
        .send()
        .await
        .unwrap();
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
