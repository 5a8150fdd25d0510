//! The restock pipeline (seed 002, ADR 0031): signed `products/update`
//! webhooks into a tenant connected to the Meta sandbox; subscriptions
//! fanned out through the back-in-stock automation (created from its
//! recipe), every "what can prevent a notification" row visible.

use chrono::Duration;
use galantis_core::MarketingState;
use galantis_core::automation::{ActivityStatus, TriggerKind};
use galantis_core::back_in_stock::SubscriptionStatus;
use galantis_sandbox::meta::TemplateSeed;
use galantis_store::tenant::automations::{self, Automation};
use galantis_store::tenant::back_in_stock::{self as bis, NewSubscription};
use galantis_testkit::webhooks::shopify_ok;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::automations_support::{Env, env_with};

pub(crate) const PRODUCT: i64 = 7101;
pub(crate) const S: i64 = 8101;
pub(crate) const M: i64 = 8102;

pub(crate) fn notice() -> TemplateSeed {
    TemplateSeed::approved(
        "back_in_stock_notice",
        "en",
        "Hi {{1}}, {{2}} ({{3}}) is back: {{4}}",
    )
}

pub(crate) async fn bis_env(name: &str) -> Env {
    env_with(name, vec![notice()]).await
}

pub(crate) fn product(version: u32, title: &str, s: (i64, &str), m: (i64, &str)) -> Value {
    json!({
        "id": PRODUCT, "title": title, "handle": "tee", "status": "active",
        "updated_at": format!("2026-03-01T09:{version:02}:00Z"),
        "variants": [
            {"id": S, "title": "S", "price": s.1, "inventory_quantity": s.0, "option1": "S",
             "inventory_item_id": S + 1000},
            {"id": M, "title": "M", "price": m.1, "inventory_quantity": m.0, "option1": "M",
             "inventory_item_id": M + 1000},
        ]
    })
}

pub(crate) async fn update(e: &Env, webhook_id: &str, body: &Value) {
    shopify_ok(&e.app, &e.t, "products/update", webhook_id, body).await;
    e.app.run_jobs_until_idle().await;
}

