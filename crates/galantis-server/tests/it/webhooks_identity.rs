//! Issue #13, identity and idempotency: checkouts that carry only a token,
//! a phone that moves between Shopify customers, constraint violations that
//! fail for good instead of retrying, and redeliveries (a new
//! `X-Shopify-Webhook-Id`, the same body) that emit no second domain event.
//! Payloads follow Shopify's current webhook reference (2026-01).

use galantis_store::tenant::{checkouts, compliance, contacts};
use galantis_testkit::{TestApp, TestTenant};
use serde_json::{Value, json};

use crate::webhooks::{events_of, processed_ok, shopify_ok, webhook_events};

/// A `customers/update` body as API 2025-01+ sends it: no `tags`, no
/// marketing consent (those have their own topics now).
fn customer(id: i64, phone: &str, updated_at: &str) -> Value {
    json!({
        "id": id, "email": format!("c{id}@example.com"), "created_at": "2026-01-10T10:00:00-05:00",
        "updated_at": updated_at, "first_name": "Ana", "last_name": format!("N{id}"), "state": "enabled",
        "note": null, "verified_email": true, "multipass_identifier": null, "tax_exempt": false,
        "phone": phone, "currency": "USD", "tax_exemptions": [],
        "admin_graphql_api_id": format!("gid://shopify/Customer/{id}"),
        "default_address": {"id": id + 1, "customer_id": id, "country_code": "US", "phone": phone, "default": true}
    })
}

async fn contact(app: &TestApp, t: &TestTenant, shopify_id: i64) -> contacts::Contact {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_shopify_id(&mut tx, shopify_id).await.unwrap();
    tx.commit().await.unwrap();
    c.expect("contact")
}

async fn history_refs(app: &TestApp, t: &TestTenant, c: &contacts::Contact) -> Vec<String> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let h = contacts::consent_history(&mut tx, c.id).await.unwrap();
    tx.commit().await.unwrap();
    h.into_iter().filter_map(|e| e.reference).collect()
}

const PHONE: &str = "+14155552671";

#[tokio::test]
async fn a_phone_moving_between_customers_ends_with_the_later_customer_in_both_orders() {
    let app = TestApp::builder().without_workers().spawn().await;
    let earlier = customer(7001, PHONE, "2026-02-01T10:00:00Z");
    let later = customer(7002, PHONE, "2026-02-03T10:00:00Z");
    for (name, first, second) in [
        ("phone-fwd", &earlier, &later),
        ("phone-rev", &later, &earlier),
    ] {
        let t = app.create_tenant(name).await;
        shopify_ok(&app, &t, "customers/update", "w-1", first).await;
        processed_ok(&app, &t).await;
        shopify_ok(&app, &t, "customers/update", "w-2", second).await;
        // Fails on a failed event or a dead job; a retrying job would stay
        // `received`, which processed_ok refuses too.
        processed_ok(&app, &t).await;
        let (a, b) = (contact(&app, &t, 7001).await, contact(&app, &t, 7002).await);
        assert_eq!(
            b.phone.as_deref(),
            Some(PHONE),
            "{name}: the later customer holds it"
        );
        assert_eq!(a.phone, None, "{name}: the earlier contact lost it");
        let refs = history_refs(&app, &t, &a).await;
        let expected = if name == "phone-fwd" {
            "phone_moved_to:customer:7002"
        } else {
            "phone_kept_by:customer:7002"
        };
        assert!(refs.iter().any(|r| r == expected), "{name}: {refs:?}");
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let holder = contacts::by_phone(&mut tx, PHONE).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert_eq!(holder.id, b.id);
    }
}

#[tokio::test]
async fn a_unique_violation_fails_the_event_for_good_with_its_reason() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("phone-conflict").await;
    shopify_ok(
        &app,
        &t,
        "customers/update",
        "w-1",
        &customer(7101, "+442071838750", "2026-02-01T10:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    // A WhatsApp-only contact holds the number the customer now takes: not
    // merged (its conversations would have to move), and never retried.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    contacts::create_from_whatsapp(&mut tx, PHONE, Some("Walk In"), 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    shopify_ok(
        &app,
        &t,
        "customers/update",
        "w-2",
        &customer(7101, PHONE, "2026-02-02T10:00:00Z"),
    )
    .await;
    let dead = app
        .try_run_jobs_until_idle()
        .await
        .expect_err("the job is dead, not retrying");
    assert!(format!("{dead}").contains("conflict"), "{dead}");
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert_eq!(failed.len(), 1);
    let reason = failed[0]["failure_reason"].as_str().unwrap();
    assert!(reason.starts_with("conflict: "), "{reason}");
    assert!(
        !reason.contains("4155552671"),
        "no phone in the reason: {reason}"
    );
    assert_eq!(
        contact(&app, &t, 7101).await.phone.as_deref(),
        Some("+442071838750"),
        "nothing changed"
    );
}

