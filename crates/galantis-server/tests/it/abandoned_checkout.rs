//! Abandoned checkouts: a checkout with a phone arms a timer (one job per
//! token, moved by every update); completion, an order with the token or
//! deletion cancel it; when it fires it records one `CheckoutAbandoned` per
//! checkout version, with the recovery URL and line items — whatever the
//! webhooks' duplication and order, and however often the job runs.
//! Real signed webhooks, a fixed clock, the queue drained by the test.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use galantis_core::{Clock, DomainEvent, FixedClock, JobKind, JobState, Lane};
use galantis_server::abandoned_checkout::CheckoutAbandonTimer;
use galantis_server::jobs::worker::Worker;
use galantis_store::jobs::{JobView, admin, run};
use galantis_store::tenant::domain_events;
use galantis_testkit::webhooks::shopify_ok;
use galantis_testkit::{TestApp, TestTenant};
use serde_json::{Value, json};

const T0: &str = "2026-03-01T10:00:00Z";
const PHONE: &str = "+34 612 345 678";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

async fn app() -> (TestApp, Arc<FixedClock>, TestTenant) {
    let clock = Arc::new(FixedClock::new(t0()));
    let app = TestApp::builder()
        .without_workers()
        .fixed_clock(clock.clone())
        .spawn()
        .await;
    let t = app.create_tenant("abandoned").await;
    (app, clock, t)
}

fn checkout(token: &str, updated_at: &str, phone: Option<&str>) -> Value {
    json!({
        "id": 9001, "token": token, "phone": phone, "email": "ana@example.com",
        "currency": "EUR", "total_price": "47.30", "updated_at": updated_at, "created_at": T0,
        "abandoned_checkout_url": format!("https://shop.example/checkouts/{token}/recover"),
        "billing_address": {"country_code": "ES"},
        "line_items": [
            {"title": "Tee", "variant_title": "M", "variant_id": 11, "product_id": 1, "quantity": 2, "price": "19.90"},
            {"title": "Mug", "variant_title": "", "variant_id": 12, "product_id": 2, "quantity": 1, "price": "7.50"}
        ]
    })
}

fn mins(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

async fn abandoned(app: &TestApp, t: &TestTenant) -> Vec<DomainEvent> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let rows = domain_events::list(&mut tx, Some("CheckoutAbandoned"), None, 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.iter()
        .map(|e| DomainEvent::from_stored(&e.kind, &e.payload).unwrap())
        .collect()
}

/// The checkout timers waiting to run.
async fn timers(app: &TestApp, t: &TestTenant) -> Vec<JobView> {
    admin::list(app.db(), Some(t.id), Some(JobState::Available), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == CheckoutAbandonTimer::KIND)
        .collect()
}

#[tokio::test]
async fn a_checkout_with_a_phone_is_abandoned_once_after_the_delay() {
    let (app, _clock, t) = app().await;
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-a", T0, Some(PHONE)),
    )
    .await;
    app.run_jobs_until_idle().await;
    let waiting = timers(&app, &t).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].run_at, t0() + mins(10), "the documented default");

    app.advance_clock_and_run(mins(10) - chrono::Duration::seconds(1))
        .await;
    assert!(abandoned(&app, &t).await.is_empty(), "not before the delay");
    app.advance_clock_and_run(chrono::Duration::seconds(1))
        .await;
    let events = abandoned(&app, &t).await;
    assert_eq!(events.len(), 1);
    let DomainEvent::CheckoutAbandoned {
        token,
        version,
        abandoned_checkout_url,
        total_price,
        currency,
        line_items,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!(token.as_deref(), Some("tok-a"));
    assert_eq!(*version, Some(t0().timestamp_millis()));
    assert_eq!(
        abandoned_checkout_url.as_deref(),
        Some("https://shop.example/checkouts/tok-a/recover")
    );
    assert_eq!(
        (total_price.as_deref(), currency.as_deref()),
        (Some("47.30"), Some("EUR"))
    );
    assert_eq!(line_items.len(), 2);
    assert_eq!(line_items[0].title.as_deref(), Some("Tee"));
    assert_eq!(line_items[0].variant_title.as_deref(), Some("M"));
    assert_eq!(
        (line_items[0].quantity, line_items[0].price.as_deref()),
        (2, Some("19.90"))
    );
    assert_eq!(line_items[1].variant_title, None);

    app.advance_clock_and_run(chrono::Duration::days(2)).await;
    assert_eq!(abandoned(&app, &t).await.len(), 1, "once");
    assert!(timers(&app, &t).await.is_empty());
}

