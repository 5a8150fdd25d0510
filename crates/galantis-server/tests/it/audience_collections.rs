//! Collection contents for "purchased collection" segments: collection
//! webhooks enqueue `shopify.collection_sync`, which reads the products
//! through the Shopify port (the recording fake here), replaces the stored
//! rows and moves buyers in and out of the segments that mention the
//! collection — one `USER_ADDED_TO_SEGMENT` per entry. Deletions of
//! collections and products empty the rows; Shopify errors retry or die by
//! class; a tenant without an access token is skipped; malformed payloads
//! fail like every other handler's; the daily reconcile syncs collections
//! no webhook announced.

use galantis_server::jobs::kinds::collections::ReconcileCollections;
use galantis_server::shopify_client::{RecordingShopifyClient, ShopifyError};
use galantis_store::jobs::JobView;
use galantis_store::tenant::catalog;
use galantis_store::tenant::segments;
use galantis_testkit::{TestApp, TestTenant};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::webhooks::{events_of, settled_ok as settled, shopify_ok as shopify, webhook_events};
use galantis_testkit::eventually;

const SYNC: &str = "shopify.collection_sync";
const RUNNING_GEAR: i64 = 888888;
/// What the buyer's order contains.
const SHOES: i64 = 555555;

fn customer(id: i64) -> Value {
    json!({
        "id": id, "email": "ana@example.mx", "first_name": "Ana", "last_name": "López",
        "phone": "+521555123456",
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "created_at": "2025-01-15T10:00:00-05:00", "updated_at": "2025-01-15T10:00:00-05:00"
    })
}

fn order(id: i64, customer: i64, product: i64) -> Value {
    json!({
        "id": id, "order_number": id, "customer": {"id": customer},
        "total_price": "149.00", "currency": "MXN", "financial_status": "paid",
        "line_items": [{"id": 1, "title": "Running Shoes", "quantity": 1, "price": "149.00",
                        "product_id": product, "variant_id": 666666, "vendor": "NikeMX"}],
        "created_at": "2025-01-15T11:00:00-05:00", "updated_at": "2025-01-15T11:00:00-05:00"
    })
}

fn purchased_collection(collection: i64) -> Value {
    json!({"groups": [{"conditions": [
        {"field": "purchased_collection", "operator": "=", "value": collection}
    ]}]})
}

fn fake(app: &TestApp) -> &RecordingShopifyClient {
    app.state
        .shopify
        .as_any()
        .downcast_ref::<RecordingShopifyClient>()
        .expect("the testkit installs the recording Shopify client")
}

fn collection(id: i64, updated_at: &str) -> Value {
    json!({"id": id, "title": "Running Gear", "handle": "running-gear",
           "products_count": 24, "updated_at": updated_at})
}

async fn sync_jobs(app: &TestApp, t: &TestTenant) -> Vec<JobView> {
    galantis_store::jobs::admin::list(app.db(), Some(t.id), None, None, 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == SYNC)
        .collect()
}

/// Webhooks processed, then every collection sync they enqueued finished
/// (completed or dead). Returns the sync jobs.
async fn synced(app: &TestApp, t: &TestTenant) -> Vec<JobView> {
    settled(app, t).await;
    eventually("collection syncs finished", || async {
        sync_jobs(app, t)
            .await
            .iter()
            .all(|j| j.state == "completed" || j.state == "dead")
    })
    .await;
    sync_jobs(app, t).await
}

async fn rows(app: &TestApp, t: &TestTenant, collection: i64) -> Vec<i64> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let p = catalog::collection_products(&mut tx, collection)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    p
}

async fn is_member(app: &TestApp, t: &TestTenant, segment: Uuid, contact: Uuid) -> bool {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let m = segments::is_member(&mut tx, segment, contact)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    m
}

