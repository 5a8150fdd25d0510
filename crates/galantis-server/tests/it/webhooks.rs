//! Webhooks in: signatures, persistence, idempotency, processing of the seed
//! payloads, out-of-order delivery, restocks, Meta messages and statuses,
//! STOP, compliance erasure, failures and replay.

use galantis_core::{ConsentSource, MarketingState};
use galantis_server::webhooks::signature::sign_shopify;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::{contacts, messaging};
use galantis_testkit::{TEST_SHOPIFY_SECRET, TestApp, TestTenant, eventually};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

pub(crate) use galantis_testkit::webhooks::{meta, shopify, shopify_ok};

pub(crate) async fn events_of(app: &TestApp, t: &TestTenant, kind: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/api/v1/events?kind={kind}&limit=200"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

/// The tenant's stored webhook events, read from the store (the owner's token
/// stops working once a test uninstalls the app). `query` is `status=…` or empty.
pub(crate) async fn webhook_events(app: &TestApp, t: &TestTenant, query: &str) -> Vec<Value> {
    let status = query.strip_prefix("status=").map(str::to_owned);
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let rows = galantis_store::tenant::webhook_events::list(
        &mut tx,
        &galantis_store::tenant::webhook_events::Filter {
            status,
            limit: 500,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

pub(crate) async fn settled(app: &TestApp, t: &TestTenant) {
    eventually("webhooks processed", || async {
        webhook_events(app, t, "status=received").await.is_empty()
    })
    .await;
}

/// Every webhook processed by draining the queue (no polling: the app runs
/// no workers), none failed, and no job dead.
pub(crate) async fn processed_ok(app: &TestApp, t: &TestTenant) {
    app.run_jobs_until_idle().await;
    let left = webhook_events(app, t, "status=received").await;
    assert!(left.is_empty(), "not processed: {left:?}");
    let failed = webhook_events(app, t, "status=failed").await;
    assert!(failed.is_empty(), "processing failed: {failed:?}");
}

/// Settled, and none failed.
pub(crate) async fn settled_ok(app: &TestApp, t: &TestTenant) {
    settled(app, t).await;
    let failed = webhook_events(app, t, "status=failed").await;
    assert!(failed.is_empty(), "processing failed: {failed:?}");
}

/// An inbox text already sent to `contact` from `pnid`, known by `wamid`.
pub(crate) async fn sent_text(
    tx: &mut galantis_store::TenantTx,
    contact: uuid::Uuid,
    pnid: &str,
    key: &str,
    wamid: &str,
) -> uuid::Uuid {
    let out = messaging::insert_outbound(
        tx,
        &messaging::OutboundMessage {
            contact_id: contact,
            phone_number_id: pnid,
            idempotency_key: key,
            kind: "text",
            body: Some("hi"),
            content: &json!({}),
            source: "inbox",
            template_name: None,
            template_language: None,
            is_sandbox: true,
        },
        0,
    )
    .await
    .unwrap();
    messaging::set_wamid(tx, out, wamid, 0).await.unwrap();
    out
}

fn seed_customer() -> Value {
    json!({
        "id": 123456789, "email": "customer@example.com", "first_name": "Jane", "last_name": "Smith",
        "phone": "+525512345678", "tags": "vip, newsletter", "accepts_marketing": true,
        "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "locale": "es", "created_at": "2025-01-15T10:00:00-05:00", "updated_at": "2025-01-15T10:00:00-05:00"
    })
}

async fn contact_by_shopify(app: &TestApp, t: &TestTenant, id: i64) -> Option<contacts::Contact> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_shopify_id(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    c
}

#[tokio::test]
async fn bad_signatures_unknown_shops_and_bad_bodies_are_refused_and_store_nothing() {
    let app = TestApp::builder()
        .config(|c| c.webhook_body_limit_bytes = 64 * 1024)
        .spawn()
        .await;
    let t = app.create_tenant("wh-bad").await;
    let raw = serde_json::to_vec(&seed_customer()).unwrap();
    let post = |sig: Option<String>, shop: &str, body: Vec<u8>| {
        let mut r = app
            .client
            .post(app.url("/webhooks/shopify"))
            .header("x-shopify-topic", "customers/create")
            .header("x-shopify-shop-domain", shop)
            .header("x-shopify-webhook-id", "w-1")
            .body(body);
        if let Some(s) = sig {
            r = r.header("x-shopify-hmac-sha256", s);
        }
        r.send()
    };
    let secret = SecretString::from(TEST_SHOPIFY_SECRET);
    let cases = [
        (
            None,
            t.shop.as_str().to_owned(),
            raw.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            Some("bm9wZQ==".into()),
            t.shop.as_str().to_owned(),
            raw.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            Some(sign_shopify(&raw, &SecretString::from("other"))),
            t.shop.as_str().to_owned(),
            raw.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            Some(sign_shopify(&raw, &secret)),
            "ghost.myshopify.com".into(),
            raw.clone(),
            StatusCode::NOT_FOUND,
            "unknown_shop",
        ),
        (
            Some(sign_shopify(b"{nope", &secret)),
            t.shop.as_str().to_owned(),
            b"{nope".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (sig, shop, body, status, code) in cases {
        let r = post(sig, &shop, body).await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], code);
    }
    let big = vec![b' '; 70 * 1024];
    let r = post(Some(sign_shopify(&big, &secret)), t.shop.as_str(), big)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Meta: unsigned or mis-signed.
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        webhook_events(&app, &t, "").await.is_empty(),
        "nothing stored"
    );
    assert!(contact_by_shopify(&app, &t, 123456789).await.is_none());

    // Unknown topic: acknowledged, stored as ignored, not processed.
    let r = shopify(&app, &t, "themes/publish", "w-2", &json!({"id": 1})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ignored = webhook_events(&app, &t, "status=ignored").await;
    assert_eq!(ignored.len(), 1);
}

#[tokio::test]
async fn the_meta_verification_handshake() {
    let app = TestApp::spawn().await;
    let ok = app.client.get(app.url("/webhooks/meta?hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1158201444")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = app
        .client
        .get(app.url("/webhooks/meta?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_seed_customer_becomes_a_contact_once_even_when_redelivered() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("wh-customer").await;
    for _ in 0..3 {
        assert_eq!(
            shopify(&app, &t, "customers/create", "same-id", &seed_customer())
                .await
                .status(),
            StatusCode::OK
        );
    }
    processed_ok(&app, &t).await;
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert_eq!(c.phone.as_deref(), Some("+525512345678"));
    assert_eq!(c.email.as_deref(), Some("customer@example.com"));
    assert_eq!(c.tags, vec!["vip", "newsletter"]);
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(
        webhook_events(&app, &t, "").await.len(),
        1,
        "redeliveries are not stored twice"
    );
    assert_eq!(events_of(&app, &t, "CustomerCreated").await.len(), 1);
    assert_eq!(events_of(&app, &t, "CustomerTagged").await.len(), 2);
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let history = contacts::consent_history(&mut tx, c.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, ConsentSource::ShopifyCustomer);
}

#[tokio::test]
async fn out_of_order_customer_updates_end_in_the_newest_state_and_deletes_stick() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("wh-order").await;
    let mut newer = seed_customer();
    newer["first_name"] = json!("Janet");
    newer["updated_at"] = json!("2025-02-01T00:00:00Z");
    // Update before create: applied as an upsert; the older create changes nothing.
    shopify(&app, &t, "customers/update", "u-1", &newer).await;
    processed_ok(&app, &t).await;
    shopify(&app, &t, "customers/create", "c-1", &seed_customer()).await;
    processed_ok(&app, &t).await;
    assert_eq!(
        contact_by_shopify(&app, &t, 123456789)
            .await
            .unwrap()
            .first_name
            .as_deref(),
        Some("Janet")
    );
    // Delete, then a late update: not resurrected.
    shopify(
        &app,
        &t,
        "customers/delete",
        "d-1",
        &json!({"id": 123456789}),
    )
    .await;
    processed_ok(&app, &t).await;
    let mut later = newer.clone();
    later["updated_at"] = json!("2025-03-01T00:00:00Z");
    later["first_name"] = json!("Zombie");
    shopify(&app, &t, "customers/update", "u-2", &later).await;
    processed_ok(&app, &t).await;
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert!(c.deleted);
    assert_eq!(c.first_name.as_deref(), Some("Janet"));
}

#[tokio::test]
async fn orders_ship_once_and_cancel() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("wh-orders").await;
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    processed_ok(&app, &t).await;
    let order = json!({
        "id": 987654321, "order_number": 1042, "customer": {"id": 123456789, "phone": "+525512345678"},
        "total_price": "149.00", "currency": "MXN",
        "line_items": [{"id": 111111, "title": "Running Shoes", "quantity": 1, "price": "149.00", "product_id": 555555, "variant_id": 666666, "vendor": "NikeMX", "properties": []}],
        "tags": "", "fulfillment_status": null, "financial_status": "paid", "created_at": "2025-01-15T11:00:00-05:00"
    });
    shopify(&app, &t, "orders/create", "o-1", &order).await;
    let unshipped = json!({"id": 987654321, "order_number": 1042, "customer": {"id": 123456789}, "fulfillment_status": null, "fulfillments": []});
    shopify(&app, &t, "orders/updated", "o-2", &unshipped).await;
    let shipped = json!({
        "id": 987654321, "order_number": 1042, "customer": {"id": 123456789}, "fulfillment_status": "fulfilled",
        "fulfillments": [{"id": 222222, "status": "success", "tracking_company": "DHL", "tracking_number": "1234567890",
                          "tracking_url": "https://track.dhl.com/...", "created_at": "2025-01-16T14:00:00-05:00"}]
    });
    shopify(&app, &t, "orders/updated", "o-3", &shipped).await;
    shopify(&app, &t, "orders/updated", "o-4", &shipped).await;
    processed_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "OrderCreated").await.len(), 1);
    let ships = events_of(&app, &t, "OrderShipped").await;
    assert_eq!(ships.len(), 1, "OrderShipped only once per order");
    assert_eq!(ships[0]["payload"]["tracking_company"], "DHL");
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert_eq!((c.orders_count, c.total_spent_cents), (1, 14900));
    let cancelled = json!({"id": 987654321, "order_number": 1042, "customer": {"id": 123456789}, "total_price": "149.00",
                           "cancelled_at": "2025-01-16T09:00:00-05:00", "cancel_reason": "customer"});
    shopify(&app, &t, "orders/cancelled", "o-5", &cancelled).await;
    processed_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "OrderCancelled").await.len(), 1);
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert_eq!(c.orders_count, 0, "cancelled orders do not count");
}

fn product(quantities: [i64; 4], updated_at: &str) -> Value {
    json!({
        "id": 555555, "title": "Running Shoes", "body_html": "<p>Full product description...</p>", "vendor": "NikeMX",
        "tags": "shoes, running, sport", "status": "active", "updated_at": updated_at,
        "images": [{"id": 777777, "src": "https://cdn.shopify.com/...", "width": 1000, "height": 1000}],
        "options": [{"name": "Size", "values": ["40", "41", "42", "43"]}],
        "variants": (0..4).map(|i| json!({"id": 666660 + i, "title": format!("Size {}", 40 + i), "price": "149.00",
            "compare_at_price": "180.00", "sku": format!("RUN-{}", 40 + i), "inventory_quantity": quantities[i as usize],
            "inventory_item_id": 888880 + i, "option1": format!("{}", 40 + i)})).collect::<Vec<_>>()
    })
}

#[tokio::test]
async fn restocks_fire_per_variant_from_zero_only() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("wh-restock").await;
    shopify(
        &app,
        &t,
        "products/create",
        "p-1",
        &product([0, 0, 0, 5], "2025-01-15T09:00:00Z"),
    )
    .await;
    settled_ok(&app, &t).await;
    assert!(
        events_of(&app, &t, "VariantRestocked").await.is_empty(),
        "creation is not a restock"
    );
    // Two variants 0→positive, one 0→0, one 5→10, and a price change elsewhere.
    shopify(
        &app,
        &t,
        "products/update",
        "p-2",
        &product([3, 7, 0, 10], "2025-01-15T10:00:00Z"),
    )
    .await;
    settled_ok(&app, &t).await;
    let restocks = events_of(&app, &t, "VariantRestocked").await;
    let mut ids: Vec<String> = restocks
        .iter()
        .map(|e| e["subject_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["666660", "666661"]);
    // A stale update arriving late changes nothing and fires nothing.
    shopify(
        &app,
        &t,
        "products/update",
        "p-3",
        &product([0, 0, 0, 0], "2025-01-15T09:30:00Z"),
    )
    .await;
    settled_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "VariantRestocked").await.len(), 2);
    // inventory_levels: variant 666662 (item 888882) 0 → 4.
    let level = json!({"inventory_item_id": 888882, "location_id": 1, "available": 4, "updated_at": "2025-01-15T11:00:00Z"});
    shopify(&app, &t, "inventory_levels/update", "i-1", &level).await;
    let level0 = json!({"inventory_item_id": 888883, "location_id": 1, "available": 12, "updated_at": "2025-01-15T11:00:00Z"});
    shopify(&app, &t, "inventory_levels/update", "i-2", &level0).await;
    settled_ok(&app, &t).await;
    let restocks = events_of(&app, &t, "VariantRestocked").await;
    assert_eq!(
        restocks.len(),
        3,
        "only the 0→4 level is a restock: {restocks:?}"
    );
}

