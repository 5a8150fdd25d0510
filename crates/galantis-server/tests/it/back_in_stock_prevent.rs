//! The restock pipeline's "what can prevent a notification" rows (seed 002,
//! ADR 0031): no approved template, a template no longer approved, a
//! missing calling code, insufficient credits; a send Meta fails
//! (refused at the API, or a `failed` status webhook after acceptance);
//! a redacted or deleted customer.

use chrono::Duration;
use galantis_core::MarketingState;
use galantis_core::automation::ActivityStatus;
use galantis_core::back_in_stock::SubscriptionStatus;
use galantis_core::messaging::MessageStatus;
use galantis_sandbox::meta::{FailureMode, FailureRule};
use galantis_store::tenant::back_in_stock::{self as bis, NewSubscription};
use serde_json::json;

use crate::automations_support::{Env, env_with};
use crate::back_in_stock_pipeline::{
    M, PRODUCT, S, active_subscribers, bis_env, notice, product, sends_to, sold_out, status,
    subscriber, the_automation, update,
};

async fn balance(e: &Env) -> i64 {
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    galantis_store::tenant::billing::account(&mut tx, e.now())
        .await
        .unwrap();
    let b = galantis_store::tenant::billing::balance(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    b
}

#[tokio::test]
async fn without_an_approved_restock_template_no_automation_is_created() {
    let e = env_with("bis-pipe-notpl", vec![notice().status("PENDING")]).await;
    sold_out(&e).await;
    let (_, s) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    assert!(the_automation(&e).await.is_none());
    assert!(e.messages().await.is_empty());
    assert_eq!(status(&e, s).await, SubscriptionStatus::Active);
}

#[tokio::test]
async fn a_template_no_longer_approved_fails_the_flow_for_every_subscriber() {
    let e = bis_env("bis-pipe-paused").await;
    sold_out(&e).await;
    let (c1, _) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    assert_eq!(sends_to(&e, c1).await, 1);
    let a = the_automation(&e).await.unwrap();
    // Meta pauses the template; M restocks for two new subscribers.
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let t = galantis_store::tenant::templates::by_name(&mut tx, "back_in_stock_notice", "en")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let meta_id = t.meta_template_id.unwrap();
    let r = galantis_testkit::webhooks::meta(
        &e.app,
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "200000000000888", "changes": [{
            "field": "message_template_status_update",
            "value": {"event": "PAUSED", "message_template_id": meta_id.parse::<i64>().unwrap(),
                      "message_template_name": "back_in_stock_notice",
                      "message_template_language": "en", "reason": null}}]}]}),
    )
    .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    e.app.run_jobs_until_idle().await;
    let (c2, s2) = subscriber(
        &e,
        2,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    let (c3, _) = subscriber(
        &e,
        3,
        MarketingState::Subscribed,
        M,
        SubscriptionStatus::Active,
    )
    .await;
    update(&e, "p-2", &product(2, "Tee", (2, "20.00"), (5, "20.00"))).await;
    for c in [c2, c3] {
        assert_eq!(sends_to(&e, c).await, 0);
        let trail = e.trail(&a, c).await;
        assert!(
            trail.iter().any(|t| t.1 == ActivityStatus::Failed
                && t.2.as_deref() == Some("template_paused")),
            "{trail:?}"
        );
    }
    assert_eq!(status(&e, s2).await, SubscriptionStatus::Notified);
}

#[tokio::test]
async fn a_missing_calling_code_fails_that_subscriber_notified_with_no_credit_consumed() {
    let e = bis_env("bis-pipe-cc").await;
    sold_out(&e).await;
    let (good, good_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    // A number stored without its country calling code.
    let bad = e.contact(2, "6135550102", MarketingState::Subscribed).await;
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let bad_sub = match bis::subscribe(
        &mut tx,
        NewSubscription {
            contact_id: bad,
            variant_id: S,
            product_id: Some(PRODUCT),
            options: &json!({}),
            status: SubscriptionStatus::Active,
            source: "back_in_stock_widget",
        },
        e.now().timestamp_millis(),
    )
    .await
    .unwrap()
    {
        bis::Subscribed::Created(s) | bis::Subscribed::Existing(s) => s.id,
    };
    tx.commit().await.unwrap();
    let before = balance(&e).await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    assert_eq!(sends_to(&e, good).await, 1);
    assert_eq!(sends_to(&e, bad).await, 0);
    let trail = e.trail(&a, bad).await;
    assert!(
        trail.iter().any(|t| t.1 == ActivityStatus::Failed
            && t.2.as_deref() == Some("CUSTOMER_IS_MISSING_CALLING_CODE")),
        "{trail:?}"
    );
    // Step 11 whatever the outcome; step 12 only for what Meta accepted.
    assert_eq!(status(&e, good_sub).await, SubscriptionStatus::Notified);
    assert_eq!(status(&e, bad_sub).await, SubscriptionStatus::Notified);
    let sb = &e.sb;
    galantis_testkit::eventually("one accepted", || async { sb.counters().accepted == 1 }).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        balance(&e).await,
        before - 1,
        "one credit, for the accepted send"
    );
}