/// A subscribed customer (Shopify id 42) with one order of [`SHOES`], and a
/// segment "purchased collection = `collection`". Returns (segment, contact).
async fn buyer_and_segment(app: &TestApp, t: &TestTenant, collection: i64) -> (Uuid, Uuid) {
    // The customer first: an order processed before its customer is not
    // linked to the contact.
    shopify(app, t, "customers/create", "c-1", &customer(42)).await;
    settled(app, t).await;
    shopify(app, t, "orders/create", "o-1", &order(9001, 42, SHOES)).await;
    settled(app, t).await;
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "Bought running gear",
                      "rules": purchased_collection(collection)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let seg: Value = r.json().await.unwrap();
    // Nothing is known about the collection's products yet: saving the
    // segment asks Shopify about it.
    assert_eq!(seg["member_count"], 0);
    let jobs = synced(app, t).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].payload["collection_id"], collection);
    let contacts: Value = app
        .get("/api/v1/contacts?q=ana", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contact = contacts["data"][0]["id"].as_str().unwrap().parse().unwrap();
    (seg["id"].as_str().unwrap().parse().unwrap(), contact)
}

#[tokio::test]
async fn collection_webhooks_sync_products_and_move_buyers_in_and_out_once() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-sync").await;
    let (seg, contact) = buyer_and_segment(&app, &t, RUNNING_GEAR).await;
    fake(&app).set_collection(RUNNING_GEAR, vec![SHOES, 111]);

    shopify(
        &app,
        &t,
        "collections/create",
        "col-1",
        &collection(RUNNING_GEAR, "2025-01-15T12:00:00-05:00"),
    )
    .await;
    let jobs = synced(&app, &t).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].state, "completed");
    assert_eq!(jobs[0].payload["collection_id"], RUNNING_GEAR);
    assert_eq!(rows(&app, &t, RUNNING_GEAR).await, vec![111, SHOES]);
    assert!(is_member(&app, &t, seg, contact).await);
    let entered = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    assert_eq!(entered.len(), 1, "{entered:?}");
    assert_eq!(entered[0]["subject_id"], contact.to_string());
    assert_eq!(entered[0]["payload"]["segment_id"], seg.to_string());

    // An update that keeps the product re-syncs, and the member who stays
    // in emits nothing.
    shopify(
        &app,
        &t,
        "collections/update",
        "col-2",
        &collection(RUNNING_GEAR, "2025-01-15T12:30:00-05:00"),
    )
    .await;
    assert_eq!(synced(&app, &t).await.len(), 3);
    assert!(is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);

    // The product leaves the collection: so does the buyer (no event).
    fake(&app).set_collection(RUNNING_GEAR, vec![111]);
    shopify(
        &app,
        &t,
        "collections/update",
        "col-3",
        &collection(RUNNING_GEAR, "2025-01-15T13:00:00-05:00"),
    )
    .await;
    synced(&app, &t).await;
    assert_eq!(rows(&app, &t, RUNNING_GEAR).await, vec![111]);
    assert!(!is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);

    // A stale update (older than stored) is ignored and reads nothing.
    let reads = fake(&app).collection_reads().len();
    shopify(
        &app,
        &t,
        "collections/update",
        "col-old",
        &collection(RUNNING_GEAR, "2025-01-15T12:45:00-05:00"),
    )
    .await;
    synced(&app, &t).await;
    assert_eq!(fake(&app).collection_reads().len(), reads);

    // Back in: a new transition, a second event.
    fake(&app).set_collection(RUNNING_GEAR, vec![SHOES]);
    shopify(
        &app,
        &t,
        "collections/update",
        "col-4",
        &collection(RUNNING_GEAR, "2025-01-15T14:00:00-05:00"),
    )
    .await;
    synced(&app, &t).await;
    assert!(is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 2);

    // Deleting the collection empties it (Shopify is not asked) and the
    // buyer leaves.
    let reads = fake(&app).collection_reads().len();
    shopify(
        &app,
        &t,
        "collections/delete",
        "col-5",
        &json!({"id": RUNNING_GEAR}),
    )
    .await;
    let jobs = synced(&app, &t).await;
    assert!(jobs.iter().all(|j| j.state == "completed"), "{jobs:?}");
    assert!(rows(&app, &t, RUNNING_GEAR).await.is_empty());
    assert!(!is_member(&app, &t, seg, contact).await);
    assert_eq!(fake(&app).collection_reads().len(), reads);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 2);
    // Every read was this tenant's, for this collection.
    assert!(
        fake(&app)
            .collection_reads()
            .iter()
            .all(|(tenant, c)| *tenant == t.id && *c == RUNNING_GEAR)
    );
}