#[tokio::test]
async fn a_checkout_without_a_phone_arms_nothing() {
    let (app, _clock, t) = app().await;
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-b", T0, None),
    )
    .await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty());
    app.advance_clock_and_run(chrono::Duration::hours(2)).await;
    assert!(abandoned(&app, &t).await.is_empty());

    // A phone added later arms it; removing it again disarms it.
    let with = checkout("tok-b", "2026-03-01T10:01:00Z", Some(PHONE));
    shopify_ok(&app, &t, "checkouts/update", "c-2", &with).await;
    app.run_jobs_until_idle().await;
    assert_eq!(timers(&app, &t).await.len(), 1);
    let without = checkout("tok-b", "2026-03-01T10:02:00Z", None);
    shopify_ok(&app, &t, "checkouts/update", "c-3", &without).await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty());
    app.advance_clock_and_run(chrono::Duration::hours(2)).await;
    assert!(abandoned(&app, &t).await.is_empty());
}

#[tokio::test]
async fn an_update_restarts_the_timer_which_then_fires_once() {
    let (app, _clock, t) = app().await;
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-c", T0, Some(PHONE)),
    )
    .await;
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(mins(8)).await;
    let update = checkout("tok-c", "2026-03-01T10:08:00Z", Some(PHONE));
    shopify_ok(&app, &t, "checkouts/update", "c-2", &update).await;
    app.run_jobs_until_idle().await;
    let waiting = timers(&app, &t).await;
    assert_eq!(waiting.len(), 1, "moved, not duplicated: {waiting:?}");
    assert_eq!(waiting[0].run_at, t0() + mins(18));

    app.advance_clock_and_run(mins(9)).await; // 10:17
    assert!(
        abandoned(&app, &t).await.is_empty(),
        "the old due time passed"
    );
    app.advance_clock_and_run(mins(1)).await; // 10:18
    let events = abandoned(&app, &t).await;
    assert_eq!(events.len(), 1);
    let DomainEvent::CheckoutAbandoned { version, .. } = &events[0] else {
        unreachable!()
    };
    let v = DateTime::parse_from_rfc3339("2026-03-01T10:08:00Z").unwrap();
    assert_eq!(*version, Some(v.timestamp_millis()), "the latest version");
    app.advance_clock_and_run(chrono::Duration::days(1)).await;
    assert_eq!(abandoned(&app, &t).await.len(), 1);

    // The customer comes back, changes the checkout and leaves again: a new
    // episode, recorded once more.
    let back = checkout("tok-c", "2026-03-02T12:00:00Z", Some(PHONE));
    shopify_ok(&app, &t, "checkouts/update", "c-3", &back).await;
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(mins(10)).await;
    app.advance_clock_and_run(chrono::Duration::days(1)).await;
    assert_eq!(abandoned(&app, &t).await.len(), 2);
}

#[tokio::test]
async fn completion_an_order_with_the_token_or_deletion_cancels_the_timer() {
    let (app, _clock, t) = app().await;
    // An order carrying the checkout's token.
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-d", T0, Some(PHONE)),
    )
    .await;
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(mins(5)).await;
    let order = json!({"id": 501, "order_number": 1001, "checkout_token": "tok-d", "total_price": "47.30",
        "currency": "EUR", "created_at": "2026-03-01T10:05:00Z", "updated_at": "2026-03-01T10:05:00Z"});
    shopify_ok(&app, &t, "orders/create", "o-1", &order).await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty(), "cancelled");

    // A checkout that completes itself.
    let mut other = checkout("tok-e", "2026-03-01T10:05:00Z", Some(PHONE));
    other["id"] = json!(9002);
    shopify_ok(&app, &t, "checkouts/create", "c-2", &other).await;
    app.run_jobs_until_idle().await;
    assert_eq!(timers(&app, &t).await.len(), 1);
    other["updated_at"] = json!("2026-03-01T10:06:00Z");
    other["completed_at"] = json!("2026-03-01T10:06:00Z");
    shopify_ok(&app, &t, "checkouts/update", "c-3", &other).await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty(), "cancelled");

    // A deleted checkout.
    let mut gone = checkout("tok-i", "2026-03-01T10:06:00Z", Some(PHONE));
    gone["id"] = json!(9003);
    shopify_ok(&app, &t, "checkouts/create", "c-5", &gone).await;
    app.run_jobs_until_idle().await;
    assert_eq!(timers(&app, &t).await.len(), 1);
    let delete = json!({"id": 9003, "token": "tok-i"});
    shopify_ok(&app, &t, "checkouts/delete", "c-6", &delete).await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty(), "cancelled");

    // A late update of the ordered checkout (without its completion)
    // arms nothing.
    let stale = checkout("tok-d", "2026-03-01T10:01:00Z", Some(PHONE));
    shopify_ok(&app, &t, "checkouts/update", "c-4", &stale).await;
    app.run_jobs_until_idle().await;
    assert!(timers(&app, &t).await.is_empty());
    app.advance_clock_and_run(chrono::Duration::hours(3)).await;
    assert!(abandoned(&app, &t).await.is_empty());
}

