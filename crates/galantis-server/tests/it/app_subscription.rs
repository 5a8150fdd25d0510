//! The plan follows Shopify's `app_subscriptions/update` webhooks, which
//! arrive late, twice and out of order like every other topic.

use galantis_testkit::{TestApp, TestTenant};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::webhooks::{settled, settled_ok, shopify, webhook_events};

fn subscription(id: u32, name: &str, status: &str, updated_at: &str) -> Value {
    json!({"app_subscription": {
        "admin_graphql_api_id": format!("gid://shopify/AppSubscription/{id}"),
        "name": name, "status": status,
        "admin_graphql_api_shop_id": "gid://shopify/Shop/548380009",
        "created_at": "2026-11-01T00:00:00Z", "updated_at": updated_at,
        "currency": "USD", "capped_amount": "20.0"
    }})
}

async fn deliver(app: &TestApp, t: &TestTenant, webhook_id: &str, body: Value) {
    let r = shopify(app, t, "app_subscriptions/update", webhook_id, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    settled_ok(app, t).await;
}

/// (plan, credits granted this period, balance)
async fn billing(app: &TestApp, t: &TestTenant) -> (String, i64, i64) {
    let b: Value = app
        .get("/api/v1/billing", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        b["plan"].as_str().unwrap().to_owned(),
        b["usage"]["granted"].as_i64().unwrap(),
        b["balance"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn the_plan_follows_the_app_subscription_whatever_the_order() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("plans").await;
    assert_eq!(billing(&app, &t).await, ("TRIAL".into(), 10, 10));
    // (webhook id, subscription, name, status, updated_at) → (plan, granted, balance)
    let steps = [
        (
            "s1",
            1,
            "Galantis Growth",
            "ACTIVE",
            "02T00:00:00",
            ("GROWTH", 250),
        ),
        // Duplicated (a new webhook id, same content): nothing granted twice.
        (
            "s1-again",
            1,
            "Galantis Growth",
            "ACTIVE",
            "02T00:00:00",
            ("GROWTH", 250),
        ),
        // A switch to Scale: the new subscription is active, then the old
        // one's cancellation arrives — it must not end the new plan.
        (
            "s2",
            2,
            "Galantis Scale",
            "ACTIVE",
            "03T00:00:00",
            ("SCALE", 1_000),
        ),
        (
            "s1-cancel",
            1,
            "Galantis Growth",
            "CANCELLED",
            "03T00:00:01",
            ("SCALE", 1_000),
        ),
        // Down and up again in the same month grants nothing twice.
        (
            "s3",
            3,
            "Galantis Starter",
            "ACTIVE",
            "04T00:00:00",
            ("STARTER", 1_000),
        ),
        (
            "s4",
            4,
            "Galantis Scale",
            "ACTIVE",
            "05T00:00:00",
            ("SCALE", 1_000),
        ),
        // Late: older than what was acted on.
        (
            "s1-late",
            1,
            "Galantis Growth",
            "ACTIVE",
            "02T12:00:00",
            ("SCALE", 1_000),
        ),
        // Pending (not billed yet) and a name that names no plan.
        (
            "s5",
            5,
            "Galantis Enterprise",
            "PENDING",
            "06T00:00:00",
            ("SCALE", 1_000),
        ),
        (
            "s6",
            6,
            "Galantis Pro Plan",
            "ACTIVE",
            "06T00:00:01",
            ("SCALE", 1_000),
        ),
        // The current subscription ends: back to the trial allowance; what
        // this month granted stays.
        (
            "s4-cancel",
            4,
            "Galantis Scale",
            "CANCELLED",
            "07T00:00:00",
            ("TRIAL", 1_000),
        ),
    ];
    for (webhook, id, name, status, at, (plan, credits)) in steps {
        let at = format!("2026-11-{at}Z");
        deliver(&app, &t, webhook, subscription(id, name, status, &at)).await;
        assert_eq!(
            billing(&app, &t).await,
            (plan.to_owned(), credits, credits),
            "after {webhook}"
        );
    }
}

#[tokio::test]
async fn a_malformed_subscription_update_fails_its_event_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("plans-bad").await;
    for (id, body) in [
        ("no-sub", json!({"something": "else"})),
        (
            "no-status",
            json!({"app_subscription": {"admin_graphql_api_id": "gid://shopify/AppSubscription/9", "name": "Galantis Growth"}}),
        ),
    ] {
        let r = shopify(&app, &t, "app_subscriptions/update", id, &body).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged: it is stored for replay"
        );
    }
    settled(&app, &t).await;
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(billing(&app, &t).await, ("TRIAL".into(), 10, 10));
}