/// A checkout as current API versions send it: `token`, `cart_token` and
/// `name`, no numeric `id`; the phone only in the billing address.
fn token_checkout(updated_at: &str, total: &str) -> Value {
    json!({
        "token": "b1946ac92492d2347c6235b4d2611184", "cart_token": "68778783ad298f1c80c3bafcddeea02f",
        "name": "#1001", "email": "buyer@example.com", "gateway": null, "buyer_accepts_marketing": false,
        "created_at": "2026-03-01T10:00:00-05:00", "updated_at": updated_at, "landing_site": null, "note": null,
        "note_attributes": [], "referring_site": null, "shipping_lines": [], "taxes_included": false,
        "total_weight": 0, "currency": "USD", "completed_at": null, "closed_at": null, "user_id": null,
        "location_id": null, "source_identifier": null, "source_url": null, "device_id": null, "phone": null,
        "customer_locale": "en", "line_items": [{"key": "k1", "title": "Hat", "quantity": 1, "price": total}],
        "total_price": total, "subtotal_price": total, "total_tax": "0.00", "total_discounts": "0.00",
        "abandoned_checkout_url": "https://shop.example/checkouts/b1946/recover",
        "billing_address": {"first_name": "Bo", "country_code": "US", "phone": PHONE},
        "shipping_address": {"first_name": "Bo", "country_code": "US", "phone": null},
        "customer": {"id": 7201, "email": "buyer@example.com", "phone": null}
    })
}