async fn with_number(app: &TestApp, name: &str) -> TestTenant {
    let t = app.create_tenant(name).await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: format!("pn-{name}"),
            waba_id: format!("waba-{name}"),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t
}

fn inbound(pnid: &str, wamid: &str, text: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Jane Smith"}, "wa_id": "5215512345678"}],
        "messages": [{"from": "5215512345678", "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": text}}]}}]}]})
}

fn statuses(pnid: &str, list: &[(&str, &str)]) -> Value {
    let st: Vec<Value> = list.iter().map(|(w, s)| json!({"id": w, "status": s, "timestamp": "1705320030", "recipient_id": "5215512345678"})).collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid}, "statuses": st}}]}]})
}

#[tokio::test]
async fn inbound_messages_open_conversations_and_stop_unsubscribes_at_once() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = with_number(&app, "wh-meta").await;
    let pnid = "pn-wh-meta";
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    // Without workers nothing is processed yet: STOP must still take effect now.
    assert_eq!(
        meta(&app, &inbound(pnid, "wamid.STOP1", "Stop"))
            .await
            .status(),
        StatusCode::OK
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_phone(&mut tx, "+525512345678")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        c.marketing_state,
        MarketingState::Unsubscribed,
        "unsubscribed before any processing"
    );
    // Unknown numbers are recorded as ignored, not routed to anyone.
    let r: Value = meta(&app, &inbound("pn-unknown", "wamid.X", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["unrouted"], 1);
}

