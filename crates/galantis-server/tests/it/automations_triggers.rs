//! Each trigger enrols the right contact from its real webhook (or API)
//! sequence, once per trigger key however often the webhook comes; an
//! excluded segment blocks; a paused automation holds its runs and
//! enrols nobody; `BACK_IN_STOCK` of an unknown variant enrols nobody
//! (the restock pipeline itself: `back_in_stock_pipeline.rs`).

use chrono::Duration;
use galantis_core::automation::{
    AutomationStatus, Exclusion, ExclusionKind, FrequencyCap, RunStatus,
};
use galantis_core::{DomainEvent, MarketingState};
use galantis_store::tenant::automations::{self, Automation, activity::Activity};
use galantis_testkit::webhooks::shopify_ok;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::automations_support::{Env, env};

fn customer(id: i64, updated_at: &str, tags: &str) -> Value {
    json!({
        "id": id, "email": "ana@example.mx", "first_name": "Ana", "last_name": "López",
        "phone": "+16135550120", "tags": tags,
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "default_address": {"country_code": "CA"},
        "created_at": "2026-03-01T09:00:00Z", "updated_at": updated_at
    })
}

fn order(id: i64, customer: i64, updated_at: &str) -> Value {
    json!({
        "id": id, "order_number": id, "customer": {"id": customer},
        "total_price": "30.00", "currency": "CAD", "financial_status": "paid",
        "line_items": [{"id": 1, "title": "Tee", "quantity": 1, "price": "30.00",
                        "product_id": 5, "variant_id": 6}],
        "created_at": "2026-03-01T10:00:00Z", "updated_at": updated_at
    })
}

/// trigger → 1 day → promo: enrolment shows as a waiting run.
fn waits(trigger: Value) -> Value {
    json!({
        "nodes": [trigger,
                  {"id": "d", "type": "delay", "amount": 1, "unit": "days"},
                  {"id": "a", "type": "action", "template_id": Uuid::nil()}],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
    })
}

fn trig(kind: &str) -> Value {
    json!({"id": "t", "type": "trigger", "trigger": kind})
}

async fn contacts_in(e: &Env, a: &Automation) -> Vec<Uuid> {
    e.runs(a).await.into_iter().map(|r| r.contact_id).collect()
}

