//! The order facts conditions read, from real webhooks on both engines:
//! `PRODUCT_IN_ORDER_HAS_TAG` reads the tags of the trigger order's
//! products (or of the contact's last order when the trigger has none),
//! `ORDER_RECENCY` the days since the contact's last order.

use chrono::Duration;
use galantis_core::automation::{ActivityStatus, FrequencyCap};
use galantis_store::tenant::automations::Automation;
use galantis_testkit::webhooks::shopify_ok;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::automations_support::{Env, env};

fn customer(id: i64, phone: &str, tags: &str, updated_at: &str) -> Value {
    json!({
        "id": id, "first_name": "Ana", "phone": phone, "tags": tags,
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "created_at": "2026-02-01T09:00:00Z", "updated_at": updated_at
    })
}

fn order(id: i64, customer: i64, product: i64, created_at: &str) -> Value {
    json!({
        "id": id, "order_number": id, "customer": {"id": customer},
        "total_price": "30.00", "currency": "CAD", "financial_status": "paid",
        "line_items": [{"id": 1, "title": "Tee", "quantity": 1, "price": "30.00",
                        "product_id": product, "variant_id": product * 10}],
        "created_at": created_at, "updated_at": created_at
    })
}

fn product(id: i64, tags: &str) -> Value {
    json!({"id": id, "title": format!("P{id}"), "tags": tags,
           "updated_at": "2026-02-01T09:00:00Z",
           "variants": [{"id": id * 10, "inventory_quantity": 5}]})
}

/// trigger → condition → `yes` or `no` (both send the promo).
fn branches(trigger: Value, condition: Value, template: Uuid) -> Value {
    json!({
        "nodes": [trigger,
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [condition]}},
            {"id": "yes", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "no", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}],
        "edges": [{"from": "t", "to": "c"},
                  {"from": "c", "to": "yes", "branch": "yes"},
                  {"from": "c", "to": "no", "branch": "no"}]
    })
}

/// The branch each contact took: contact → `yes` | `no`.
async fn taken(e: &Env, a: &Automation) -> Vec<(Uuid, String)> {
    let mut out: Vec<(Uuid, String)> = e
        .activity(a)
        .await
        .into_iter()
        .filter(|x| {
            (x.node_id == "yes" || x.node_id == "no") && x.status == ActivityStatus::Completed
        })
        .map(|x| (x.contact_id, x.node_id))
        .collect();
    out.sort();
    out
}

async fn contact_of(e: &Env, shopify_id: i64) -> Uuid {
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let c = galantis_store::tenant::contacts::by_shopify_id(&mut tx, shopify_id)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    c.id
}

#[tokio::test]
async fn product_in_order_has_tag_reads_the_order_products_tags() {
    let e = env("auto-product-tags").await;
    shopify_ok(
        &e.app,
        &e.t,
        "products/create",
        "p-1",
        &product(5, "Summer, Gift"),
    )
    .await;
    shopify_ok(&e.app, &e.t, "products/create", "p-2", &product(7, "basic")).await;
    for (n, phone) in [(41, "+16135550141"), (42, "+16135550142")] {
        let c = customer(n, phone, "", "2026-02-01T09:00:00Z");
        shopify_ok(&e.app, &e.t, "customers/create", &format!("cu-{n}"), &c).await;
    }
    e.app.run_jobs_until_idle().await;
    let on_order = e
        .automation(
            branches(
                json!({"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"}),
                json!({"condition": "PRODUCT_IN_ORDER_HAS_TAG", "tag": "GIFT"}),
                e.one_var,
            ),
            FrequencyCap::Days30,
            &[],
        )
        .await;
    // A tag trigger carries no order: the contact's last order is read.
    let on_tag = e
        .automation(
            branches(
                json!({"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": "vip"}),
                json!({"condition": "PRODUCT_IN_ORDER_HAS_TAG", "tag": "gift"}),
                e.one_var,
            ),
            FrequencyCap::Days30,
            &[],
        )
        .await;
    e.clock.advance(Duration::seconds(1));
    let o41 = order(9001, 41, 5, "2026-03-01T09:30:00Z");
    shopify_ok(&e.app, &e.t, "orders/create", "o-1", &o41).await;
    let o42 = order(9002, 42, 7, "2026-03-01T09:31:00Z");
    shopify_ok(&e.app, &e.t, "orders/create", "o-2", &o42).await;
    e.app.run_jobs_until_idle().await;
    let (c41, c42) = (contact_of(&e, 41).await, contact_of(&e, 42).await);
    let mut want = vec![(c41, "yes".to_owned()), (c42, "no".to_owned())];
    want.sort();
    assert_eq!(
        taken(&e, &on_order).await,
        want,
        "{:?}",
        e.activity(&on_order).await
    );

    for (n, phone) in [(41, "+16135550141"), (42, "+16135550142")] {
        let c = customer(n, phone, "vip", "2026-03-01T09:40:00Z");
        shopify_ok(&e.app, &e.t, "customers/update", &format!("cu-{n}-vip"), &c).await;
    }
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        taken(&e, &on_tag).await,
        want,
        "{:?}",
        e.activity(&on_tag).await
    );
}

#[tokio::test]
async fn order_recency_reads_the_days_since_the_last_order() {
    let e = env("auto-order-recency").await;
    // 41 ordered 10 days before the test's now (2026-03-01T10:00Z), 42 40
    // days before, 43 never.
    for (n, phone) in [
        (41, "+16135550241"),
        (42, "+16135550242"),
        (43, "+16135550243"),
    ] {
        let c = customer(n, phone, "", "2026-01-01T09:00:00Z");
        shopify_ok(&e.app, &e.t, "customers/create", &format!("cu-{n}"), &c).await;
    }
    shopify_ok(
        &e.app,
        &e.t,
        "orders/create",
        "o-41",
        &order(9101, 41, 5, "2026-02-19T10:00:00Z"),
    )
    .await;
    shopify_ok(
        &e.app,
        &e.t,
        "orders/create",
        "o-42",
        &order(9102, 42, 5, "2026-01-20T10:00:00Z"),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    let a = e
        .automation(
            branches(
                json!({"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": "vip"}),
                json!({"condition": "ORDER_RECENCY", "operator": "<=", "days": 30}),
                e.one_var,
            ),
            FrequencyCap::Days30,
            &[],
        )
        .await;
    e.clock.advance(Duration::seconds(1));
    for (n, phone) in [
        (41, "+16135550241"),
        (42, "+16135550242"),
        (43, "+16135550243"),
    ] {
        let c = customer(n, phone, "vip", "2026-03-01T09:40:00Z");
        shopify_ok(&e.app, &e.t, "customers/update", &format!("cu-{n}-vip"), &c).await;
    }
    e.app.run_jobs_until_idle().await;
    let mut want = vec![
        (contact_of(&e, 41).await, "yes".to_owned()),
        (contact_of(&e, 42).await, "no".to_owned()),
        (contact_of(&e, 43).await, "no".to_owned()),
    ];
    want.sort();
    assert_eq!(taken(&e, &a).await, want, "{:?}", e.activity(&a).await);
}
