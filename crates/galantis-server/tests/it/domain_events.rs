//! The domain event recorder is a transactional outbox: an event and its
//! subscribers' jobs commit with the change that caused them, or neither
//! exists; committed events reach the in-process feed once, after commit.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use galantis_core::{DomainEvent, EventKind, Lane};
use galantis_store::events::{self, Recorded};
use galantis_store::jobs::NewJob;
use galantis_testkit::{TestApp, TestTenant};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::TryRecvError;
use uuid::Uuid;

const FOLLOW_UP: &str = "test.tag_follow_up";

/// A subscriber of `CustomerTagged` that enqueues one job per event.
fn subscribe(app: &TestApp) {
    app.db().events().subscribers.subscribe(
        EventKind::CustomerTagged,
        FOLLOW_UP,
        Arc::new(|r: &Recorded<'_>| {
            let DomainEvent::CustomerTagged { tag, .. } = r.event else {
                return None;
            };
            Some(NewJob {
                kind: FOLLOW_UP,
                lane: Lane::Sync,
                priority: 0,
                max_attempts: 1,
                timeout: Duration::from_secs(10),
                payload: json!({ "event_id": r.id, "tag": tag }),
                run_at: r.at,
                unique: None,
            })
        }),
    );
}

fn tagged(contact: Uuid) -> DomainEvent {
    DomainEvent::CustomerTagged {
        contact_id: contact,
        tag: "vip".into(),
    }
}

async fn page(app: &TestApp, t: &TestTenant, path: &str) -> Vec<Value> {
    let v: Value = app
        .get(path, &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().clone()
}

async fn follow_ups(app: &TestApp, t: &TestTenant) -> Vec<Value> {
    page(app, t, "/api/v1/jobs?limit=200")
        .await
        .into_iter()
        .filter(|j| j["kind"] == FOLLOW_UP)
        .collect()
}

#[tokio::test]
async fn an_event_and_its_subscriber_jobs_commit_together_or_not_at_all() {
    // No workers: the subscriber's job stays where the recorder put it.
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("events-outbox").await;
    subscribe(&app);
    let mut feed = app.state.events.subscribe();
    let contact = Uuid::now_v7();

    // Rolled back: no event, no job, nothing published.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    events::record(&mut tx, &tagged(contact), Utc::now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        page(&app, &t, "/api/v1/events?kind=CustomerTagged")
            .await
            .is_empty()
    );
    assert!(follow_ups(&app, &t).await.is_empty());
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));

    // Committed: one event, one job pointing at it, published once.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = events::record(&mut tx, &tagged(contact), Utc::now())
        .await
        .unwrap();
    // Not published before the commit: it could still roll back.
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));
    tx.commit().await.unwrap();

    let stored = page(&app, &t, "/api/v1/events?kind=CustomerTagged").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], id.to_string());
    assert_eq!(stored[0]["subject_id"], contact.to_string());
    assert_eq!(stored[0]["payload"]["tag"], "vip");
    let decoded = DomainEvent::from_stored("CustomerTagged", &stored[0]["payload"]).unwrap();
    assert_eq!(decoded, tagged(contact));

    let jobs = follow_ups(&app, &t).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["payload"]["event_id"], id.to_string());
    assert_eq!(jobs[0]["state"], "available");

    let published = feed.try_recv().unwrap();
    assert_eq!((published.tenant, published.id), (t.id, id));
    assert_eq!(published.kind, "CustomerTagged");
    assert_eq!(*published.event, tagged(contact));
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));

    // An event nobody subscribed to enqueues nothing.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let other = DomainEvent::CustomerUntagged {
        contact_id: contact,
        tags: vec!["vip".into()],
    };
    events::record(&mut tx, &other, Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(follow_ups(&app, &t).await.len(), 1);
    // The automation engine subscribes in production too; the test's own
    // subscriber sits beside it.
    let subscribers = app.db().events().subscribers.of(EventKind::CustomerTagged);
    assert!(subscribers.contains(&FOLLOW_UP), "{subscribers:?}");
}