#[tokio::test]
async fn each_trigger_enrols_from_its_webhooks_once() {
    let e = env("auto-triggers").await;
    let created = e
        .automation(waits(trig("CUSTOMER_CREATED")), FrequencyCap::Ever, &[])
        .await;
    let mut tagged = trig("CUSTOMER_TAGGED");
    tagged["tag"] = json!("gold");
    let tagged = e.automation(waits(tagged), FrequencyCap::Ever, &[]).await;
    let placed = e
        .automation(waits(trig("ORDER_PLACED")), FrequencyCap::Days30, &[])
        .await;
    let cancelled = e
        .automation(waits(trig("ORDER_CANCELLED")), FrequencyCap::Days30, &[])
        .await;
    let shipped = e
        .automation(waits(trig("ORDER_SHIPPED")), FrequencyCap::Days30, &[])
        .await;
    let list = {
        let r = e
            .app
            .request(reqwest::Method::POST, "/api/v1/lists", &e.t.token)
            .json(&json!({"name": "Newsletter"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().parse::<Uuid>().unwrap()
    };
    let mut on_list = trig("USER_ADDED_TO_LIST");
    on_list["list_id"] = json!(list);
    let on_list = e
        .automation(waits(on_list), FrequencyCap::Days30, &[])
        .await;
    let seg = {
        let r = e
            .app
            .request(reqwest::Method::POST, "/api/v1/segments", &e.t.token)
            .json(
                &json!({"name": "Gold", "rules": {"groups": [{"conditions": [
                {"field": "customer_tag", "operator": "is", "value": "gold"}]}]}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().parse::<Uuid>().unwrap()
    };
    let mut in_segment = trig("USER_ADDED_TO_SEGMENT");
    in_segment["segment_id"] = json!(seg);
    let in_segment = e
        .automation(waits(in_segment), FrequencyCap::Days30, &[])
        .await;
    e.clock.advance(Duration::seconds(1));

    // customers/create, delivered twice (and once more under another id).
    let c = customer(42, "2026-03-01T10:00:00Z", "");
    shopify_ok(&e.app, &e.t, "customers/create", "cu-1", &c).await;
    shopify_ok(&e.app, &e.t, "customers/create", "cu-1", &c).await;
    shopify_ok(&e.app, &e.t, "customers/create", "cu-1b", &c).await;
    e.app.run_jobs_until_idle().await;
    let who = contacts_in(&e, &created).await;
    assert_eq!(who.len(), 1, "one enrolment per customer");
    let contact = who[0];
    assert!(e.runs(&tagged).await.is_empty());

    // The tag arrives by customers/update: CUSTOMER_TAGGED and the segment.
    let c2 = customer(42, "2026-03-01T10:01:00Z", "gold");
    shopify_ok(&e.app, &e.t, "customers/update", "cu-2", &c2).await;
    shopify_ok(&e.app, &e.t, "customers/update", "cu-2", &c2).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(contacts_in(&e, &tagged).await, vec![contact]);
    assert_eq!(contacts_in(&e, &in_segment).await, vec![contact]);

    // An order: placed (twice), then cancelled, then (another) shipped.
    let o = order(9001, 42, "2026-03-01T10:02:00Z");
    shopify_ok(&e.app, &e.t, "orders/create", "o-1", &o).await;
    shopify_ok(&e.app, &e.t, "orders/create", "o-1b", &o).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(contacts_in(&e, &placed).await, vec![contact]);
    let mut oc = order(9001, 42, "2026-03-01T10:03:00Z");
    oc["cancelled_at"] = json!("2026-03-01T10:03:00Z");
    shopify_ok(&e.app, &e.t, "orders/cancelled", "o-2", &oc).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(contacts_in(&e, &cancelled).await, vec![contact]);
    let mut os = order(9002, 42, "2026-03-01T10:04:00Z");
    os["fulfillments"] = json!([{"id": 1, "status": "success", "tracking_number": "T1",
        "tracking_company": "UPS", "tracking_url": "https://ups.example/T1",
        "created_at": "2026-03-01T10:04:00Z"}]);
    shopify_ok(&e.app, &e.t, "orders/create", "o-3", &os).await;
    shopify_ok(&e.app, &e.t, "orders/updated", "o-4", &os).await;
    e.app.run_jobs_until_idle().await;
    let shipped_runs = e.runs(&shipped).await;
    assert_eq!(shipped_runs.len(), 1);
    assert_eq!(
        shipped_runs[0].context["order.tracking_url"],
        "https://ups.example/T1"
    );
    assert_eq!(e.runs(&placed).await.len(), 1, "the second order is capped");
    let capped = e.activity(&placed).await;
    assert!(
        capped
            .iter()
            .any(|x| x.reason.as_deref() == Some("frequency_capped")),
        "{capped:?}"
    );

    // The API adds the contact to a list.
    let r = e
        .app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/lists/{list}/members"),
            &e.t.token,
        )
        .json(&json!({"contact_ids": [contact]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    e.app.run_jobs_until_idle().await;
    assert_eq!(contacts_in(&e, &on_list).await, vec![contact]);

    for a in [
        &created,
        &tagged,
        &placed,
        &cancelled,
        &shipped,
        &on_list,
        &in_segment,
    ] {
        for r in e.runs(a).await {
            assert_eq!(r.status, RunStatus::Waiting);
        }
    }
}

#[tokio::test]
async fn back_in_stock_of_an_unknown_variant_enrols_nobody() {
    let e = env("auto-bis").await;
    let a = e
        .automation(waits(trig("BACK_IN_STOCK")), FrequencyCap::Hours24, &[])
        .await;
    e.clock.advance(Duration::seconds(1));
    e.record(DomainEvent::VariantRestocked {
        variant_id: Uuid::now_v7(),
        shopify_variant_id: 1,
        shopify_product_id: 2,
        previous_quantity: 0,
        quantity: 5,
    })
    .await;
    e.app.run_jobs_until_idle().await;
    assert!(e.runs(&a).await.is_empty());
}

#[tokio::test]
async fn an_excluded_segment_blocks_with_its_reason() {
    let e = env("auto-excl-seg").await;
    let r = e
        .app
        .request(reqwest::Method::POST, "/api/v1/segments", &e.t.token)
        .json(
            &json!({"name": "Staff", "rules": {"groups": [{"conditions": [
            {"field": "customer_tag", "operator": "is", "value": "staff"}]}]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let seg: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    shopify_ok(
        &e.app,
        &e.t,
        "customers/create",
        "cu-1",
        &customer(7, "2026-03-01T10:00:00Z", "staff"),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    let ex = [Exclusion {
        kind: ExclusionKind::Segment,
        id: seg,
    }];
    let a = e
        .automation(waits(trig("ORDER_PLACED")), FrequencyCap::Days7, &ex)
        .await;
    e.clock.advance(Duration::seconds(1));
    shopify_ok(
        &e.app,
        &e.t,
        "orders/create",
        "o-1",
        &order(1, 7, "2026-03-01T10:00:00Z"),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    assert!(e.runs(&a).await.is_empty());
    let acts: Vec<Activity> = e.activity(&a).await;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].reason.as_deref(), Some("excluded"));
}

#[tokio::test]
async fn a_paused_automation_holds_its_runs_and_enrols_nobody_until_resumed() {
    let e = env("auto-pause").await;
    let c = e
        .contact(1, "+16135550130", MarketingState::Subscribed)
        .await;
    let flow = json!({
        "nodes": [trig("ORDER_PLACED"),
                  {"id": "d", "type": "delay", "amount": 30, "unit": "minutes"},
                  {"id": "a", "type": "action", "template_id": e.one_var,
                   "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
    });
    let a = e.automation(flow, FrequencyCap::Days30, &[]).await;
    e.clock.advance(Duration::seconds(1));
    e.record(crate::automations_engine::order_event(Uuid::now_v7(), c))
        .await;
    e.app.run_jobs_until_idle().await;
    let set = |s: AutomationStatus| {
        let e = &e;
        let id = a.id;
        async move {
            let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
            automations::set_status(&mut tx, id, s, e.now().timestamp_millis())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    set(AutomationStatus::Paused).await;
    // The delay ends while paused: the run holds; a new order enrols nobody.
    e.app.advance_clock_and_run(Duration::minutes(31)).await;
    e.record(crate::automations_engine::order_event(Uuid::now_v7(), c))
        .await;
    e.app.advance_clock_and_run(Duration::minutes(5)).await;
    assert!(e.messages().await.is_empty(), "held at its next step");
    assert_eq!(e.runs(&a).await.len(), 1);
    set(AutomationStatus::Active).await;
    e.app.advance_clock_and_run(Duration::minutes(2)).await;
    assert_eq!(e.messages().await.len(), 1, "resumed");
    let runs = e.runs(&a).await;
    assert_eq!(runs.len(), 1, "the order while paused never enrols");
    assert_eq!(runs[0].status, RunStatus::Completed);
}
