//! Audience: segment rules per field and operator against a fixed fixture
//! (same members on SQLite and PostgreSQL), the compound rule of the issue,
//! membership transitions from webhooks and the periodic refresh, CSV
//! imports with a row report, lists, the reach estimate, contact updates
//! with consent proof and Shopify write-back, rule errors, roles and
//! tenant isolation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use galantis_core::segment::{DAY_MS, SegmentRules};
use galantis_core::{ConsentSource, FixedClock, MarketingState, Role};
use galantis_server::shopify_client::{RecordingShopifyClient, WriteBack};
use galantis_store::tenant::audience as store_audience;
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::messaging::{self, InboundMessage, OutboundMessage, StatusUpdate};
use galantis_store::tenant::orders::{self, OrderFields};
use galantis_store::tenant::{catalog, lists, segments};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::webhooks::{events_of, settled_ok as settled, shopify_ok as shopify};
use galantis_testkit::eventually;

/// 2026-01-01T00:00:00Z: the fixture's "now".
const NOW: i64 = 1_767_225_600_000;

/// N whole days (and an hour) before NOW.
fn days_ago(n: i64) -> i64 {
    NOW - n * DAY_MS - 3_600_000
}

fn date_days_ago(n: i64) -> String {
    Utc.timestamp_millis_opt(NOW - n * DAY_MS)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

struct Fixture {
    ids: HashMap<&'static str, Uuid>,
    names: HashMap<Uuid, &'static str>,
    l1: Uuid,
    l2: Uuid,
}

struct Person {
    name: &'static str,
    shopify_id: i64,
    phone: Option<&'static str>,
    country: Option<&'static str>,
    locale: Option<&'static str>,
    tags: &'static [&'static str],
    state: MarketingState,
    /// (total, vendor, product id, days ago, cancelled)
    orders: &'static [(&'static str, &'static str, i64, i64, bool)],
}

const PEOPLE: &[Person] = &[
    Person {
        name: "A",
        shopify_id: 1,
        phone: Some("+5215550000001"),
        country: Some("MX"),
        locale: Some("es-MX"),
        tags: &["VIP", "gold"],
        state: MarketingState::Subscribed,
        orders: &[
            ("400.00", "NikeMX", 555, 100, false),
            ("200.00", "Other", 111, 10, false),
        ],
    },
    Person {
        name: "B",
        shopify_id: 2,
        phone: Some("+5215550000002"),
        country: Some("MX"),
        locale: Some("es"),
        tags: &["newsletter"],
        state: MarketingState::NotSubscribed,
        orders: &[("100.00", "Adidas", 222, 40, false)],
    },
    Person {
        name: "C",
        shopify_id: 3,
        phone: Some("+14155550003"),
        country: Some("US"),
        locale: Some("en-US"),
        tags: &["vip"],
        state: MarketingState::Subscribed,
        orders: &[
            ("50.00", "Puma", 444, 5, false),
            ("50.00", "Puma", 444, 20, false),
            ("50.00", "Puma", 444, 200, false),
        ],
    },
    Person {
        name: "D",
        shopify_id: 4,
        phone: Some("5550004"),
        country: Some("BR"),
        locale: Some("pt-BR"),
        tags: &[],
        state: MarketingState::Unsubscribed,
        orders: &[],
    },
    Person {
        name: "E",
        shopify_id: 5,
        phone: None,
        country: Some("MX"),
        locale: Some("en"),
        tags: &["Gold"],
        state: MarketingState::Subscribed,
        orders: &[
            ("10.00", "Acme", 666, 60, false),
            ("10.00", "Acme", 666, 61, false),
            ("10.00", "Acme", 666, 62, false),
            ("10.00", "Acme", 666, 63, false),
            ("900.00", "Gucci", 333, 2, true),
        ],
    },
    Person {
        name: "F",
        shopify_id: 6,
        phone: Some("+34600000006"),
        country: Some("ES"),
        locale: Some("es-ES"),
        tags: &[],
        state: MarketingState::Pending,
        orders: &[("1000.00", "NIKEMX", 777, 3, false)],
    },
    Person {
        name: "G",
        shopify_id: 7,
        phone: Some("+5215550000007"),
        country: Some("MX"),
        locale: Some("es"),
        tags: &["vip"],
        state: MarketingState::Subscribed,
        orders: &[("700.00", "NikeMX", 555, 1, false)],
    },
    Person {
        name: "H",
        shopify_id: 8,
        phone: Some("+5215550000008"),
        country: Some("MX"),
        locale: Some("es"),
        tags: &[],
        state: MarketingState::Subscribed,
        orders: &[],
    },
];

fn cents(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap();
    w.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
}