#[tokio::test]
async fn inbound_messages_statuses_and_templates_are_processed() {
    let app = TestApp::spawn().await;
    let t = with_number(&app, "wh-meta2").await;
    let pnid = "pn-wh-meta2";
    meta(
        &app,
        &inbound(pnid, "wamid.IN1", "Hello, I have a question about my order"),
    )
    .await;
    meta(
        &app,
        &inbound(pnid, "wamid.IN1", "Hello, I have a question about my order"),
    )
    .await;
    settled_ok(&app, &t).await;
    let created = events_of(&app, &t, "ConversationMessageCreated").await;
    assert_eq!(created.len(), 1, "one message per wamid");
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let contact = contacts::by_phone(&mut tx, "+525512345678")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.first_name.as_deref(), Some("Jane"));
    let convs = messaging::conversation_of(&mut tx, contact.id)
        .await
        .unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].status, "OPEN");
    assert!(convs[0].window_expires_at.is_some());
    sent_text(&mut tx, contact.id, pnid, "k-1", "wamid.OUT1").await;
    tx.commit().await.unwrap();
    // delivered → sent → read → delivered (and a duplicate): ends READ.
    meta(&app, &statuses(pnid, &[("wamid.OUT1", "delivered")])).await;
    meta(
        &app,
        &statuses(pnid, &[("wamid.OUT1", "sent"), ("wamid.OUT1", "read")]),
    )
    .await;
    meta(
        &app,
        &statuses(
            pnid,
            &[("wamid.OUT1", "delivered"), ("wamid.OUT1", "failed")],
        ),
    )
    .await;
    settled_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let m = messaging::message_by_wamid(&mut tx, "wamid.OUT1")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(m.status, "READ");

    // Template status by WABA id.
    let tpl = |event: &str, reason: Value| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "waba-wh-meta2", "changes": [{
        "field": "message_template_status_update", "value": {"event": event, "message_template_id": 123456,
        "message_template_name": "order_confirmation_es", "message_template_language": "es", "reason": reason}}]}]})
    };
    meta(&app, &tpl("APPROVED", Value::Null)).await;
    settled_ok(&app, &t).await;
    meta(&app, &tpl("REJECTED", json!("INVALID_FORMAT"))).await;
    settled_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let st = messaging::template_status(&mut tx, "order_confirmation_es", "es")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        st,
        ("REJECTED".to_owned(), Some("INVALID_FORMAT".to_owned()))
    );
    assert_eq!(events_of(&app, &t, "TemplateStatusUpdated").await.len(), 2);
}