#[tokio::test]
async fn duplicated_and_reordered_webhooks_record_one_abandonment() {
    let (app, _clock, t) = app().await;
    let create = checkout("tok-f", T0, Some(PHONE));
    let update = checkout("tok-f", "2026-03-01T10:02:00Z", Some(PHONE));
    // The update overtakes the create; each arrives twice (once redelivered
    // with its id, once with a new id and the same body).
    shopify_ok(&app, &t, "checkouts/update", "u-1", &update).await;
    shopify_ok(&app, &t, "checkouts/update", "u-1", &update).await;
    shopify_ok(&app, &t, "checkouts/create", "c-1", &create).await;
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(mins(3)).await;
    shopify_ok(&app, &t, "checkouts/update", "u-2", &update).await;
    shopify_ok(&app, &t, "checkouts/create", "c-2", &create).await;
    app.run_jobs_until_idle().await;
    let waiting = timers(&app, &t).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].run_at,
        t0() + mins(10),
        "redeliveries are no new version: the wait is not restarted"
    );
    app.advance_clock_and_run(mins(7)).await;
    app.advance_clock_and_run(chrono::Duration::days(1)).await;
    assert_eq!(abandoned(&app, &t).await.len(), 1);
}

/// A worker claims the due timer and dies; meanwhile the checkout changes.
/// The rescued job finds the new due time and waits for it; the checkout is
/// recorded once, for its latest version, and a stray extra run of the
/// timer adds nothing.
#[tokio::test]
async fn a_timer_retried_after_a_crash_records_one_abandonment() {
    let (app, clock, t) = app().await;
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-g", T0, Some(PHONE)),
    )
    .await;
    app.run_jobs_until_idle().await;
    clock.advance(mins(10));
    let ghost = run::claim(
        app.db(),
        Lane::Flows,
        &[CheckoutAbandonTimer::KIND],
        "ghost",
        clock.now(),
        10,
    )
    .await
    .unwrap();
    assert_eq!(ghost.len(), 1, "the due timer");
    // While the ghost holds it, an update arrives (processed by a worker
    // that ignores the ghost's job).
    let update = checkout("tok-g", "2026-03-01T10:10:00Z", Some(PHONE));
    shopify_ok(&app, &t, "checkouts/update", "c-2", &update).await;
    let worker = Worker::new(app.state.clone(), app.registry.clone());
    worker.run_until_idle(100).await.unwrap();
    assert!(abandoned(&app, &t).await.is_empty());

    // The ghost never heartbeats: its job is rescued and runs again.
    clock.advance(chrono::Duration::seconds(6));
    let r = admin::rescue(app.db(), clock.now(), Duration::from_secs(5), &[])
        .await
        .unwrap();
    assert_eq!(r.retried, 1);
    app.run_jobs_until_idle().await;
    assert!(
        abandoned(&app, &t).await.is_empty(),
        "the update moved the due time to 10:20"
    );
    app.advance_clock_and_run(mins(10)).await;
    let events = abandoned(&app, &t).await;
    assert_eq!(events.len(), 1);
    // The ghost's late completion is refused.
    assert!(
        !run::complete(app.db(), &ghost[0], clock.now())
            .await
            .unwrap()
    );

    // A stray run of the timer for the same checkout (a duplicate enqueue)
    // records nothing more.
    let DomainEvent::CheckoutAbandoned { checkout_id, .. } = &events[0] else {
        unreachable!()
    };
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let stray = CheckoutAbandonTimer {
        checkout_id: *checkout_id,
        token: Some("tok-g".into()),
    };
    galantis_server::jobs::enqueue(&mut tx, &stray, clock.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.advance_clock_and_run(chrono::Duration::days(1)).await;
    assert_eq!(abandoned(&app, &t).await.len(), 1);
}

#[tokio::test]
async fn the_abandonment_names_the_customer_or_the_contact_with_its_phone() {
    let (app, _clock, t) = app().await;
    let customer = json!({"id": 77, "email": "ana@example.com", "phone": "+34612345678",
        "first_name": "Ana", "updated_at": T0, "created_at": T0});
    shopify_ok(&app, &t, "customers/create", "cu-1", &customer).await;
    // A guest checkout (no customer) with the customer's phone.
    shopify_ok(
        &app,
        &t,
        "checkouts/create",
        "c-1",
        &checkout("tok-h", T0, Some(PHONE)),
    )
    .await;
    app.run_jobs_until_idle().await;
    app.advance_clock_and_run(mins(10)).await;
    let events = abandoned(&app, &t).await;
    let DomainEvent::CheckoutAbandoned { contact_id, .. } = &events[0] else {
        unreachable!()
    };
    assert!(contact_id.is_some(), "{events:?}");
}
