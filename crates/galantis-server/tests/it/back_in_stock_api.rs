//! The back-in-stock API: widget settings, subscriptions (filters, pages,
//! cancel, CSV export), tracked links and analytics.

use galantis_core::back_in_stock::SubscriptionStatus;
use galantis_store::tenant::back_in_stock as bis;
use galantis_store::tenant::orders::{self, OrderFields};
use galantis_store::tenant::short_links;
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::back_in_stock::{
    IN_STOCK, OTHER_PRODUCT_VARIANT, SOLD_OUT, seed_catalog, submit, subscriptions,
};

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