/// Delivery statuses alone are applied when they are stored (ADR 0042):
/// with no worker running, the message has its status as soon as the
/// webhook is acknowledged, the event is `processed` and no job is queued
/// for it. A status whose message another transaction holds (a send
/// recording Meta's answer; PostgreSQL) is stored with its job instead, and
/// the job applies it once the send commits. A status that cannot be
/// applied (no `id`) fails alone, through its job, not its neighbours.
#[tokio::test]
async fn statuses_are_applied_at_ingest_unless_their_message_is_held() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = with_number(&app, "wh-inline").await;
    let pnid = "pn-wh-inline";
    meta(&app, &inbound(pnid, "wamid.IN9", "hello")).await;
    processed_ok(&app, &t).await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let contact = contacts::by_phone(&mut tx, "+525512345678")
        .await
        .unwrap()
        .unwrap();
    for (key, wamid) in [("k-a", "wamid.OUTA"), ("k-b", "wamid.OUTB")] {
        sent_text(&mut tx, contact.id, pnid, key, wamid).await;
    }
    tx.commit().await.unwrap();
    let status_of = |wamid: &'static str| {
        let app = &app;
        let t = &t;
        async move {
            let mut tx = app.db().tenant_read(t.id).await.unwrap();
            let m = messaging::message_by_wamid(&mut tx, wamid)
                .await
                .unwrap()
                .unwrap();
            tx.commit().await.unwrap();
            m.status
        }
    };
    let queued = || async {
        galantis_store::jobs::admin::stats(app.db(), Some(t.id), chrono::Utc::now())
            .await
            .unwrap()
            .iter()
            .map(|s| s.queued)
            .sum::<i64>()
    };

    // Applied at once, twice delivered is one status, and no job.
    let jobs_before = queued().await;
    for _ in 0..2 {
        let r = meta(&app, &statuses(pnid, &[("wamid.OUTA", "delivered")])).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(status_of("wamid.OUTA").await, "DELIVERED");
    assert_eq!(queued().await, jobs_before, "no processing job");
    assert!(webhook_events(&app, &t, "status=received").await.is_empty());
    assert_eq!(events_of(&app, &t, "MessageStatusUpdated").await.len(), 1);

    // Held by a send recording Meta's answer (PostgreSQL's wamid lock;
    // SQLite's single writer makes the webhook wait instead).
    if app.db().engine() == galantis_store::Engine::Postgres {
        let mut send = app.db().tenant_tx(t.id).await.unwrap();
        galantis_store::tenant::sending::lock_wamid(&mut send, "wamid.OUTB")
            .await
            .unwrap();
        let before = status_of("wamid.OUTB").await;
        let r = meta(&app, &statuses(pnid, &[("wamid.OUTB", "read")])).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(status_of("wamid.OUTB").await, before, "not applied yet");
        assert_eq!(webhook_events(&app, &t, "status=received").await.len(), 1);
        assert_eq!(queued().await, jobs_before + 1, "left to its job");
        send.commit().await.unwrap();
    } else {
        meta(&app, &statuses(pnid, &[("wamid.OUTB", "read")])).await;
    }
    processed_ok(&app, &t).await;
    assert_eq!(status_of("wamid.OUTB").await, "READ");

    // A status without an id beside a good one: stored, the good one
    // applied, the bad one failed with its reason by its job.
    let bad = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
            "statuses": [{"status": "read", "timestamp": "1705320030", "recipient_id": "5215512345678"}]}},
        {"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
            "statuses": [{"id": "wamid.OUTA", "status": "read", "timestamp": "1705320031", "recipient_id": "5215512345678"}]}}]}]});
    assert_eq!(meta(&app, &bad).await.status(), StatusCode::OK);
    let _dead = app.try_run_jobs_until_idle().await;
    assert_eq!(status_of("wamid.OUTA").await, "READ");
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["failure_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("without `id`"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn customers_redact_leaves_no_personal_data_in_any_table() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = with_number(&app, "wh-redact").await;
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    meta(
        &app,
        &inbound("pn-wh-redact", "wamid.R1", "Hello from Jane"),
    )
    .await;
    processed_ok(&app, &t).await;
    let redact = json!({"shop_id": 12345678, "shop_domain": t.shop.as_str(),
        "customer": {"id": 123456789, "email": "customer@example.com", "phone": "+525512345678"}, "orders_to_redact": [987654321]});
    shopify(&app, &t, "customers/redact", "r-1", &redact).await;
    processed_ok(&app, &t).await;
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert_eq!(c.marketing_state, MarketingState::Redacted);
    let dump = crate::webhooks_dump::tenant_text(&app, t.id).await;
    for needle in [
        "5512345678",
        "customer@example.com",
        "Jane",
        "Smith",
        "Hello from Jane",
    ] {
        assert!(
            !dump.contains(needle),
            "`{needle}` is still stored somewhere"
        );
    }
}