/// Contacts A–H with orders, messages, lists and collections, written
/// through the store (the same repositories webhooks use). G is deleted.
async fn fixture(app: &TestApp, t: &TestTenant) -> Fixture {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let mut ids = HashMap::new();
    let mut order_id = 1000;
    for p in PEOPLE {
        let phone = p.phone.map(galantis_core::PhoneE164::parse);
        let f = CustomerFields {
            shopify_customer_id: p.shopify_id,
            first_name: Some(p.name.to_owned()),
            phone: phone
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|p| p.as_str().to_owned()),
            phone_raw: p.phone.map(str::to_owned),
            phone_status: p.phone.map(|_| match &phone {
                Some(Ok(_)) => "valid",
                _ => "missing_calling_code",
            }),
            locale: p.locale.map(str::to_owned),
            country: p.country.map(str::to_owned),
            tags: p.tags.iter().map(|s| s.to_string()).collect(),
            marketing_state: Some(p.state),
            updated_at: NOW - 1000,
            ..Default::default()
        };
        let c = match contacts::upsert_customer(&mut tx, &f, NOW).await.unwrap() {
            contacts::Upserted::Created(c) => c.id,
            other => panic!("{other:?}"),
        };
        for (total, vendor, product, ago, cancelled) in p.orders {
            order_id += 1;
            let at = days_ago(*ago);
            orders::upsert(
                &mut tx,
                &OrderFields {
                    shopify_order_id: order_id,
                    shopify_customer_id: Some(p.shopify_id),
                    contact_id: Some(c),
                    total_price: Some(total.to_string()),
                    total_price_cents: Some(cents(total)),
                    line_items: Some(
                        json!([{"id": order_id * 10, "title": "x", "quantity": 1, "price": total,
                                             "product_id": product, "vendor": vendor}]),
                    ),
                    cancelled_at: cancelled.then_some(at + 1000),
                    created_at: Some(at),
                    version: at,
                    payload: json!({"id": order_id}),
                    ..Default::default()
                },
                NOW,
            )
            .await
            .unwrap();
        }
        contacts::refresh_order_stats(&mut tx, c, NOW)
            .await
            .unwrap();
        ids.insert(p.name, c);
    }
    contacts::mark_deleted(&mut tx, 7, NOW).await.unwrap();

    // Messages: F received one 2 days ago and wrote 1 day ago; H 40 days ago.
    for (name, delivered_ago, inbound_ago) in [("F", 2, 1), ("H", 40, 40)] {
        let c = ids[name];
        let m = messaging::insert_outbound(
            &mut tx,
            &OutboundMessage {
                contact_id: c,
                phone_number_id: "100",
                idempotency_key: &format!("fixture-{name}"),
                kind: "template",
                body: None,
                content: &json!({}),
                source: "campaign",
                template_name: Some("hello"),
                template_language: Some("en"),
                is_sandbox: true,
            },
            NOW,
        )
        .await
        .unwrap();
        let wamid = format!("wamid.fixture.{name}");
        messaging::set_wamid(&mut tx, m, &wamid, NOW).await.unwrap();
        messaging::apply_status(
            &mut tx,
            &StatusUpdate {
                wamid: &wamid,
                status: galantis_core::MessageStatus::Delivered,
                at_ms: days_ago(delivered_ago),
                error_code: None,
                error_title: None,
                error_detail: None,
            },
            NOW,
        )
        .await
        .unwrap();
        let conv =
            messaging::touch_conversation_inbound(&mut tx, c, "100", days_ago(inbound_ago), NOW)
                .await
                .unwrap();
        messaging::insert_inbound(
            &mut tx,
            &InboundMessage {
                conversation_id: conv.id,
                contact_id: c,
                phone_number_id: "100",
                wamid: &format!("wamid.in.{name}"),
                kind: "text",
                body: Some("hi"),
                content: &json!({}),
                context_wamid: None,
                at_ms: days_ago(inbound_ago),
            },
            NOW,
        )
        .await
        .unwrap();
    }

    catalog::set_collection_products(&mut tx, 888, &[555, 777])
        .await
        .unwrap();
    catalog::set_collection_products(&mut tx, 999, &[333])
        .await
        .unwrap();
    let l1 = lists::create(&mut tx, "L1", None, NOW).await.unwrap().id;
    let l2 = lists::create(&mut tx, "L2", None, NOW).await.unwrap().id;
    lists::add_members(&mut tx, l1, &[ids["H"], ids["A"]], "api", NOW)
        .await
        .unwrap();
    lists::add_members(&mut tx, l2, &[ids["C"]], "api", NOW)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let names = ids.iter().map(|(k, v)| (*v, *k)).collect();
    Fixture { ids, names, l1, l2 }
}

fn one(field: &str, op: &str, value: Value) -> Value {
    json!({"groups": [{"conditions": [{"field": field, "operator": op, "value": value}]}]})
}