#[tokio::test]
async fn insufficient_credits_fail_the_rest_after_a_partial_dispatch() {
    let e = bis_env("bis-pipe-credits").await;
    sold_out(&e).await;
    let before = balance(&e).await;
    assert!(before > 0 && before < 30, "trial credits: {before}");
    let n = before + 3;
    let subs = active_subscribers(&e, n).await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (9, "20.00"), (0, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    assert_eq!(e.messages().await.len() as i64, before);
    let mut refused = 0;
    for (c, s) in &subs {
        assert_eq!(status(&e, *s).await, SubscriptionStatus::Notified);
        if e.trail(&a, *c).await.iter().any(|t| {
            t.1 == ActivityStatus::Failed && t.2.as_deref() == Some("insufficient_credits")
        }) {
            refused += 1;
        }
    }
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn a_redacted_or_deleted_customer_is_never_notified() {
    let e = bis_env("bis-pipe-redact").await;
    sold_out(&e).await;
    let (kept, kept_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (redacted, redacted_sub) = subscriber(
        &e,
        2,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (deleted, deleted_sub) = subscriber(
        &e,
        3,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Pending,
    )
    .await;
    let shop = e.t.shop.as_str();
    let redact = json!({"shop_id": 1, "shop_domain": shop,
        "customer": {"id": 2, "phone": "+16135550102"}, "orders_to_redact": []});
    let r =
        galantis_testkit::webhooks::shopify(&e.app, &e.t, "customers/redact", "r-2", &redact).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = galantis_testkit::webhooks::shopify(
        &e.app,
        &e.t,
        "customers/delete",
        "d-3",
        &json!({"id": 3}),
    )
    .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        status(&e, redacted_sub).await,
        SubscriptionStatus::Cancelled
    );
    assert_eq!(status(&e, deleted_sub).await, SubscriptionStatus::Cancelled);
    assert_eq!(status(&e, kept_sub).await, SubscriptionStatus::Active);

    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    assert_eq!(sends_to(&e, kept).await, 1);
    assert_eq!(sends_to(&e, redacted).await, 0);
    assert_eq!(sends_to(&e, deleted).await, 0);
    assert_eq!(status(&e, kept_sub).await, SubscriptionStatus::Notified);
    assert_eq!(
        status(&e, redacted_sub).await,
        SubscriptionStatus::Cancelled
    );
}

/// A subscriber whose send Meta fails (`mode`) is NOTIFIED, the failure is
/// in the activity log (the Action's activity points at the FAILED message,
/// and the automation's stats count it) and no credit is consumed.
async fn a_send_meta_fails(name: &str, mode: FailureMode) {
    let e = bis_env(name).await;
    sold_out(&e).await;
    let (good, good_sub) = subscriber(
        &e,
        1,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    let (bad, bad_sub) = subscriber(
        &e,
        2,
        MarketingState::Subscribed,
        S,
        SubscriptionStatus::Active,
    )
    .await;
    e.sb.add_failure(FailureRule::recipient("16135550102", 131026, mode));
    let before = balance(&e).await;
    e.clock.advance(Duration::seconds(1));
    update(&e, "p-1", &product(1, "Tee", (2, "20.00"), (0, "20.00"))).await;
    let a = the_automation(&e).await.unwrap();
    let failed = || async {
        e.app.run_jobs_until_idle().await;
        e.messages()
            .await
            .into_iter()
            .find(|m| m.contact_id == bad && m.status == MessageStatus::Failed)
    };
    galantis_testkit::eventually("the failed send", || async { failed().await.is_some() }).await;
    let m = failed().await.unwrap();
    assert_eq!(m.error_code, Some(131026));
    assert_eq!(sends_to(&e, good).await, 1);
    assert_eq!(status(&e, good_sub).await, SubscriptionStatus::Notified);
    assert_eq!(status(&e, bad_sub).await, SubscriptionStatus::Notified);
    assert!(
        e.activity(&a)
            .await
            .iter()
            .any(|x| x.contact_id == bad && x.message_id == Some(m.id)),
        "the Action's activity names the failed message"
    );
    let stats: serde_json::Value = e
        .app
        .get(&format!("/api/v1/automations/{}/stats", a.id), &e.t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["messages"]["failed"], 1, "{stats}");
    assert_eq!(stats["messages"]["sent"], 2, "{stats}");
    let sb = &e.sb;
    galantis_testkit::eventually("the good one accepted", || async {
        sb.counters().accepted >= 1
    })
    .await;
    let settled = || async {
        e.app.run_jobs_until_idle().await;
        balance(&e).await == before - 1
    };
    galantis_testkit::eventually("one credit, for the delivered send", settled).await;
    assert_eq!(
        balance(&e).await,
        before - 1,
        "the failed send costs nothing"
    );
}

#[tokio::test]
async fn a_send_meta_refuses_is_notified_with_the_failure_and_no_credit() {
    a_send_meta_fails("bis-pipe-fail-sync", FailureMode::Sync).await;
}

#[tokio::test]
async fn a_send_meta_fails_after_accepting_is_notified_with_the_failure_and_no_credit() {
    a_send_meta_fails("bis-pipe-fail-async", FailureMode::Async).await;
}