#[tokio::test]
async fn a_deleted_product_leaves_its_collections_even_if_shopify_still_lists_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-product-delete").await;
    let (seg, contact) = buyer_and_segment(&app, &t, RUNNING_GEAR).await;
    fake(&app).set_collection(RUNNING_GEAR, vec![SHOES, 111]);
    shopify(
        &app,
        &t,
        "collections/create",
        "col-1",
        &collection(RUNNING_GEAR, "2025-01-15T12:00:00-05:00"),
    )
    .await;
    synced(&app, &t).await;
    assert!(is_member(&app, &t, seg, contact).await);

    // products/delete removes the product's rows and re-syncs the
    // collection; the read (racing with Shopify) still lists the product,
    // which is known to be deleted and stays out.
    shopify(&app, &t, "products/delete", "p-del", &json!({"id": SHOES})).await;
    let jobs = synced(&app, &t).await;
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.state == "completed"), "{jobs:?}");
    assert_eq!(rows(&app, &t, RUNNING_GEAR).await, vec![111]);
    assert!(!is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);

    // Deleting a product in no collection enqueues nothing.
    shopify(&app, &t, "products/delete", "p-del-2", &json!({"id": 999})).await;
    assert_eq!(synced(&app, &t).await.len(), 3);

    // A collection Shopify no longer has (its delete webhook not here yet)
    // is emptied.
    fake(&app).remove_collection(RUNNING_GEAR);
    shopify(
        &app,
        &t,
        "collections/update",
        "col-2",
        &collection(RUNNING_GEAR, "2025-01-15T13:00:00-05:00"),
    )
    .await;
    assert_eq!(synced(&app, &t).await.len(), 4);
    assert!(rows(&app, &t, RUNNING_GEAR).await.is_empty());
}

#[tokio::test]
async fn shopify_errors_retry_or_die_and_a_tenant_without_token_is_skipped() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-errors").await;
    let (seg, contact) = buyer_and_segment(&app, &t, RUNNING_GEAR).await;
    fake(&app).set_collection(RUNNING_GEAR, vec![SHOES]);

    // A retryable error: the job runs again and succeeds.
    fake(&app).fail_next_read(ShopifyError::Retryable("Shopify answered 503".into()));
    shopify(
        &app,
        &t,
        "collections/create",
        "col-1",
        &collection(RUNNING_GEAR, "2025-01-15T12:00:00-05:00"),
    )
    .await;
    let jobs = synced(&app, &t).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].state, "completed", "{jobs:?}");
    assert_eq!(jobs[0].attempt, 2);
    // The segment's read, then the failed and the retried one.
    assert_eq!(
        fake(&app)
            .collection_reads()
            .iter()
            .filter(|(_, c)| *c == RUNNING_GEAR)
            .count(),
        3
    );
    assert!(is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);

    // A permanent error: dead at once, the stored rows stay as they were.
    fake(&app).set_collection(RUNNING_GEAR, vec![]);
    fake(&app).fail_next_read(ShopifyError::Permanent("Access denied".into()));
    shopify(
        &app,
        &t,
        "collections/update",
        "col-2",
        &collection(RUNNING_GEAR, "2025-01-15T13:00:00-05:00"),
    )
    .await;
    let jobs = synced(&app, &t).await;
    let dead: Vec<&JobView> = jobs.iter().filter(|j| j.state == "dead").collect();
    assert_eq!(dead.len(), 1, "{jobs:?}");
    assert_eq!(dead[0].attempt, 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Access denied"))
    );
    assert_eq!(rows(&app, &t, RUNNING_GEAR).await, vec![SHOES]);
    assert!(is_member(&app, &t, seg, contact).await);

    // Another tenant without an access token: the sync completes without
    // asking, its rows are kept, and nothing fails.
    let other = app.create_tenant("col-no-token").await;
    fake(&app).without_token(other.id);
    let mut tx = app.db().tenant_tx(other.id).await.unwrap();
    catalog::set_collection_products(&mut tx, RUNNING_GEAR, &[7])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    shopify(
        &app,
        &other,
        "collections/update",
        "col-3",
        &collection(RUNNING_GEAR, "2025-01-15T12:00:00-05:00"),
    )
    .await;
    let jobs = synced(&app, &other).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, "completed", "{jobs:?}");
    assert_eq!(jobs[0].attempt, 1);
    assert_eq!(rows(&app, &other, RUNNING_GEAR).await, vec![7]);
    assert!(
        fake(&app)
            .collection_reads()
            .iter()
            .any(|(tenant, _)| *tenant == other.id)
    );
}