fn set(names: &str) -> BTreeSet<String> {
    names
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_rule_type_and_operator_selects_the_expected_contacts() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("aud-rules").await;
    let fx = fixture(&app, &t).await;
    let (l1, l2) = (fx.l1.to_string(), fx.l2.to_string());
    let cases: Vec<(Value, &str)> = vec![
        (one("phone", "is", json!("valid")), "A,B,C,F,H"),
        (one("phone", "=", json!("missing_calling_code")), "D"),
        (one("phone", "is not", json!("valid")), "D,E"),
        (
            one("phone", "in", json!(["missing", "missing_calling_code"])),
            "D,E",
        ),
        (one("phone", "not in", json!(["valid"])), "D,E"),
        (one("list", "in", json!([l1])), "A,H"),
        (one("list", "is", json!(l2)), "C"),
        (one("list", "=", json!(l1)), "A,H"),
        (one("list", "not in", json!([l1])), "B,C,D,E,F"),
        (one("list", "is not", json!(l2)), "A,B,D,E,F,H"),
        (
            one("last_message_received", "in last N days", json!(7)),
            "F",
        ),
        (
            one("last_message_received", "before", json!(date_days_ago(10))),
            "H",
        ),
        (
            one("last_message_received", "after", json!(date_days_ago(10))),
            "F",
        ),
        (
            one(
                "last_message_received",
                "between",
                json!([date_days_ago(50), date_days_ago(30)]),
            ),
            "H",
        ),
        (one("last_engaged_at", "in last N days", json!(30)), "F"),
        (
            one("last_engaged_at", "before", json!(date_days_ago(30))),
            "H",
        ),
        (
            one("last_engaged_at", "after", json!(date_days_ago(30))),
            "F",
        ),
        (
            one(
                "last_engaged_at",
                "between",
                json!([date_days_ago(45), date_days_ago(35)]),
            ),
            "H",
        ),
        (one("orders_count", ">", json!(2)), "C,E"),
        (one("orders_count", "<", json!(1)), "D,H"),
        (one("orders_count", ">=", json!(3)), "C,E"),
        (one("orders_count", "<=", json!(1)), "B,D,F,H"),
        (one("orders_count", "=", json!(1)), "B,F"),
        (one("orders_count", "between", json!([2, 3])), "A,C"),
        (one("total_spent", ">", json!(500)), "A,F"),
        (one("total_spent", "<", json!("100")), "D,E,H"),
        (one("total_spent", ">=", json!(150)), "A,C,F"),
        (one("total_spent", "<=", json!(100)), "B,D,E,H"),
        (one("total_spent", "=", json!("150.00")), "C"),
        (one("total_spent", "between", json!([100, 600])), "A,B,C"),
        (one("average_order_value", ">", json!("99.99")), "A,B,F"),
        (one("average_order_value", "<", json!(50)), "E"),
        (one("average_order_value", ">=", json!(50)), "A,B,C,F"),
        (one("average_order_value", "<=", json!(100)), "B,C,E"),
        (one("average_order_value", "=", json!(300)), "A"),
        (
            one("average_order_value", "between", json!([40, 150])),
            "B,C",
        ),
        (one("days_since_first_order", ">", json!(100)), "C"),
        (one("days_since_first_order", "<", json!(40)), "F"),
        (one("days_since_first_order", ">=", json!(100)), "A,C"),
        (one("days_since_first_order", "<=", json!(40)), "B,F"),
        (one("days_since_first_order", "=", json!(63)), "E"),
        (
            one("days_since_first_order", "between", json!([40, 100])),
            "A,B,E",
        ),
        (one("days_since_last_order", ">", json!(30)), "B"),
        (one("days_since_last_order", "<", json!(3)), "E"),
        (one("days_since_last_order", ">=", json!(5)), "A,B,C"),
        (one("days_since_last_order", "<=", json!(3)), "E,F"),
        (one("days_since_last_order", "=", json!(10)), "A"),
        (
            one("days_since_last_order", "between", json!([3, 10])),
            "A,C,F",
        ),
        (one("country", "=", json!("MX")), "A,B,E,H"),
        (one("country", "is", json!("us")), "C"),
        (one("country", "is not", json!("MX")), "C,D,F"),
        (one("country", "in", json!(["BR", "ES"])), "D,F"),
        (one("country", "not in", json!(["MX", "US"])), "D,F"),
        (one("language", "=", json!("es")), "A,B,F,H"),
        (one("language", "is", json!("en")), "C,E"),
        (one("language", "is not", json!("es")), "C,D,E"),
        (one("language", "in", json!(["pt-BR", "en_US"])), "C,D"),
        (one("language", "not in", json!(["es", "en"])), "D"),
        (one("consent", "=", json!("Yes")), "A,C,E,H"),
        (one("consent", "is", json!("no")), "B,D,F"),
        (one("consent", "is not", json!("SUBSCRIBED")), "B,D,F"),
        (
            one("consent", "in", json!(["PENDING", "UNSUBSCRIBED"])),
            "D,F",
        ),
        (
            one("consent", "not in", json!(["SUBSCRIBED", "PENDING"])),
            "B,D",
        ),
        (one("purchased_collection", "in", json!([888])), "A,F"),
        (one("purchased_collection", "=", json!("888")), "A,F"),
        (one("purchased_collection", "is", json!(999)), ""),
        (
            one("purchased_collection", "is not", json!(888)),
            "B,C,D,E,H",
        ),
        (
            one("purchased_collection", "not in", json!([888, 999])),
            "B,C,D,E,H",
        ),
        (one("purchased_brand", "=", json!("nikemx")), "A,F"),
        (one("purchased_brand", "is", json!("Adidas")), "B"),
        (
            one("purchased_brand", "is not", json!("NikeMX")),
            "B,C,D,E,H",
        ),
        (one("purchased_brand", "in", json!(["Puma", "Gucci"])), "C"),
        (
            one("purchased_brand", "not in", json!(["NikeMX", "Adidas"])),
            "C,D,E,H",
        ),
        (one("customer_tag", "=", json!("vip")), "A,C"),
        (one("customer_tag", "is", json!("GOLD")), "A,E"),
        (one("customer_tag", "is not", json!("vip")), "B,D,E,F,H"),
        (
            one("customer_tag", "in", json!(["newsletter", "gold"])),
            "A,B,E",
        ),
        (
            one("customer_tag", "not in", json!(["vip", "gold"])),
            "B,D,F,H",
        ),
    ];
    // Every field and each of its operators is covered.
    for f in galantis_core::segment::Field::ALL {
        for op in f.operators() {
            assert!(
                cases.iter().any(|(r, _)| {
                    let c = &r["groups"][0]["conditions"][0];
                    c["field"] == f.as_str()
                        && c["operator"]
                            .as_str()
                            .unwrap()
                            .eq_ignore_ascii_case(op.as_str())
                }),
                "no case for {f} {op}"
            );
        }
    }
    let mut failures = Vec::new();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    for (i, (rules, expected)) in cases.iter().enumerate() {
        let parsed = SegmentRules::parse(rules).unwrap();
        let (count, ids) = segments::preview(&mut tx, &parsed, 100, NOW).await.unwrap();
        let got: BTreeSet<String> = ids.iter().map(|id| fx.names[id].to_owned()).collect();
        if got != set(expected) || count != got.len() as i64 {
            failures.push(format!(
                "{}: expected {expected:?}, got {got:?} (count {count})",
                rules["groups"][0]["conditions"][0]
            ));
            continue;
        }
        // The materialised membership agrees with the preview.
        let seg = segments::create(&mut tx, &format!("case {i}"), None, rules, &parsed, NOW)
            .await
            .unwrap();
        assert_eq!(seg.member_count, count, "{rules}");
        for name in set(expected) {
            assert!(
                segments::is_member(&mut tx, seg.id, fx.ids[name.as_str()])
                    .await
                    .unwrap()
            );
        }
    }
    tx.rollback().await.unwrap();
    assert!(
        failures.is_empty(),
        "{} on {:?}:\n{}",
        failures.len(),
        app.engine(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_compound_rule_selects_exactly_the_expected_contacts() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("aud-compound").await;
    let fx = fixture(&app, &t).await;
    let rules = json!({"groups": [
        {"conditions": [{"field": "total_spent", "operator": ">", "value": 500},
                        {"field": "country", "operator": "=", "value": "MX"}]},
        {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3},
                        {"field": "consent", "operator": "=", "value": "Yes"}]}
    ]});
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments/preview", &t.token)
        .json(&json!({"rules": rules, "sample_size": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let got: BTreeSet<String> = body["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| fx.names[&c["id"].as_str().unwrap().parse::<Uuid>().unwrap()].to_owned())
        .collect();
    assert_eq!(got, set("A,C,E"));
    assert_eq!(body["count"], 3);
    // Saved, the segment materialises the same members.
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "VIP MX or loyal", "rules": rules}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let seg: Value = r.json().await.unwrap();
    assert_eq!(seg["member_count"], 3);
    assert_eq!(seg["version"], 1);
    let members: Value = app
        .get(
            &format!(
                "/api/v1/contacts?segment_id={}",
                seg["id"].as_str().unwrap()
            ),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: BTreeSet<String> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["first_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, set("A,C,E"));
    // The contact view names its lists and segments.
    let a: Value = app
        .get(&format!("/api/v1/contacts/{}", fx.ids["A"]), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["segments"][0]["name"], "VIP MX or loyal");
    assert_eq!(a["lists"][0]["name"], "L1");
    // Filters by list and language on the contact list.
    let on_l1: Value = app
        .get(
            &format!("/api/v1/contacts?list_id={}&language=es", fx.l1),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(on_l1["data"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------
// Webhooks and membership transitions
// ---------------------------------------------------------------------------

fn customer(id: i64, updated_at: &str, first_name: &str) -> Value {
    json!({
        "id": id, "email": "ana@example.mx", "first_name": first_name, "last_name": "López",
        "phone": "+521555123456", "tags": "vip",
        "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "default_address": {"country_code": "MX"},
        "locale": "es", "created_at": "2025-01-15T10:00:00-05:00", "updated_at": updated_at
    })
}

fn order(id: i64, customer: i64, total: &str, updated_at: &str) -> Value {
    json!({
        "id": id, "order_number": id, "customer": {"id": customer},
        "total_price": total, "currency": "MXN", "financial_status": "paid",
        "line_items": [{"id": 1, "title": "Running Shoes", "quantity": 1, "price": total,
                        "product_id": 555555, "variant_id": 666666, "vendor": "NikeMX"}],
        "created_at": "2025-01-15T11:00:00-05:00", "updated_at": updated_at
    })
}

#[tokio::test]
async fn an_order_over_the_threshold_adds_the_contact_once() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("aud-orders").await;
    shopify(
        &app,
        &t,
        "customers/create",
        "c-1",
        &customer(42, "2025-01-15T10:00:00-05:00", "Ana"),
    )
    .await;
    settled(&app, &t).await;
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "Big spenders", "rules": one("total_spent", ">", json!(500))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let seg: Value = r.json().await.unwrap();
    assert_eq!(seg["member_count"], 0);
    // 300 is not enough; another 300 lifts the total to 600.
    shopify(
        &app,
        &t,
        "orders/create",
        "o-1",
        &order(9001, 42, "300.00", "2025-01-15T11:00:00-05:00"),
    )
    .await;
    settled(&app, &t).await;
    assert!(
        events_of(&app, &t, "USER_ADDED_TO_SEGMENT")
            .await
            .is_empty()
    );
    shopify(
        &app,
        &t,
        "orders/create",
        "o-2",
        &order(9002, 42, "300.00", "2025-01-16T11:00:00-05:00"),
    )
    .await;
    settled(&app, &t).await;
    let events = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["segment_id"], seg["id"]);
    let contact = events[0]["subject_id"].as_str().unwrap().to_owned();
    // Unrelated updates (a new name, the same order again) keep the member in
    // the segment and emit nothing.
    shopify(
        &app,
        &t,
        "customers/update",
        "c-2",
        &customer(42, "2025-01-17T10:00:00-05:00", "Ana María"),
    )
    .await;
    shopify(
        &app,
        &t,
        "orders/updated",
        "o-3",
        &order(9002, 42, "300.00", "2025-01-18T11:00:00-05:00"),
    )
    .await;
    settled(&app, &t).await;
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);
    let seg_now: Value = app
        .get(
            &format!("/api/v1/segments/{}", seg["id"].as_str().unwrap()),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seg_now["member_count"], 1);
    // Cancelling an order drops the total below the threshold: out, no event.
    let mut cancelled = order(9002, 42, "300.00", "2025-01-19T11:00:00-05:00");
    cancelled["cancelled_at"] = json!("2025-01-19T11:00:00-05:00");
    shopify(&app, &t, "orders/cancelled", "o-4", &cancelled).await;
    settled(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let seg_id: Uuid = seg["id"].as_str().unwrap().parse().unwrap();
    assert!(
        !segments::is_member(&mut tx, seg_id, contact.parse().unwrap())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 1);
    // A tag webhook enters a tag segment (and only once).
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "Loyal", "rules": one("customer_tag", "is", json!("loyalty-gold"))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for (i, id) in ["t-1", "t-2"].iter().enumerate() {
        shopify(
            &app,
            &t,
            "customer_tags/added",
            id,
            &json!({"customer_id": 42, "tags_added": ["loyalty-gold"], "n": i}),
        )
        .await;
    }
    settled(&app, &t).await;
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 2);
}

/// `order_lines` (what the purchase rules read) follows the order's line
/// items, cancellation and contact through webhooks, stale updates
/// included; the contact moves in and out of brand and collection segments
/// on both evaluation paths (a webhook's probe, a preview's scan).
#[tokio::test]
async fn purchase_rules_follow_order_updates_through_order_lines() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("aud-lines").await;
    shopify(
        &app,
        &t,
        "customers/create",
        "c-1",
        &customer(42, "2025-01-15T10:00:00-05:00", "Ana"),
    )
    .await;
    settled(&app, &t).await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    catalog::set_collection_products(&mut tx, 888, &[555555])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let brand_rules = one("purchased_brand", "=", json!("nikemx"));
    let collection_rules = one("purchased_collection", "in", json!([888]));
    let mut segs = Vec::new();
    for (name, rules) in [
        ("Nike", &brand_rules),
        ("Collection 888", &collection_rules),
    ] {
        let r = app
            .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
            .json(&json!({"name": name, "rules": rules}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let seg: Value = r.json().await.unwrap();
        segs.push(seg["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let with_lines = |updated_at: &str, lines: Value| {
        let mut o = order(9001, 42, "300.00", updated_at);
        o["line_items"] = lines;
        o
    };
    let nike = json!({"id": 1, "quantity": 1, "price": "300.00", "product_id": 555555, "vendor": "NikeMX"});
    let adidas =
        json!({"id": 2, "quantity": 1, "price": "300.00", "product_id": 222, "vendor": "Adidas"});

    // (members of [brand, collection] on the webhook's path and the
    // preview's, the stored lines as (vendor, product)).
    async fn state(
        app: &TestApp,
        t: &TestTenant,
        segs: &[Uuid],
        rules: [&Value; 2],
    ) -> (Vec<bool>, Vec<bool>, Vec<(Option<String>, Option<i64>)>) {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let contact = contacts::by_shopify_id(&mut tx, 42)
            .await
            .unwrap()
            .unwrap()
            .id;
        let mut members = Vec::new();
        for s in segs {
            members.push(segments::is_member(&mut tx, *s, contact).await.unwrap());
        }
        let mut previewed = Vec::new();
        for r in rules {
            let parsed = SegmentRules::parse(r).unwrap();
            let (n, ids) = segments::preview(&mut tx, &parsed, 10, Utc::now().timestamp_millis())
                .await
                .unwrap();
            assert_eq!(n as usize, ids.len());
            previewed.push(ids == [contact]);
        }
        let (order, _, _) = orders::by_shopify_id(&mut tx, 9001).await.unwrap().unwrap();
        let lines = orders::stored_lines(&mut tx, order.id).await.unwrap();
        tx.commit().await.unwrap();
        assert!(lines.iter().all(|(c, _)| *c == contact));
        let lines = lines
            .into_iter()
            .map(|(_, l)| (l.vendor, l.shopify_product_id))
            .collect();
        (members, previewed, lines)
    }
    let nike_line = (Some("nikemx".to_owned()), Some(555555));
    let adidas_line = (Some("adidas".to_owned()), Some(222));

    shopify(
        &app,
        &t,
        "orders/create",
        "o-1",
        &with_lines("2025-01-15T11:00:00-05:00", json!([nike])),
    )
    .await;
    settled(&app, &t).await;
    let s = state(&app, &t, &segs, [&brand_rules, &collection_rules]).await;
    assert_eq!(
        s,
        (vec![true, true], vec![true, true], vec![nike_line.clone()])
    );

    // New line items: out of both.
    shopify(
        &app,
        &t,
        "orders/updated",
        "o-2",
        &with_lines("2025-01-16T11:00:00-05:00", json!([adidas])),
    )
    .await;
    settled(&app, &t).await;
    let s = state(&app, &t, &segs, [&brand_rules, &collection_rules]).await;
    assert_eq!(
        s,
        (
            vec![false, false],
            vec![false, false],
            vec![adidas_line.clone()]
        )
    );

    // A stale update (older `updated_at`) with the Nike line changes nothing.
    shopify(
        &app,
        &t,
        "orders/updated",
        "o-3",
        &with_lines("2025-01-15T12:00:00-05:00", json!([nike])),
    )
    .await;
    settled(&app, &t).await;
    let s = state(&app, &t, &segs, [&brand_rules, &collection_rules]).await;
    assert_eq!(
        s,
        (
            vec![false, false],
            vec![false, false],
            vec![adidas_line.clone()]
        )
    );

    // Two lines, one of them Nike: in again.
    shopify(
        &app,
        &t,
        "orders/updated",
        "o-4",
        &with_lines("2025-01-17T11:00:00-05:00", json!([adidas, nike])),
    )
    .await;
    settled(&app, &t).await;
    let s = state(&app, &t, &segs, [&brand_rules, &collection_rules]).await;
    assert_eq!(
        s,
        (
            vec![true, true],
            vec![true, true],
            vec![adidas_line.clone(), nike_line.clone()]
        )
    );

    // Cancelled: the order no longer counts, its lines go.
    let mut cancelled = with_lines("2025-01-18T11:00:00-05:00", json!([adidas, nike]));
    cancelled["cancelled_at"] = json!("2025-01-18T11:00:00-05:00");
    shopify(&app, &t, "orders/cancelled", "o-5", &cancelled).await;
    settled(&app, &t).await;
    let s = state(&app, &t, &segs, [&brand_rules, &collection_rules]).await;
    assert_eq!(s, (vec![false, false], vec![false, false], vec![]));
    // Entered each segment twice (created, then the two-line update).
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 4);
}

/// Shopify does not order its webhooks: orders that arrive before their
/// customer count for the contact once the customer arrives.
#[tokio::test]
async fn orders_that_arrive_before_their_customer_count_once_it_arrives() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("aud-orphans").await;
    let mut ids = Vec::new();
    for (name, rules) in [
        ("Big spenders", one("total_spent", ">", json!(500))),
        ("Nike buyers", one("purchased_brand", "=", json!("NikeMX"))),
    ] {
        let r = app
            .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
            .json(&json!({"name": name, "rules": rules}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(r.json::<Value>().await.unwrap()["id"].clone());
    }
    for (hook, id, at) in [("o-1", 9101, "2025-01-15"), ("o-2", 9102, "2025-01-16")] {
        let at = format!("{at}T11:00:00-05:00");
        shopify(
            &app,
            &t,
            "orders/create",
            hook,
            &order(id, 77, "300.00", &at),
        )
        .await;
    }
    settled(&app, &t).await;
    assert!(
        events_of(&app, &t, "USER_ADDED_TO_SEGMENT")
            .await
            .is_empty()
    );
    let c = customer(77, "2025-01-15T10:00:00-05:00", "Ana");
    shopify(&app, &t, "customers/create", "c-1", &c).await;
    settled(&app, &t).await;

    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let contact = contacts::by_shopify_id(&mut tx, 77).await.unwrap().unwrap();
    assert_eq!(
        (contact.orders_count, contact.total_spent_cents),
        (2, 60_000)
    );
    let (adopted, _) = orders::by_shopify_id(&mut tx, 9101)
        .await
        .unwrap()
        .map(|(o, ..)| (o.contact_id, o.id))
        .unwrap();
    assert_eq!(adopted, Some(contact.id));
    tx.commit().await.unwrap();
    let events = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    let mut entered: Vec<Value> = events
        .iter()
        .map(|e| e["payload"]["segment_id"].clone())
        .collect();
    entered.sort_by_key(|v| v.to_string());
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(entered, ids, "one entry per segment: {events:?}");
    // The customer's next update changes nothing more.
    let c = customer(77, "2025-01-17T10:00:00-05:00", "Ana María");
    shopify(&app, &t, "customers/update", "c-2", &c).await;
    settled(&app, &t).await;
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len(), 2);
}

#[tokio::test]
async fn time_relative_segments_are_refreshed_by_the_periodic_job() {
    let clock = Arc::new(FixedClock::new(Utc.timestamp_millis_opt(NOW).unwrap()));
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let t = app.create_tenant("aud-periodic").await;
    let fx = fixture(&app, &t).await;
    // Lapsed: last order more than 30 days ago (B only, at NOW).
    let r = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "Lapsed", "rules": one("days_since_last_order", ">", json!(30))}))
        .send()
        .await
        .unwrap();
    let seg: Value = r.json().await.unwrap();
    assert_eq!(seg["member_count"], 1);
    assert_eq!(seg["periodic"], true);
    // 25 days later A (10 → 35 days) and C (5 → 30: not yet) are checked.
    clock.advance(chrono::Duration::days(25));
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    galantis_server::jobs::enqueue(
        &mut tx,
        &galantis_server::jobs::kinds::audience::RefreshAllSegments::default(),
        galantis_core::Clock::now(&*clock),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    eventually("A enters Lapsed", || async {
        events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await.len() == 1
    })
    .await;
    let events = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    assert_eq!(events[0]["subject_id"], fx.ids["A"].to_string());
}

// ---------------------------------------------------------------------------
// CSV import
// ---------------------------------------------------------------------------

const CSV: &str = "phone,first_name,last_name,email,consent\n\
+52 1 555 000 1111,Ana,López,ana@example.mx,yes\n\
+52 1 555 000 2222,Bruno,,,\n\
5550003333,Carla,,,yes\n\
+5215550001111,Ana,Dup,,\n\
+52 1 555 000 4444,\"Dan\"iel,,,\n\
+52 1 555 000 5555,Eva,,eva@example.mx,no,extra\n";

async fn upload(app: &TestApp, t: &TestTenant, list: &str, csv: &str) -> reqwest::Response {
    app.request(
        reqwest::Method::POST,
        &format!("/api/v1/lists/{list}/imports?filename=contacts.csv"),
        &t.token,
    )
    .header("content-type", "text/csv")
    .body(csv.to_owned())
    .send()
    .await
    .unwrap()
}

async fn completed(app: &TestApp, t: &TestTenant, import: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..1200 {
        last = app
            .get(&format!("/api/v1/imports/{import}"), &t.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["status"] == "completed" {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("import never completed: {last}");
}

#[tokio::test]
async fn csv_import_reports_every_rejected_row_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("aud-csv").await;
    let list: Value = app
        .request(reqwest::Method::POST, "/api/v1/lists", &t.token)
        .json(&json!({"name": "Imported"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list_id = list["id"].as_str().unwrap().to_owned();

    // A bad header leaves nothing behind.
    let r = upload(&app, &t, &list_id, "telephone,name\n+5215550001111,x\n").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "invalid_csv");
    let imports: Value = app
        .get(&format!("/api/v1/imports?list_id={list_id}"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(imports["data"].as_array().unwrap().is_empty());

    let r = upload(&app, &t, &list_id, CSV).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let import: Value = r.json().await.unwrap();
    let done = completed(&app, &t, import["id"].as_str().unwrap()).await;
    assert_eq!(done["total_rows"], 6, "{done}");
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["rejected"], 4, "{done}");
    assert_eq!(done["added_to_list"], 2, "{done}");
    assert_eq!(done["processed_rows"], 6, "{done}");
    let report: Value = app
        .get(
            &format!("/api/v1/imports/{}/report", import["id"].as_str().unwrap()),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (4, "CUSTOMER_IS_MISSING_CALLING_CODE".to_owned()),
            (5, "duplicate_in_file".to_owned()),
            (6, "malformed_line".to_owned()),
            (7, "malformed_line".to_owned()),
        ]
    );
    assert!(
        report["data"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("line 2")
    );

    // Ana is subscribed with the import as proof; both are on the list.
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let ana = contacts::by_phone(&mut tx, "+525550001111")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ana.marketing_state, MarketingState::Subscribed);
    assert_eq!(ana.last_name.as_deref(), Some("López"));
    let history = contacts::consent_history(&mut tx, ana.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, ConsentSource::ManualImport);
    assert!(history[0].reference.as_deref().unwrap().ends_with("line:2"));
    let bruno = contacts::by_phone(&mut tx, "+525550002222")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bruno.marketing_state, MarketingState::Unknown);
    assert!(
        contacts::by_phone(&mut tx, "+525550004444")
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();
    let list_now: Value = app
        .get(&format!("/api/v1/lists/{list_id}"), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list_now["member_count"], 2);
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_LIST").await.len(), 2);

    // Re-importing the same file changes nothing.
    let r = upload(&app, &t, &list_id, CSV).await;
    let again = completed(
        &app,
        &t,
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(again["updated"], 0, "{again}");
    assert_eq!(again["unchanged"], 2, "{again}");
    assert_eq!(again["added_to_list"], 0, "{again}");
    assert_eq!(again["rejected"], 4, "{again}");
    assert_eq!(events_of(&app, &t, "USER_ADDED_TO_LIST").await.len(), 2);
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    assert_eq!(
        contacts::consent_history(&mut tx, ana.id)
            .await
            .unwrap()
            .len(),
        1
    );
    tx.commit().await.unwrap();

    // An import may not re-subscribe someone who unsubscribed.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    contacts::set_marketing_state(
        &mut tx,
        ana.id,
        MarketingState::Unsubscribed,
        ConsentSource::StopReply,
        None,
        Utc::now().timestamp_millis(),
        Utc::now().timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let r = upload(
        &app,
        &t,
        &list_id,
        "phone,first_name,consent\n+5215550001111,Ana,yes\n",
    )
    .await;
    let refused = completed(
        &app,
        &t,
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(refused["rejected"], 1, "{refused}");
    let report: Value = app
        .get(
            &format!("/api/v1/imports/{}/report", refused["id"].as_str().unwrap()),
            &t.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["data"][0]["code"], "resubscribe_requires_opt_in");
}

// ---------------------------------------------------------------------------
// Lists, estimate, contact updates
// ---------------------------------------------------------------------------

#[tokio::test]
async fn lists_members_and_the_reach_estimate() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("aud-lists").await;
    let fx = fixture(&app, &t).await;
    let post = |path: &str, body: Value| {
        app.request(reqwest::Method::POST, path, &t.token)
            .json(&body)
            .send()
    };
    // Add by id (A twice, an unknown id) and by search (everyone in MX).
    let list: Value = post("/api/v1/lists", json!({"name": "Promo"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["id"].as_str().unwrap().to_owned();
    assert_eq!(
        post("/api/v1/lists", json!({"name": "promo"}))
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
    let r: Value = post(
        &format!("/api/v1/lists/{id}/members"),
        json!({"contact_ids": [fx.ids["A"], fx.ids["A"], Uuid::now_v7()]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r, json!({"added": 1, "already_members": 0, "not_found": 1}));
    let r: Value = post(
        &format!("/api/v1/lists/{id}/members"),
        json!({"search": {"country": "MX"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // A, B, E, H live in MX (G is deleted); A was already there.
    assert_eq!(r, json!({"added": 3, "already_members": 1, "not_found": 0}));
    let events = events_of(&app, &t, "USER_ADDED_TO_LIST").await;
    assert_eq!(events.len(), 4);
    // Remove by search.
    let r: Value = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/lists/{id}/members"),
            &t.token,
        )
        .json(&json!({"search": {"tag": "gold"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["removed"], 2);
    // Promo = {B, H}; segment VIP = tag vip → {A, C}; L1 = {A, H}.
    let seg: Value = post(
        "/api/v1/segments",
        json!({"name": "VIP", "rules": one("customer_tag", "is", json!("vip"))}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let est: Value = post(
        "/api/v1/audiences/estimate",
        json!({
            "include": [{"type": "list", "id": id}, {"type": "list", "id": fx.l1}, {"type": "segment", "id": seg["id"]}],
            "exclude": [{"type": "list", "id": fx.l2}]
        }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // Memberships: Promo 2 + L1 2 + VIP 2 = 6; distinct {A, B, C, H} = 4;
    // excluded C (L2); B is not subscribed; A and H subscribed with phones.
    assert_eq!(
        est,
        json!({"included": 6, "duplicates": 2, "excluded": 1, "not_subscribed": 1,
               "unreachable": 0, "final_reach": 2})
    );
    // Resolution at send time gives the same recipients.
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let spec = store_audience::AudienceSpec {
        include_lists: vec![id.parse().unwrap(), fx.l1],
        include_segments: vec![seg["id"].as_str().unwrap().parse().unwrap()],
        exclude_lists: vec![fx.l2],
        exclude_segments: vec![],
    };
    let recipients = store_audience::resolve(&mut tx, &spec, None, 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let got: BTreeSet<String> = recipients
        .iter()
        .map(|r| fx.names[&r.contact_id].to_owned())
        .collect();
    assert_eq!(got, set("A,H"));
    // A segment on a list follows the list's membership.
    let on_promo: Value = post(
        "/api/v1/segments",
        json!({"name": "On promo", "rules": one("list", "in", json!([id]))}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(on_promo["member_count"], 2);
    post(
        &format!("/api/v1/lists/{id}/members"),
        json!({"contact_ids": [fx.ids["C"]]}),
    )
    .await
    .unwrap();
    let entered = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["subject_id"], fx.ids["C"].to_string());
    // A list used by a segment cannot be deleted.
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/lists/{id}"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Rules may not refer to unknown lists.
    let r = post(
        "/api/v1/segments",
        json!({"name": "ghost", "rules": one("list", "in", json!([Uuid::now_v7()]))}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn contact_updates_keep_consent_proof_and_write_back_to_shopify() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("aud-patch").await;
    let fx = fixture(&app, &t).await;
    let patch = |id: Uuid, body: Value| {
        app.request(
            reqwest::Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            &t.token,
        )
        .json(&body)
        .send()
    };
    // D unsubscribed: a team member may not re-subscribe them, neither with
    // a source of their own nor by claiming the customer's (forged proof).
    let r = patch(fx.ids["D"], json!({"marketing_state": "SUBSCRIBED"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "resubscribe_requires_opt_in"
    );
    let r = patch(
        fx.ids["D"],
        json!({"marketing_state": "SUBSCRIBED", "consent_source": "chat_widget", "consent_reference": "chat:123"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_field"
    );
    // F (pending) asks to stop: recorded with the member's reason as proof.
    let r = patch(
        fx.ids["F"],
        json!({"marketing_state": "UNSUBSCRIBED", "consent_reference": "asked by phone"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["marketing_state"],
        "UNSUBSCRIBED"
    );
    let view: Value = app
        .get(&format!("/api/v1/contacts/{}", fx.ids["F"]), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = view["consent_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["source"], "api");
    assert_eq!(last["reference"], "asked by phone");
    assert_eq!(last["previous_state"], "PENDING");
    // Tags: B gains "vip", which makes B enter the VIP segment.
    let seg: Value = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "VIP", "rules": one("customer_tag", "is", json!("vip"))}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seg["member_count"], 2);
    let r = patch(
        fx.ids["B"],
        json!({"add_tags": ["VIP"], "remove_tags": ["newsletter"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["VIP"]));
    let entered = events_of(&app, &t, "USER_ADDED_TO_SEGMENT").await;
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["subject_id"], fx.ids["B"].to_string());
    // Excluded from Galantis: out of every segment.
    let r = patch(fx.ids["B"], json!({"exclude_from_galantis": true}))
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["exclude_from_galantis"],
        true
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let seg_id: Uuid = seg["id"].as_str().unwrap().parse().unwrap();
    assert!(
        !segments::is_member(&mut tx, seg_id, fx.ids["B"])
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    // Both changes reach Shopify (through the write-back job).
    let fake = app
        .state
        .shopify
        .as_any()
        .downcast_ref::<RecordingShopifyClient>()
        .expect("tests record write-backs");
    eventually("write-backs", || async { fake.calls().len() >= 2 }).await;
    let calls: Vec<WriteBack> = fake.calls().into_iter().map(|(_, w)| w).collect();
    assert!(calls.contains(&WriteBack::Tags {
        customer_id: 2,
        tags: vec!["VIP".into()]
    }));
    assert!(calls.iter().any(|w| matches!(
        w,
        WriteBack::Consent {
            customer_id: 6,
            state: MarketingState::Unsubscribed,
            ..
        }
    )));
    // Invalid input changes nothing.
    for bad in [
        json!({"marketing_state": "REDACTED"}),
        json!({"marketing_state": "SUBSCRIBED", "consent_source": "redaction"}),
        json!({"tags": ["a,b"]}),
        json!({"tags": ["x"], "add_tags": ["y"]}),
    ] {
        let r = patch(fx.ids["C"], bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let r = patch(fx.ids["C"], json!({"nope": 1})).await.unwrap();
    assert!(r.status().is_client_error());
}

// ---------------------------------------------------------------------------
// Errors, roles, tenancy
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_rules_are_422_with_the_rule_path() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("aud-422").await;
    let cases = [
        (
            json!({"groups": [{"conditions": [
                {"field": "country", "operator": "=", "value": "MX"},
                {"field": "shoe_size", "operator": "=", "value": 42}]}]}),
            "groups[0].conditions[1].field",
        ),
        (
            json!({"groups": [
                {"conditions": [{"field": "country", "operator": "=", "value": "MX"}]},
                {"conditions": [{"field": "orders_count", "operator": "before", "value": 3}]}]}),
            "groups[1].conditions[0].operator",
        ),
        (
            one("total_spent", "between", json!([10])),
            "groups[0].conditions[0].value",
        ),
        (json!({"groups": []}), "groups"),
    ];
    for (rules, path) in cases {
        for (uri, body) in [
            ("/api/v1/segments", json!({"name": "x", "rules": rules})),
            ("/api/v1/segments/preview", json!({"rules": rules})),
        ] {
            let r = app
                .request(reqwest::Method::POST, uri, &t.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{uri} {rules}"
            );
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["error"]["code"], "invalid_segment_rules");
            assert!(
                b["error"]["message"].as_str().unwrap().starts_with(path),
                "{path}: {b}"
            );
        }
    }
    let segments: Value = app
        .get("/api/v1/segments", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(segments["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn roles_are_checked_and_other_tenants_ids_are_404() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("aud-roles").await;
    let other = app.create_tenant("aud-other").await;
    let fx = fixture(&app, &t).await;
    let seg: Value = app
        .request(reqwest::Method::POST, "/api/v1/segments", &t.token)
        .json(&json!({"name": "VIP", "rules": one("customer_tag", "is", json!("vip"))}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, analyst) = app.add_member(&t, Role::DataAnalyst).await;
    let (_, agent) = app.add_member(&t, Role::SupportAgent).await;
    let (_, viewer) = app.add_member(&t, Role::Viewer).await;
    let (_, marketer) = app.add_member(&t, Role::MarketingManager).await;
    let send = |m: reqwest::Method, path: String, token: &str, body: Value| {
        app.request(m, &path, token).json(&body).send()
    };
    use reqwest::Method as M;
    let checks: Vec<(M, String, &str, Value, StatusCode)> = vec![
        (
            M::GET,
            "/api/v1/segments".into(),
            &analyst,
            json!(null),
            StatusCode::OK,
        ),
        (
            M::GET,
            "/api/v1/lists".into(),
            &analyst,
            json!(null),
            StatusCode::OK,
        ),
        (
            M::POST,
            "/api/v1/lists".into(),
            &analyst,
            json!({"name": "n"}),
            StatusCode::FORBIDDEN,
        ),
        (
            M::POST,
            "/api/v1/segments/preview".into(),
            &analyst,
            json!({"rules": one("country", "=", json!("MX"))}),
            StatusCode::OK,
        ),
        (
            M::GET,
            "/api/v1/lists".into(),
            &agent,
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            M::POST,
            "/api/v1/audiences/estimate".into(),
            &agent,
            json!({"include": [{"type": "list", "id": fx.l1}]}),
            StatusCode::FORBIDDEN,
        ),
        (
            M::PATCH,
            format!("/api/v1/contacts/{}", fx.ids["A"]),
            &viewer,
            json!({"add_tags": ["x"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            M::DELETE,
            format!("/api/v1/segments/{}", seg["id"].as_str().unwrap()),
            &viewer,
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            M::POST,
            "/api/v1/lists".into(),
            &marketer,
            json!({"name": "n"}),
            StatusCode::CREATED,
        ),
        (
            M::PATCH,
            format!("/api/v1/contacts/{}", fx.ids["A"]),
            &marketer,
            json!({"add_tags": ["x"]}),
            StatusCode::OK,
        ),
        // Another tenant's owner sees none of it.
        (
            M::GET,
            format!("/api/v1/lists/{}", fx.l1),
            &other.token,
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            M::GET,
            format!("/api/v1/segments/{}", seg["id"].as_str().unwrap()),
            &other.token,
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            M::POST,
            format!("/api/v1/lists/{}/members", fx.l1),
            &other.token,
            json!({"contact_ids": [fx.ids["A"]]}),
            StatusCode::NOT_FOUND,
        ),
        (
            M::POST,
            "/api/v1/audiences/estimate".into(),
            &other.token,
            json!({"include": [{"type": "segment", "id": seg["id"]}]}),
            StatusCode::NOT_FOUND,
        ),
        (
            M::PATCH,
            format!("/api/v1/contacts/{}", fx.ids["A"]),
            &other.token,
            json!({"add_tags": ["x"]}),
            StatusCode::NOT_FOUND,
        ),
        (
            M::GET,
            format!("/api/v1/contacts?list_id={}", fx.l1),
            &other.token,
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            M::POST,
            format!("/api/v1/lists/{}/imports", fx.l1),
            &other.token,
            json!(null),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (m, path, token, body, status) in checks {
        let r = if body.is_null() {
            app.request(m.clone(), &path, token).send().await.unwrap()
        } else {
            send(m.clone(), path.clone(), token, body).await.unwrap()
        };
        assert_eq!(r.status(), status, "{m} {path}");
    }
    // The other tenant's list add changed nothing here.
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    assert_eq!(
        lists::get(&mut tx, fx.l1)
            .await
            .unwrap()
            .unwrap()
            .member_count,
        2
    );
    tx.commit().await.unwrap();
}