/// A contact subscribed (with `status`) to `variant`.
pub(crate) async fn subscriber(
    e: &Env,
    n: i64,
    consent: MarketingState,
    variant: i64,
    status: SubscriptionStatus,
) -> (Uuid, Uuid) {
    let phone = format!("+161355501{n:02}");
    let c = e.contact(n, &phone, consent).await;
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let s = bis::subscribe(
        &mut tx,
        NewSubscription {
            contact_id: c,
            variant_id: variant,
            product_id: Some(PRODUCT),
            options: &json!({"Size": "S"}),
            status,
            source: "back_in_stock_widget",
        },
        e.now().timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let id = match s {
        bis::Subscribed::Created(s) | bis::Subscribed::Existing(s) => s.id,
    };
    (c, id)
}

pub(crate) async fn status(e: &Env, sub: Uuid) -> SubscriptionStatus {
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let s = bis::get(&mut tx, sub).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    s.status
}

pub(crate) async fn the_automation(e: &Env) -> Option<Automation> {
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let a = automations::active_for_trigger(&mut tx, TriggerKind::BackInStock)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    a.into_iter().next()
}

/// The catalog with both variants sold out (a first product webhook).
pub(crate) async fn sold_out(e: &Env) {
    update(e, "p-0", &product(0, "Tee", (0, "20.00"), (0, "20.00"))).await;
}

/// Contacts 1..=n, subscribed, each with an `ACTIVE` subscription to `S`.
pub(crate) async fn active_subscribers(e: &Env, n: i64) -> Vec<(Uuid, Uuid)> {
    let mut subs = Vec::new();
    for i in 1..=n {
        subs.push(
            subscriber(
                e,
                i,
                MarketingState::Subscribed,
                S,
                SubscriptionStatus::Active,
            )
            .await,
        );
    }
    subs
}

/// Grants the tenant `credits` (operator grant with `reference`).
pub(crate) async fn grant(e: &Env, credits: i64, reference: &str) {
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    galantis_store::tenant::billing::operator_grant(&mut tx, credits, "test", reference, e.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub(crate) async fn sends_to(e: &Env, contact: Uuid) -> usize {
    e.messages()
        .await
        .iter()
        .filter(|m| m.contact_id == contact)
        .count()
}

#[tokio::test]
async fn a_restock_notifies_active_subscribers_once_through_the_recipe_automation() {
    let e = bis_env("bis-pipe-main").await;
    sold_out(&e).await;
    let (ok, ok_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (unsub, unsub_sub) = subscriber(
        &e,
        2,
        MarketingState::Unsubscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (pending, pending_sub) = subscriber(
        &e,
        3,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Pending,
    )
    .await;
    let (other, other_sub) = subscriber(
        &e,
        4,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    assert!(the_automation(&e).await.is_none());
    e.clock.advance(Duration::seconds(1));
    // Steps 1–5: S goes 0 → 3 (M stays 0).
    let body = product(1, "Tee", (3, "20.00"), (0, "20.00"));
    update(&e, "p-1", &body).await;
    // Step 9: the recipe automation was created and enrolled the subscriber.
    let a = the_automation(&e).await.expect("created from the recipe");
    assert_eq!(a.frequency_cap.map(|c| c.as_str()), Some("24_HOURS"));
    // Step 10: one send, with name, product, variant and a tracked link.
    let msgs = e.messages().await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].contact_id, ok);
    let payload = serde_json::to_string(&msgs[0]).unwrap();
    assert!(payload.contains("Ana1"), "{payload}");
    assert!(payload.contains("Tee"), "{payload}");
    assert!(payload.contains("/r/"), "{payload}");
    // Step 11: NOTIFIED; the rest as they were.
    assert_eq!(status(&e, ok_sub).await, SubscriptionStatus::Notified);
    assert_eq!(status(&e, unsub_sub).await, SubscriptionStatus::Active);
    assert_eq!(status(&e, pending_sub).await, SubscriptionStatus::Pending);
    assert_eq!(status(&e, other_sub).await, SubscriptionStatus::Active);
    // Step 7: the consent refusal is in the activity log.
    let trail = e.trail(&a, unsub).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].1, ActivityStatus::Skipped);
    assert!(e.trail(&a, pending).await.is_empty());
    assert!(e.trail(&a, other).await.is_empty());
    // The same webhook again: nothing twice.
    update(&e, "p-1", &body).await;
    assert_eq!(sends_to(&e, ok).await, 1);
    assert_eq!(e.runs(&a).await.len(), 1);
}

#[tokio::test]
async fn zero_to_zero_five_to_ten_title_and_price_changes_do_nothing() {
    let e = bis_env("bis-pipe-noop").await;
    update(&e, "p-0", &product(0, "Tee", (0, "20.00"), (5, "20.00"))).await;
    let (_, s_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (_, m_sub) = subscriber(
        &e,
        2,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (0, "20.00"), (10, "20.00"))).await;
    update(
        &e,
        "p-2",
        &product(2, "Tee renamed", (0, "20.00"), (10, "20.00")),
    )
    .await;
    update(
        &e,
        "p-3",
        &product(3, "Tee renamed", (0, "25.00"), (10, "25.00")),
    )
    .await;
    assert!(e.messages().await.is_empty());
    assert!(the_automation(&e).await.is_none());
    assert_eq!(status(&e, s_sub).await, SubscriptionStatus::Active);
    assert_eq!(status(&e, m_sub).await, SubscriptionStatus::Active);
}

#[tokio::test]
async fn two_variants_restocking_in_one_webhook_are_two_independent_runs() {
    let e = bis_env("bis-pipe-two").await;
    sold_out(&e).await;
    let (c, s1) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (d, s2) = subscriber(
        &e,
        2,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (4, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    let runs = e.runs(&a).await;
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0].trigger_key, runs[1].trigger_key);
    assert_eq!(sends_to(&e, c).await, 1);
    assert_eq!(sends_to(&e, d).await, 1);
    assert_eq!(status(&e, s1).await, SubscriptionStatus::Notified);
    assert_eq!(status(&e, s2).await, SubscriptionStatus::Notified);
}

#[tokio::test]
async fn a_second_restock_within_24_hours_skips_capped_subscribers_with_the_reason() {
    let e = bis_env("bis-pipe-cap").await;
    sold_out(&e).await;
    let (c, _) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    assert_eq!(sends_to(&e, c).await, 1);
    // The same contact now waits for M, which restocks two hours later.
    let (_, m_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::hours(2));
    update(&e, "p-2", &product(2, "Tee", (2, "20.00"), (6, "20.00"))).await;
    assert_eq!(sends_to(&e, c).await, 1);
    let a = the_automation(&e).await.unwrap();
    let trail = e.trail(&a, c).await;
    let skipped: Vec<_> = trail
        .iter()
        .filter(|t| t.1 == ActivityStatus::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1, "{trail:?}");
    assert!(
        skipped[0].2.as_deref().unwrap_or("").contains("cap"),
        "{trail:?}"
    );
    // Not notified: it waits, ACTIVE, for the next restock.
    assert_eq!(status(&e, m_sub).await, SubscriptionStatus::Active);
}

#[tokio::test]
async fn no_active_subscriber_means_no_enrolment() {
    let e = bis_env("bis-pipe-none").await;
    sold_out(&e).await;
    let (_, p) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Pending,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    assert!(e.runs(&a).await.is_empty());
    assert!(e.messages().await.is_empty());
    assert_eq!(status(&e, p).await, SubscriptionStatus::Pending);
}

#[tokio::test]
async fn the_fan_out_pages_through_every_active_subscriber_in_batches() {
    let e = bis_env("bis-pipe-pages").await;
    sold_out(&e).await;
    grant(&e, 500, "bis-pages").await;
    // Three pages (the second one larger), the last one short.
    let first = galantis_server::automations::restock::FIRST_BATCH;
    let second = galantis_server::automations::restock::next_page(first);
    assert!(second > first);
    let n = i64::from(first + second) + 13;
    let subs = active_subscribers(&e, n).await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (9, "20.00"), (0, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    assert_eq!(e.runs(&a).await.len() as i64, n);
    assert_eq!(e.messages().await.len() as i64, n);
    for (_, s) in &subs {
        assert_eq!(status(&e, *s).await, SubscriptionStatus::Notified);
    }
}

/// ADR 0043: a page waits while more than two seconds of the tenant's
/// sends are queued at its number's rate (80/s here: 160 messages), and
/// the subscribers it has not reached stay `ACTIVE` meanwhile.
#[tokio::test]
async fn a_page_waits_while_more_than_two_seconds_of_sends_are_queued() {
    use galantis_server::automations::restock::{FIRST_BATCH, next_page};
    use galantis_server::jobs::{Registry, worker::Worker};
    let e = bis_env("bis-pipe-pace").await;
    sold_out(&e).await;
    grant(&e, 1000, "bis-pace").await;
    // Pages of 10, 50 and 250 go (at most 60 queued before each), leaving
    // 310 queued: the fourth page waits.
    let second = next_page(FIRST_BATCH);
    let reached = FIRST_BATCH + second + next_page(second);
    let n = i64::from(reached) + 7;
    let subs = active_subscribers(&e, n).await;
    e.clock.advance(Duration::seconds(1));
    shopify_ok(
        &e.app,
        &e.t,
        "products/update",
        "p-1",
        &product(1, "Tee", (9, "20.00"), (0, "20.00")),
    )
    .await;
    // Everything but the sends, so what is queued stays queued.
    let mut no_sends = Registry::default();
    galantis_server::webhooks::register(&mut no_sends);
    galantis_server::automations::register(&mut no_sends);
    Worker::new(e.app.state.clone(), no_sends)
        .run_until_idle(10_000)
        .await
        .unwrap();
    let a = the_automation(&e).await.unwrap();
    assert_eq!(e.runs(&a).await.len(), reached as usize);
    let mut active = 0;
    for (_, s) in &subs {
        if status(&e, *s).await == SubscriptionStatus::Active {
            active += 1;
        }
    }
    assert_eq!(active, 7, "the subscribers of the waiting page");

    // The sends leave and the clock passes the wait: the rest are reached.
    for _ in 0..10 {
        e.app.run_jobs_until_idle().await;
        if e.runs(&a).await.len() as i64 == n {
            break;
        }
        e.clock.advance(Duration::seconds(5));
    }
    assert_eq!(e.runs(&a).await.len() as i64, n);
    assert_eq!(e.messages().await.len() as i64, n);
    for (_, s) in &subs {
        assert_eq!(status(&e, *s).await, SubscriptionStatus::Notified);
    }
}

#[tokio::test]
async fn a_variant_sold_out_again_before_the_fan_out_reaches_them_leaves_subscribers_active() {
    let e = bis_env("bis-pipe-again").await;
    sold_out(&e).await;
    let (c, s) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    // The restock event is processed after the variant sold out again
    // (stock is 0 when the batch looks): nobody is told, all wait.
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let p = galantis_store::tenant::catalog::list_products(&mut tx, None, 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let v = p
        .iter()
        .flat_map(|p| &p.variants)
        .find(|v| v.shopify_variant_id == S)
        .unwrap()
        .id;
    e.clock.advance(Duration::seconds(1));
    e.record(galantis_core::DomainEvent::VariantRestocked {
        variant_id: v,
        shopify_variant_id: S,
        shopify_product_id: PRODUCT,
        previous_quantity: 0,
        quantity: 1,
    })
    .await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(sends_to(&e, c).await, 0);
    assert_eq!(status(&e, s).await, SubscriptionStatus::Active);
    // Analytics shows them still waiting, none sent.
    let an = analytics(&e).await;
    assert_eq!(an["active_subscriptions"], 1, "{an}");
    assert_eq!(an["notifications_sent"], 0, "{an}");
    // The next restock tells them.
    update(&e, "p-1", &product(1, "Tee", (4, "20.00"), (0, "20.00"))).await;
    assert_eq!(sends_to(&e, c).await, 1);
    assert_eq!(status(&e, s).await, SubscriptionStatus::Notified);
    let an = analytics(&e).await;
    assert_eq!(an["active_subscriptions"], 0, "{an}");
    assert_eq!(an["notifications_sent"], 1, "{an}");
}

async fn analytics(e: &Env) -> Value {
    e.app
        .get(
            "/api/v1/back-in-stock/analytics?from=2026-02-01&to=2026-03-31",
            &e.t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_inventory_levels_update_from_zero_restocks_too() {
    let e = bis_env("bis-pipe-levels").await;
    sold_out(&e).await;
    let (c, s) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    let level = |available: i64, min: u32| {
        json!({"inventory_item_id": S + 1000, "location_id": 655441491, "available": available,
               "updated_at": format!("2026-03-01T09:{min:02}:00-05:00"),
               "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/655441491?inventory_item_id={}", S + 1000)})
    };
    // 0 → 0 at a location: nothing.
    shopify_ok(
        &e.app,
        &e.t,
        "inventory_levels/update",
        "l-1",
        &level(0, 10),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(sends_to(&e, c).await, 0);
    // 0 → 7: the subscriber hears.
    shopify_ok(
        &e.app,
        &e.t,
        "inventory_levels/update",
        "l-2",
        &level(7, 11),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(sends_to(&e, c).await, 1);
    assert_eq!(status(&e, s).await, SubscriptionStatus::Notified);
    // 7 → 9: nothing more.
    shopify_ok(
        &e.app,
        &e.t,
        "inventory_levels/update",
        "l-3",
        &level(9, 12),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(sends_to(&e, c).await, 1);
}