#[tokio::test]
async fn a_checkout_with_only_a_token_is_stored_and_updated_by_its_token() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("ck-token").await;
    shopify_ok(
        &app,
        &t,
        "customers/update",
        "c",
        &customer(7201, "+442071838750", "2026-02-01T10:00:00Z"),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "ck-1",
        &token_checkout("2026-03-01T10:00:00-05:00", "20.00"),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        "checkouts/update",
        "ck-2",
        &token_checkout("2026-03-01T10:05:00-05:00", "25.00"),
    )
    .await;
    // A redelivery (new webhook id, same body) is no new version.
    shopify_ok(
        &app,
        &t,
        "checkouts/update",
        "ck-2b",
        &token_checkout("2026-03-01T10:05:00-05:00", "25.00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let token = "b1946ac92492d2347c6235b4d2611184";
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let rows = checkouts::by_token(&mut tx, token).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows.len(), 1, "one checkout, keyed by its token: {rows:?}");
    let ck = &rows[0];
    assert_eq!(ck.shopify_checkout_id, None);
    assert_eq!(
        ck.phone.as_deref(),
        Some(PHONE),
        "taken from the billing address"
    );
    assert_eq!(ck.contact_id, Some(contact(&app, &t, 7201).await.id));
    let events = events_of(&app, &t, "CheckoutUpdated").await;
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["payload"]["token"], token, "{e}");
        assert_eq!(e["payload"]["checkout_id"], json!(ck.id.to_string()), "{e}");
    }

    // Deleted by token; a late update does not bring it back.
    shopify_ok(
        &app,
        &t,
        "checkouts/delete",
        "ck-3",
        &json!({"token": token}),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        "checkouts/update",
        "ck-4",
        &token_checkout("2026-03-01T10:09:00-05:00", "30.00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let rows = checkouts::by_token(&mut tx, token).await.unwrap();
    tx.commit().await.unwrap();
    assert!(rows.len() == 1 && rows[0].deleted, "{rows:?}");
    assert_eq!(events_of(&app, &t, "CheckoutUpdated").await.len(), 2);
}

#[tokio::test]
async fn a_checkout_with_neither_id_nor_token_fails_for_good_and_stores_nothing() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("ck-none").await;
    let mut body = token_checkout("2026-03-01T10:00:00Z", "20.00");
    body.as_object_mut().unwrap().remove("token");
    shopify_ok(&app, &t, "checkouts/create", "ck-x", &body).await;
    assert!(
        app.try_run_jobs_until_idle().await.is_err(),
        "permanent, not retried"
    );
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert!(
        failed[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("token"),
        "{failed:?}"
    );
    assert!(events_of(&app, &t, "CheckoutUpdated").await.is_empty());
}

fn product(updated_at: &str) -> Value {
    json!({
        "admin_graphql_api_id": "gid://shopify/Product/788032119674292922", "body_html": "An example T-Shirt",
        "created_at": null, "handle": "example-t-shirt", "id": 788032119674292922_i64, "product_type": "Shirts",
        "published_at": "2026-01-01T00:00:00Z", "template_suffix": null, "title": "Example T-Shirt",
        "updated_at": updated_at, "vendor": "Acme", "status": "active", "published_scope": "web",
        "tags": "example, mens, t-shirt",
        "variants": [{"admin_graphql_api_id": "gid://shopify/ProductVariant/642667041472713922",
            "barcode": null, "compare_at_price": "24.99", "created_at": null, "id": 642667041472713922_i64,
            "inventory_policy": "deny", "position": 0, "price": "19.99", "product_id": 788032119674292922_i64,
            "sku": "example-shirt-s", "taxable": true, "title": "Small", "updated_at": null, "option1": "Small",
            "option2": null, "option3": null, "image_id": null, "inventory_item_id": null,
            "inventory_quantity": 75, "old_inventory_quantity": 75}],
        "options": [], "images": [], "image": null, "media": [], "variant_gids": [], "has_variants_that_requires_components": false,
        "category": null
    })
}

fn subscription(status: &str) -> Value {
    json!({"app_subscription": {
        "admin_graphql_api_id": "gid://shopify/AppSubscription/1029266948", "name": "Galantis Growth",
        "status": status, "admin_graphql_api_shop_id": "gid://shopify/Shop/548380009",
        "created_at": "2026-02-01T00:00:00Z", "updated_at": "2026-02-01T00:05:00Z",
        "currency": "USD", "capped_amount": "20.0", "price": "10.00", "interval": "every_30_days",
        "plan_handle": "growth"
    }})
}

#[tokio::test]
async fn every_redelivered_payload_emits_its_domain_event_once() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("redeliver").await;
    let redact = json!({"shop_id": 954889, "shop_domain": "redeliver.myshopify.com",
        "customer": {"id": 7302, "email": "c7302@example.com", "phone": "+442071838750"},
        "orders_to_redact": [299938, 280263]});
    let data_request = json!({"shop_id": 954889, "shop_domain": "redeliver.myshopify.com",
        "orders_requested": [299938], "customer": {"id": 7301, "email": "c7301@example.com", "phone": PHONE},
        "data_request": {"id": 9999}});
    let deliveries: Vec<(&str, Value, &str)> = vec![
        (
            "products/create",
            product("2026-02-01T00:00:00Z"),
            "ProductCreated",
        ),
        (
            "products/update",
            product("2026-02-02T00:00:00Z"),
            "ProductUpdated",
        ),
        (
            "products/delete",
            json!({"id": 788032119674292922_i64}),
            "ProductDeleted",
        ),
        (
            "customers/create",
            customer(7301, PHONE, "2026-02-01T00:00:00Z"),
            "CustomerCreated",
        ),
        (
            "customers/update",
            {
                let mut c = customer(7301, PHONE, "2026-02-02T00:00:00Z");
                c["first_name"] = json!("Anabel");
                c
            },
            "CustomerUpdated",
        ),
        (
            "customers/create",
            customer(7302, "+442071838750", "2026-02-01T00:00:00Z"),
            "CustomerCreated",
        ),
        (
            "customers/delete",
            json!({"id": 7302, "phone": null, "addresses": [], "tax_exemptions": [],
            "email_marketing_consent": null, "sms_marketing_consent": null,
            "admin_graphql_api_id": "gid://shopify/Customer/7302"}),
            "CustomerDeleted",
        ),
        (
            "app_subscriptions/update",
            subscription("ACTIVE"),
            "AppSubscriptionUpdated",
        ),
        (
            "customers/data_request",
            data_request,
            "CustomerDataRequested",
        ),
        ("customers/redact", redact, "CustomerRedacted"),
    ];
    for (i, (topic, body, _)) in deliveries.iter().enumerate() {
        for attempt in 0..2 {
            shopify_ok(&app, &t, topic, &format!("d-{i}-{attempt}"), body).await;
            processed_ok(&app, &t).await;
        }
    }
    for kind in [
        "ProductCreated",
        "ProductUpdated",
        "ProductDeleted",
        "CustomerUpdated",
        "CustomerDeleted",
        "AppSubscriptionUpdated",
        "CustomerDataRequested",
        "CustomerRedacted",
    ] {
        assert_eq!(events_of(&app, &t, kind).await.len(), 1, "{kind}");
    }
    assert_eq!(
        events_of(&app, &t, "CustomerCreated").await.len(),
        2,
        "two customers"
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let requests = compliance::list(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let kinds: Vec<&str> = requests.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "customers_data_request")
            .count(),
        1,
        "one export per data_request id: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "customers_redact").count(),
        1,
        "{kinds:?}"
    );
    let ignored = webhook_events(&app, &t, "status=ignored").await;
    assert!(
        ignored.len() >= 6,
        "redeliveries are recorded as ignored: {ignored:?}"
    );

    // A new data request for the same customer is answered again.
    let again = json!({"shop_id": 954889, "shop_domain": "redeliver.myshopify.com",
        "orders_requested": [], "customer": {"id": 7301}, "data_request": {"id": 10000}});
    shopify_ok(&app, &t, "customers/data_request", "d-new", &again).await;
    processed_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "CustomerDataRequested").await.len(), 2);
}