#[tokio::test]
async fn a_subscriber_job_is_enqueued_in_the_transaction_of_an_api_change() {
    // The same outbox under a real handler: a tag added through the API.
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("events-api").await;
    subscribe(&app);
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let contact = galantis_store::tenant::contacts::create_from_whatsapp(
        &mut tx,
        "+14155550123",
        None,
        Utc::now().timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/contacts/{}", contact.id),
            &t.token,
        )
        .json(&json!({ "add_tags": ["vip"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stored = page(&app, &t, "/api/v1/events?kind=CustomerTagged").await;
    assert_eq!(stored.len(), 1);
    let jobs = follow_ups(&app, &t).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["payload"]["event_id"], stored[0]["id"]);

    // A refused change records nothing and enqueues nothing.
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/contacts/{}", contact.id),
            &t.token,
        )
        .json(&json!({ "tags": ["a"], "add_tags": ["vip2"] }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        page(&app, &t, "/api/v1/events?kind=CustomerTagged")
            .await
            .len(),
        1
    );
    assert_eq!(follow_ups(&app, &t).await.len(), 1);
}

#[tokio::test]
async fn events_recorded_by_webhook_handlers_decode_into_their_variants() {
    use crate::webhooks::{settled_ok, shopify_ok, webhook_events};
    let app = TestApp::spawn().await;
    let t = app.create_tenant("events-decode").await;
    let customer = json!({"id": 41, "email": "ana@example.com", "phone": "+14155550141",
        "first_name": "Ana", "tags": "vip", "updated_at": "2025-01-15T10:00:00Z",
        "sms_marketing_consent": {"state": "subscribed", "consent_updated_at": "2025-01-15T10:00:00Z"}});
    shopify_ok(&app, &t, "customers/create", "d1", &customer).await;
    settled_ok(&app, &t).await;
    let order = json!({"id": 42, "order_number": 1, "customer": {"id": 41}, "total_price": "10.00",
        "checkout_token": "tok-42", "created_at": "2025-01-15T11:00:00Z", "updated_at": "2025-01-15T11:00:00Z",
        "fulfillments": [{"status": "success", "tracking_company": "DHL", "created_at": "2025-01-15T12:00:00Z"}]});
    let checkout = json!({"id": 43, "token": "tok-43", "phone": "+14155550141", "customer": {"id": 41},
        "total_price": "10.00", "updated_at": "2025-01-15T10:30:00Z"});
    let product = json!({"id": 44, "title": "Shoe", "updated_at": "2025-01-15T10:00:00Z",
        "variants": [{"id": 45, "inventory_quantity": 0}]});
    shopify_ok(&app, &t, "orders/create", "d2", &order).await;
    shopify_ok(&app, &t, "checkouts/create", "d3", &checkout).await;
    shopify_ok(&app, &t, "products/create", "d4", &product).await;
    shopify_ok(&app, &t, "carts/create", "d5", &json!({"id": 46})).await;
    settled_ok(&app, &t).await;

    let stored = page(&app, &t, "/api/v1/events?limit=200").await;
    let mut kinds: Vec<&str> = Vec::new();
    for e in &stored {
        let kind = e["kind"].as_str().unwrap();
        let event = DomainEvent::from_stored(kind, &e["payload"])
            .unwrap_or_else(|err| panic!("{kind} does not decode: {err}: {e}"));
        assert_eq!(event.kind().as_str(), kind);
        assert_eq!(
            event.subject_id().as_deref(),
            e["subject_id"].as_str(),
            "{e}"
        );
        assert!(
            e["webhook_event_id"].is_string(),
            "caused by a webhook: {e}"
        );
        kinds.push(event.kind().as_str());
    }
    for k in [
        "CustomerCreated",
        "CustomerTagged",
        "OrderCreated",
        "OrderShipped",
        "CheckoutUpdated",
        "ProductCreated",
    ] {
        assert_eq!(
            kinds.iter().filter(|s| **s == k).count(),
            1,
            "{k} in {kinds:?}"
        );
    }
    // A topic Galantis does not handle is still stored, as ignored.
    let ignored = webhook_events(&app, &t, "status=ignored").await;
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0]["topic"], "carts/create");
}

/// Events are written at commit, numbered, in the order recorded (more
/// than one multi-row insert's worth in one transaction), and a redaction
/// in the same transaction reaches the ones not written yet (ADR 0039).
#[tokio::test]
async fn events_of_one_transaction_are_numbered_in_order_and_redactable_before_commit() {
    use galantis_store::tenant::domain_events;

    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("events-at-commit").await;
    let contact = Uuid::now_v7();
    let tag = |i: usize| DomainEvent::CustomerTagged {
        contact_id: contact,
        tag: format!("tag-{i:03}"),
    };
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let before = domain_events::last_seq(&mut tx).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(events::record(&mut tx, &tag(i), Utc::now()).await.unwrap());
    }
    let secret = DomainEvent::CustomerTagged {
        contact_id: contact,
        tag: "ana.secret@example.com".into(),
    };
    events::record(&mut tx, &secret, Utc::now()).await.unwrap();
    let scrubbed = domain_events::scrub_mentions(&mut tx, &["ana.secret@example.com".into()])
        .await
        .unwrap();
    assert_eq!(scrubbed, 1, "the pending event is scrubbed");
    tx.commit().await.unwrap();

    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let rows = domain_events::after_seq(&mut tx, before, 1000)
        .await
        .unwrap();
    assert_eq!(
        domain_events::last_seq(&mut tx).await.unwrap(),
        before + 251
    );
    tx.rollback().await.unwrap();
    assert_eq!(rows.len(), 251);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, before + 1 + i as i64, "consecutive");
        if i < 250 {
            assert_eq!(row.id, ids[i], "in the order recorded");
            assert_eq!(row.payload["tag"], format!("tag-{i:03}"));
        }
    }
    assert_eq!(rows[250].payload, json!({"redacted": true}));
}
