//! Stats over time and engagement: replies and button clicks from a
//! recipient within 72 h after their campaign message count (once per
//! recipient); earlier, later or other people's messages do not.

use super::*;
use galantis_testkit::webhooks::meta;

fn inbound(from: &str, wamid: &str, at: DateTime<Utc>, kind: &str, body: Value) -> Value {
    let mut m =
        json!({"from": from, "id": wamid, "timestamp": at.timestamp().to_string(), "type": kind});
    m[kind] = body;
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA,
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "19990000888", "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
            "messages": [m]}}]}]})
}

async fn stats(app: &TestApp, t: &TestTenant, id: Uuid, q: &str) -> (StatusCode, Value) {
    call(
        app,
        t,
        Method::GET,
        &format!("/api/v1/campaigns/{id}/stats{q}"),
        None,
    )
    .await
}

fn sum(st: &Value, field: &str) -> i64 {
    st["timeline"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn replies_and_clicks_within_72_hours_are_attributed_and_stats_have_a_timeline() {
    let e = env("camp-stats", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 6, MarketingState::Subscribed).await;
    people(app, t, 50, 1, MarketingState::Subscribed).await;
    let l = list_of(app, t, "stats", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let (s, _) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_status(app, t, id, "SENT").await;
    let (s, st) = stats(app, t, id, "").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["engagement"]["replied"], 0, "{st}");
    assert_eq!(st["timeline"]["bucket"], "hour");
    assert_eq!(sum(&st, "sent"), 6, "{st}");
    assert_eq!(sum(&st, "delivered"), 6, "{st}");

    let sent_at = all_recipients(app, t, id)
        .await
        .iter()
        .filter_map(|r| r.sent_at)
        .max()
        .unwrap();
    let soon = sent_at + Duration::minutes(2);
    for body in [
        // Two replies from one recipient: counted once.
        inbound(&wa(0), "wamid.r0a", soon, "text", json!({"body": "hi"})),
        inbound(&wa(0), "wamid.r0b", soon, "text", json!({"body": "again"})),
        // A quick-reply button: a reply and a click.
        inbound(
            &wa(1),
            "wamid.r1",
            soon,
            "button",
            json!({"payload": "SHOP_NOW", "text": "Shop now"}),
        ),
        inbound(&wa(2), "wamid.r2", soon, "text", json!({"body": "price?"})),
        // Past the 72 h window, before the campaign, not a recipient.
        inbound(
            &wa(3),
            "wamid.late",
            sent_at + Duration::hours(73),
            "text",
            json!({"body": "late"}),
        ),
        inbound(
            &wa(4),
            "wamid.early",
            sent_at - Duration::hours(1),
            "text",
            json!({"body": "before"}),
        ),
        inbound(&wa(50), "wamid.other", soon, "text", json!({"body": "me?"})),
    ] {
        assert_eq!(meta(app, &body).await.status(), StatusCode::OK);
    }
    let mut st = Value::Null;
    for _ in 0..400 {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let n = galantis_store::tenant::messaging::inbound_detail(&mut tx, "wamid.other")
            .await
            .unwrap()
            .is_some()
            && galantis_store::tenant::messaging::inbound_detail(&mut tx, "wamid.late")
                .await
                .unwrap()
                .is_some();
        tx.commit().await.unwrap();
        st = stats(app, t, id, "?bucket=day").await.1;
        if n && st["engagement"]["replied"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(st["engagement"]["replied"], 3, "{st}");
    assert_eq!(st["engagement"]["clicked"], 1, "{st}");
    assert!(
        (st["reply_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{st}"
    );
    assert!((st["click_rate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
    assert_eq!(st["timeline"]["bucket"], "day");
    assert_eq!(sum(&st, "sent"), 6, "{st}");
    assert_eq!(sum(&st, "replied"), 3, "{st}");
    assert_eq!(sum(&st, "clicked"), 1, "{st}");
    let last = st["timeline"]["points"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        (last["delivery_rate"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{st}"
    );
    assert!(
        (last["reply_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{st}"
    );
    let day = last["at"].as_str().unwrap();
    assert!(day.contains("T00:00:00"), "UTC day buckets: {day}");

    assert_eq!(
        stats(app, t, id, "?bucket=week").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        stats(app, t, Uuid::now_v7(), "").await.0,
        StatusCode::NOT_FOUND
    );
}