#[tokio::test]
async fn malformed_collection_webhooks_fail_and_enqueue_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-bad").await;
    for (i, (topic, body)) in [
        ("collections/create", json!({"title": "No id"})),
        (
            "collections/update",
            json!({"id": "888888x", "title": "Bad id"}),
        ),
        ("collections/delete", json!({})),
    ]
    .iter()
    .enumerate()
    {
        shopify(&app, &t, topic, &format!("bad-{i}"), body).await;
    }
    eventually("the malformed webhooks failed", || async {
        let failed = webhook_events(&app, &t, "status=failed").await;
        failed.len() == 3
            && failed.iter().all(|e| {
                e["failure_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("numeric `id`"))
            })
    })
    .await;
    assert!(sync_jobs(&app, &t).await.is_empty());
    assert!(fake(&app).collection_reads().is_empty());
}

#[tokio::test]
async fn collections_no_webhook_announced_are_synced_by_segments_and_the_reconcile() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-reconcile").await;
    // A collection created before the app was installed: saving a segment
    // that mentions it reads it at once.
    fake(&app).set_collection(4242, vec![SHOES]);
    let (seg, contact) = buyer_and_segment(&app, &t, 4242).await;
    assert_eq!(rows(&app, &t, 4242).await, vec![SHOES]);
    assert!(is_member(&app, &t, seg, contact).await);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);

    // A smart collection changes without a webhook: the daily reconcile
    // reads it again.
    async fn reconcile(app: &TestApp, t: &TestTenant) {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        galantis_server::jobs::enqueue(
            &mut tx,
            &ReconcileCollections::default(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    fake(&app).set_collection(4242, vec![111]);
    reconcile(&app, &t).await;
    eventually("the buyer leaves the segment", || async {
        !is_member(&app, &t, seg, contact).await
    })
    .await;
    assert_eq!(rows(&app, &t, 4242).await, vec![111]);
    fake(&app).set_collection(4242, vec![SHOES]);
    reconcile(&app, &t).await;
    eventually("the buyer is back", || async {
        is_member(&app, &t, seg, contact).await
    })
    .await;
    let jobs = synced(&app, &t).await;
    assert!(
        jobs.iter()
            .all(|j| j.state == "completed" && j.payload["collection_id"] == 4242),
        "{jobs:?}"
    );
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 2);

    // A segment on a collection already known asks nothing more.
    let reads = fake(&app).collection_reads().len();
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "Also 4242", "rules": purchased_collection(4242)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(synced(&app, &t).await.len(), jobs.len());
    assert_eq!(fake(&app).collection_reads().len(), reads);
}

// ---------------------------------------------------------------------------
// The real client against a stand-in for Shopify's GraphQL Admin API
// ---------------------------------------------------------------------------

/// A GraphQL endpoint (at the client's API version) that serves collection 888888 in pages of two
/// products, answers 503 once for collection 503, denies access for
/// collection 403 and knows no other collection. Records what it got.
async fn fake_admin_api() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as Http};
    use axum::routing::post;

    type Seen = Arc<Mutex<Vec<(String, Value)>>>;
    async fn graphql(
        State(seen): State<Seen>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (Http, Json<Value>) {
        let token = headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let earlier_503 = seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b["variables"]["id"] == "gid://shopify/Collection/503");
        seen.lock().unwrap().push((token, body.clone()));
        let page = |ids: &[i64], next: Option<&str>| {
            let nodes: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": format!("gid://shopify/Product/{id}")}))
                .collect();
            json!({"data": {"collection": {"products": {
                "nodes": nodes,
                "pageInfo": {"hasNextPage": next.is_some(), "endCursor": next}
            }}}})
        };
        match (
            body["variables"]["id"].as_str().unwrap_or(""),
            body["variables"]["cursor"].as_str(),
        ) {
            ("gid://shopify/Collection/888888", None) => {
                (Http::OK, Json(page(&[1, 2], Some("p2"))))
            }
            ("gid://shopify/Collection/888888", Some("p2")) => {
                (Http::OK, Json(page(&[2, 3], Some("p3"))))
            }
            ("gid://shopify/Collection/888888", Some("p3")) => (Http::OK, Json(page(&[4], None))),
            ("gid://shopify/Collection/503", _) if !earlier_503 => {
                (Http::SERVICE_UNAVAILABLE, Json(json!({})))
            }
            ("gid://shopify/Collection/503", _) => (Http::OK, Json(page(&[9], None))),
            ("gid://shopify/Collection/403", _) => (
                Http::OK,
                Json(
                    json!({"errors": [{"message": "Access denied for collection field.",
                                        "extensions": {"code": "ACCESS_DENIED"}}]}),
                ),
            ),
            _ => (Http::OK, Json(json!({"data": {"collection": null}}))),
        }
    }

    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new()
        .route(
            &format!(
                "/admin/api/{}/graphql.json",
                galantis_server::shopify_client::ADMIN_API_VERSION
            ),
            post(graphql),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[tokio::test]
async fn the_http_client_pages_through_a_collection_and_classifies_errors() {
    use galantis_core::SecretName;
    use galantis_server::shopify_client::{HttpShopifyClient, Read, ShopifyClient};

    let app = TestApp::spawn().await;
    let t = app.create_tenant("col-http").await;
    let untokened = app.create_tenant("col-http-none").await;
    app.state
        .secrets
        .put(
            t.id,
            SecretName::ShopifyAccessToken,
            &SecretString::from("shpat_test"),
        )
        .await
        .unwrap();
    let (url, seen) = fake_admin_api().await;
    let client = HttpShopifyClient::new(
        app.db().clone(),
        app.state.secrets.clone(),
        Some(url),
        galantis_server::shopify_client::ADMIN_API_VERSION.into(),
    );

    // Three pages, a duplicate across pages kept once, Shopify's order.
    let read = client
        .collection_products(t.id, RUNNING_GEAR)
        .await
        .unwrap();
    assert_eq!(read, Read::Found(vec![1, 2, 3, 4]));
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|(token, _)| token == "shpat_test"));
    let cursors: Vec<Value> = requests
        .iter()
        .map(|(_, b)| b["variables"]["cursor"].clone())
        .collect();
    assert_eq!(cursors, vec![Value::Null, json!("p2"), json!("p3")]);
    assert!(
        requests[0].1["query"]
            .as_str()
            .unwrap()
            .contains("collection(id: $id) { products(first: 250, after: $cursor)")
    );

    // A collection Shopify does not have.
    assert_eq!(
        client.collection_products(t.id, 777).await.unwrap(),
        Read::NotFound
    );
    // 5xx is retryable (and the next attempt succeeds); access denied is not.
    assert!(matches!(
        client.collection_products(t.id, 503).await,
        Err(ShopifyError::Retryable(_))
    ));
    assert_eq!(
        client.collection_products(t.id, 503).await.unwrap(),
        Read::Found(vec![9])
    );
    assert!(matches!(
        client.collection_products(t.id, 403).await,
        Err(ShopifyError::Permanent(_))
    ));
    // No access token: Shopify is not asked.
    let before = seen.lock().unwrap().len();
    assert!(matches!(
        client.collection_products(untokened.id, RUNNING_GEAR).await,
        Ok(Read::Skipped(_))
    ));
    assert_eq!(seen.lock().unwrap().len(), before);
}