#[tokio::test]
async fn a_processing_failure_is_recorded_and_can_be_replayed() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("wh-fail").await;
    shopify(
        &app,
        &t,
        "customers/create",
        "bad-1",
        &json!({"email": "no-id@example.com"}),
    )
    .await;
    eventually("failed", || async {
        !webhook_events(&app, &t, "status=failed").await.is_empty()
    })
    .await;
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert!(failed[0]["failure_reason"].as_str().unwrap().contains("id"));
    let id = failed[0]["id"].as_str().unwrap();
    let r = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/webhook-events/{id}/replay"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .request(
            reqwest::Method::POST,
            "/api/v1/webhook-events/00000000-0000-0000-0000-000000000000/replay",
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, viewer) = app.add_member(&t, galantis_core::Role::Viewer).await;
    let r = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/webhook-events/{id}/replay"),
            &viewer,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .get("/api/v1/webhook-events?status=exploded", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn synced_data_is_readable_through_the_api_and_simulate_posts_like_shopify() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("wh-read").await;
    // `galantis simulate shopify` against the running app.
    let file = app.scratch.dir.path().join("customer.json");
    std::fs::write(&file, serde_json::to_vec(&seed_customer()).unwrap()).unwrap();
    let mut env = app.scratch.env();
    env.retain(|(k, _)| k != "DATABASE_URL");
    let out = crate::cli::command(&env)
        .args([
            "simulate",
            "shopify",
            "customers/create",
            "--shop",
            t.shop.as_str(),
            "--file",
        ])
        .arg(&file)
        .args(["--url", &app.base_url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    shopify(
        &app,
        &t,
        "products/create",
        "p",
        &product([0, 1, 2, 3], "2025-01-15T09:00:00Z"),
    )
    .await;
    shopify(&app, &t, "collections/create", "col", &json!({"id": 888888, "title": "Running Gear", "handle": "running-gear", "products_count": 24, "updated_at": "2025-01-15T12:00:00-05:00"})).await;
    settled_ok(&app, &t).await;

    let list: Value = app
        .get(
            "/api/v1/contacts?marketing_state=subscribed&q=jane",
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let id = list["data"][0]["id"].as_str().unwrap();
    let none: Value = app
        .get("/api/v1/contacts?tag=nope", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none["data"].as_array().unwrap().is_empty());
    let one: Value = app
        .get(&format!("/api/v1/contacts/{id}"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["contact"]["email"], "customer@example.com");
    assert_eq!(one["consent_history"][0]["state"], "SUBSCRIBED");
    let products: Value = app
        .get("/api/v1/products", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(products["data"][0]["variants"].as_array().unwrap().len(), 4);
    let cols: Value = app
        .get("/api/v1/collections", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cols["data"][0]["title"], "Running Gear");
    assert_eq!(
        app.get("/api/v1/orders", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Another tenant sees none of it; bad input is a 400; unknown ids a 404.
    let other = app.create_tenant("wh-read-other").await;
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{id}"), &other.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/contacts?marketing_state=maybe", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/v1/contacts?cursor=zzz", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_by_the_queue_until_it_succeeds() {
    let clock = std::sync::Arc::new(galantis_core::FixedClock::new(chrono::Utc::now()));
    let app = TestApp::builder()
        .without_workers()
        .fixed_clock(clock)
        .spawn()
        .await;
    let t = app.create_tenant("wh-retry").await;
    // Tags before the customer: fails (customer unknown), is retried.
    shopify(
        &app,
        &t,
        "customer_tags/added",
        "tag-1",
        &json!({"customer_id": 123456789, "tags_added": ["loyalty-gold"]}),
    )
    .await;
    let drained = app.run_jobs_until_idle().await;
    assert_eq!(
        drained.ran, 1,
        "the first attempt, and no retry before it is due"
    );
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert!(
        failed[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("not synced yet")
    );
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    app.run_jobs_until_idle().await;
    // The retry is due within the first step of the kind's schedule.
    app.advance_clock_and_run(chrono::Duration::seconds(10))
        .await;
    assert!(webhook_events(&app, &t, "status=failed").await.is_empty());
    assert!(webhook_events(&app, &t, "status=received").await.is_empty());
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert!(c.tags.contains(&"loyalty-gold".to_owned()));
}

#[tokio::test]
async fn uninstall_deactivates_and_shop_redact_erases_the_workspace() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = with_number(&app, "wh-shop").await;
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    let mut other = seed_customer();
    other["id"] = json!(42);
    other["email"] = json!("second@example.com");
    other["phone"] = json!("+5215550001111");
    other["first_name"] = json!("Rosalind");
    shopify(&app, &t, "customers/create", "c2", &other).await;
    meta(
        &app,
        &inbound("pn-wh-shop", "wamid.S1", "Do you ship to Oaxaca?"),
    )
    .await;
    processed_ok(&app, &t).await;
    let export = json!({"shop_id": 1, "shop_domain": t.shop.as_str(), "customer": {"id": 42, "email": "second@example.com", "phone": "+5215550001111"}, "orders_requested": []});
    shopify(&app, &t, "customers/data_request", "dr", &export).await;
    processed_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let requests = galantis_store::tenant::compliance::list(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(requests[0].kind, "customers_data_request");
    assert_eq!(
        requests[0].export.as_ref().unwrap()["contact"]["email"],
        "second@example.com"
    );
    assert!(requests[0].deadline_at > requests[0].received_at);

    shopify(
        &app,
        &t,
        "app/uninstalled",
        "u",
        &json!({"id": 1, "myshopify_domain": t.shop.as_str()}),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(
        app.get("/api/v1/tenant", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "tokens stop working"
    );
    let tenant = tenants::get(app.db(), t.id).await.unwrap().unwrap();
    assert_eq!(tenant.status, tenants::TenantStatus::Deactivated);
    // shop/redact still arrives ~48 h later and is processed.
    shopify(
        &app,
        &t,
        "shop/redact",
        "sr",
        &json!({"shop_id": 1, "shop_domain": t.shop.as_str()}),
    )
    .await;
    processed_ok(&app, &t).await;
    let dump = crate::webhooks_dump::tenant_text(&app, t.id).await;
    for needle in [
        "5512345678",
        "5550001111",
        "customer@example.com",
        "second@example.com",
        "Jane",
        "Rosalind",
        "Oaxaca",
    ] {
        assert!(!dump.contains(needle), "`{needle}` survived shop/redact");
    }
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let list = contacts::list(
        &mut tx,
        &contacts::Filter {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(list.len(), 2, "rows stay so aggregate counts do");
    assert!(
        list.iter()
            .all(|c| c.marketing_state == MarketingState::Redacted)
    );
}

#[tokio::test]
async fn one_meta_post_is_split_per_tenant_by_phone_number_id() {
    let app = TestApp::spawn().await;
    let a = with_number(&app, "wh-split-a").await;
    let b = with_number(&app, "wh-split-b").await;
    let mut body = inbound("pn-wh-split-a", "wamid.A1", "hola A");
    let more = inbound("pn-wh-split-b", "wamid.B1", "hola B")["entry"][0].clone();
    let unknown = inbound("pn-nobody", "wamid.N1", "hola nadie")["entry"][0].clone();
    body["entry"]
        .as_array_mut()
        .unwrap()
        .extend([more, unknown]);
    let r: Value = meta(&app, &body).await.json().await.unwrap();
    assert_eq!(
        (r["changes"].as_i64(), r["unrouted"].as_i64()),
        (Some(2), Some(1))
    );
    settled_ok(&app, &a).await;
    settled_ok(&app, &b).await;
    for (t, wamid, other) in [(&a, "wamid.A1", "wamid.B1"), (&b, "wamid.B1", "wamid.A1")] {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        assert!(
            messaging::message_by_wamid(&mut tx, wamid)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            messaging::message_by_wamid(&mut tx, other)
                .await
                .unwrap()
                .is_none(),
            "no cross-tenant leak"
        );
        tx.commit().await.unwrap();
    }
}

/// Every Shopify payload of the seed reference, signed: processed (never
/// failed), with the domain event the seed describes; unsigned: 401.
#[tokio::test]
async fn every_seed_shopify_payload_is_processed_and_unsigned_ones_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("wh-seed").await;
    let shop = t.shop.as_str();
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("customers/create", seed_customer(), Some("CustomerCreated")),
        (
            "customers/update",
            {
                let mut c = seed_customer();
                c["last_name"] = json!("Smyth");
                c["updated_at"] = json!("2025-01-15T10:01:00-05:00");
                c
            },
            Some("CustomerUpdated"),
        ),
        (
            "customers/marketing_consent_updated",
            json!({"id": 123456789, "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2025-01-15T10:05:00-05:00"}, "sms_marketing_consent": {"state": "unsubscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2025-01-15T10:05:00-05:00"}, "phone": "+525512345678", "updated_at": "2025-01-15T10:05:00-05:00"}),
            Some("MarketingConsentChanged"),
        ),
        (
            "customer_tags/added",
            json!({"customer_id": 123456789, "tags_added": ["vip", "loyalty-gold"]}),
            Some("CustomerTagged"),
        ),
        (
            "customer_tags/removed",
            json!({"customer_id": 123456789, "tags_removed": ["loyalty-silver"]}),
            Some("CustomerUntagged"),
        ),
        (
            "orders/create",
            json!({"id": 987654321, "order_number": 1042, "customer": {"id": 123456789, "phone": "+525512345678"}, "total_price": "149.00", "currency": "MXN", "line_items": [{"id": 111111, "title": "Running Shoes", "quantity": 1, "price": "149.00", "product_id": 555555, "variant_id": 666666, "vendor": "NikeMX", "properties": []}], "tags": "", "fulfillment_status": null, "financial_status": "paid", "created_at": "2025-01-15T11:00:00-05:00"}),
            Some("OrderCreated"),
        ),
        (
            "orders/updated",
            json!({"id": 987654321, "order_number": 1042, "customer": {"id": 123456789}, "fulfillment_status": "fulfilled", "fulfillments": [{"id": 222222, "status": "success", "tracking_company": "DHL", "tracking_number": "1234567890", "tracking_url": "https://track.dhl.com/...", "created_at": "2025-01-16T14:00:00-05:00"}]}),
            Some("OrderShipped"),
        ),
        (
            "orders/cancelled",
            json!({"id": 987654321, "order_number": 1042, "customer": {"id": 123456789}, "total_price": "149.00", "cancelled_at": "2025-01-16T09:00:00-05:00", "cancel_reason": "customer"}),
            Some("OrderCancelled"),
        ),
        (
            "products/create",
            product([15, 0, 0, 0], "2025-01-15T09:00:00-05:00"),
            Some("ProductCreated"),
        ),
        (
            "products/update",
            product([15, 4, 0, 0], "2025-01-15T09:30:00-05:00"),
            Some("VariantRestocked"),
        ),
        (
            "collections/create",
            json!({"id": 888888, "title": "Running Gear", "handle": "running-gear", "products_count": 24, "updated_at": "2025-01-15T12:00:00-05:00"}),
            None,
        ),
        (
            "collections/update",
            json!({"id": 888888, "title": "Running Gear 2", "handle": "running-gear", "products_count": 25, "updated_at": "2025-01-15T12:30:00-05:00"}),
            None,
        ),
        ("collections/delete", json!({"id": 888888}), None),
        (
            "products/delete",
            json!({"id": 555555}),
            Some("ProductDeleted"),
        ),
        (
            "app_subscriptions/update",
            json!({"app_subscription": {"admin_graphql_api_id": "gid://shopify/AppSubscription/123", "name": "Galantis Pro Plan", "status": "ACTIVE", "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-15T00:00:00Z", "currency": "USD"}}),
            Some("AppSubscriptionUpdated"),
        ),
        (
            "customers/delete",
            json!({"id": 123456789}),
            Some("CustomerDeleted"),
        ),
    ];
    let secret = SecretString::from(TEST_SHOPIFY_SECRET);
    for (i, (topic, payload, event)) in cases.iter().enumerate() {
        let raw = serde_json::to_vec(payload).unwrap();
        for bad in [None, Some(sign_shopify(&raw, &SecretString::from("wrong")))] {
            let mut r = app
                .client
                .post(app.url("/webhooks/shopify"))
                .header("x-shopify-topic", *topic)
                .header("x-shopify-shop-domain", shop)
                .header("x-shopify-webhook-id", format!("bad-{i}"))
                .body(raw.clone());
            if let Some(b) = bad {
                r = r.header("x-shopify-hmac-sha256", b);
            }
            assert_eq!(
                r.send().await.unwrap().status(),
                StatusCode::UNAUTHORIZED,
                "{topic}"
            );
        }
        let before = webhook_events(&app, &t, "").await.len();
        assert_eq!(
            shopify(&app, &t, topic, &format!("seed-{i}"), payload)
                .await
                .status(),
            StatusCode::OK,
            "{topic}"
        );
        assert_eq!(
            webhook_events(&app, &t, "").await.len(),
            before + 1,
            "{topic}: one event stored, none for the bad signatures"
        );
        settled_ok(&app, &t).await;
        let _ = secret.clone();
        if let Some(kind) = event {
            assert!(
                !events_of(&app, &t, kind).await.is_empty(),
                "{topic} should emit {kind}"
            );
        }
    }
    let c = contact_by_shopify(&app, &t, 123456789).await.unwrap();
    assert!(c.deleted);
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(c.last_name.as_deref(), Some("Smyth"));
    assert!(c.tags.contains(&"loyalty-gold".to_owned()));
}

#[tokio::test]
async fn stop_is_stored_as_a_message_events_are_published_and_checkouts_complete() {
    let app = TestApp::spawn().await;
    let t = with_number(&app, "wh-stop2").await;
    let mut bus = app.state.events.subscribe();
    shopify(&app, &t, "customers/create", "c", &seed_customer()).await;
    meta(&app, &inbound("pn-wh-stop2", "wamid.STOP2", "STOP")).await;
    settled_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_phone(&mut tx, "+525512345678")
        .await
        .unwrap()
        .unwrap();
    let m = messaging::message_by_wamid(&mut tx, "wamid.STOP2")
        .await
        .unwrap();
    let history = contacts::consent_history(&mut tx, c.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(
        m.unwrap().body.as_deref(),
        Some("STOP"),
        "the STOP message itself is kept"
    );
    assert_eq!(
        history.last().unwrap().source,
        ConsentSource::StopReply,
        "{history:?}"
    );
    // Committed domain events are also published in-process.
    let mut kinds = Vec::new();
    while let Ok(e) = bus.try_recv() {
        assert_eq!(e.tenant, t.id);
        kinds.push(e.kind);
    }
    assert!(
        kinds.contains(&"CustomerCreated") && kinds.contains(&"ConversationMessageCreated"),
        "{kinds:?}"
    );

    // A checkout with a phone is stored; the order with its token completes it.
    let checkout = json!({"id": 31, "token": "tok-31", "email": "customer@example.com", "phone": "+525512345678",
        "total_price": "149.00", "currency": "MXN", "abandoned_checkout_url": "https://shop/recover/31",
        "line_items": [{"title": "Running Shoes", "quantity": 1}], "updated_at": "2025-01-15T10:00:00Z"});
    shopify(&app, &t, "checkouts/create", "ck", &checkout).await;
    settled_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "CheckoutUpdated").await.len(), 1);
    let order = json!({"id": 5, "order_number": 1, "customer": {"id": 123456789}, "checkout_token": "tok-31",
        "total_price": "149.00", "created_at": "2025-01-15T10:30:00Z"});
    shopify(&app, &t, "orders/create", "o", &order).await;
    settled_ok(&app, &t).await;
    assert_eq!(events_of(&app, &t, "CheckoutCompleted").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_are_each_stored_once_and_acknowledged_after_commit() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("wh-concurrent").await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (app, t) = (app.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let r = shopify(
                &app,
                &t,
                "customers/create",
                &format!("id-{}", i % 100),
                &seed_customer(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            let b: Value = r.json().await.unwrap();
            b["status"].as_str().unwrap().to_owned()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if t.await.unwrap() == "accepted" {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 100, "each webhook id accepted exactly once");
    assert_eq!(webhook_events(&app, &t, "").await.len(), 100);
    let jobs = galantis_store::jobs::admin::stats(app.db(), Some(t.id), chrono::Utc::now())
        .await
        .unwrap();
    let ingest = jobs.iter().find(|l| l.lane == "ingest").unwrap();
    assert_eq!(ingest.queued, 100, "one processing job per stored event");
}
