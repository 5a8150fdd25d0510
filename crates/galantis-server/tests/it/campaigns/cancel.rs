//! Cancel withdraws what is queued but not yet sent; the campaign's number
//! must be one of the store's connected numbers.

use super::*;
use galantis_store::tenant::sending;

async fn queued_messages(app: &TestApp, t: &TestTenant, id: Uuid) -> Vec<Uuid> {
    all_recipients(app, t, id)
        .await
        .into_iter()
        .filter(|r| r.status == "QUEUED")
        .filter_map(|r| r.message_id)
        .collect()
}

/// The number paces sends at 1/s under a fixed clock, so the dispatcher's
/// lead stays queued: cancel withdraws it (each recipient `SKIPPED` with
/// `campaign_cancelled`), and advancing the clock sends nothing more.
#[tokio::test]
async fn cancel_withdraws_queued_messages_that_were_not_yet_sent() {
    let clock = Arc::new(FixedClock::new(
        "2026-03-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap(),
    ));
    let e = env(
        "camp-cancel",
        Opts {
            galantis_mps: 1,
            clock: Some(clock),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 8, MarketingState::Subscribed).await;
    let l = list_of(app, t, "cancel", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    app.run_jobs_until_idle().await;
    let sent_before = e.sb.counters().accepted;
    let queued = queued_messages(app, t, id).await;
    assert!(
        !queued.is_empty(),
        "the dispatcher keeps a lead queued ahead of the paced sends"
    );
    assert!(sent_before < 8);

    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "CANCELLED");
    for _ in 0..10 {
        app.advance_clock_and_run(Duration::seconds(5)).await;
    }
    let k = e.sb.counters();
    assert_eq!(k.accepted, sent_before, "nothing goes out after the cancel");
    let rs = all_recipients(app, t, id).await;
    assert_eq!(rs.len(), 8);
    let skipped: Vec<_> = rs.iter().filter(|r| r.status == "SKIPPED").collect();
    assert_eq!(skipped.len() as u64, 8 - sent_before, "{rs:?}");
    for r in &skipped {
        assert_eq!(r.error_code.as_deref(), Some("campaign_cancelled"), "{r:?}");
        assert!(
            r.error_reason
                .as_deref()
                .is_some_and(|s| s.contains("cancelled"))
        );
    }
    assert_eq!(
        rs.iter().filter(|r| r.status != "SKIPPED").count() as u64,
        sent_before,
        "what was sent stays sent: {rs:?}"
    );
    // A send job that read a withdrawn message before the cancel cannot
    // claim it afterwards: it completes without calling Meta.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    for m in &queued {
        assert!(
            !sending::mark_sending(&mut tx, *m, 1).await.unwrap(),
            "a withdrawn message is never claimed for sending"
        );
    }
    tx.rollback().await.unwrap();
    let (_, st) = call(
        app,
        t,
        Method::GET,
        &format!("/api/v1/campaigns/{id}/stats"),
        None,
    )
    .await;
    assert_eq!(st["counts"]["skipped"], 8 - sent_before as i64, "{st}");
    assert_eq!(st["counts"]["failed"], 0, "{st}");
    assert_eq!(
        st["failures_by_reason"][0]["error_code"], "campaign_cancelled",
        "{st}"
    );
}

#[tokio::test]
async fn phone_number_id_must_be_a_connected_number() {
    let e = env("camp-number", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 1, MarketingState::Subscribed).await;
    let l = list_of(app, t, "n", &ids).await;
    let mut body = promo(tpl, &[l], &[]);
    body["phone_number_id"] = json!("999999999999999");
    let (s, err) = call(
        app,
        t,
        Method::POST,
        "/api/v1/campaigns",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "unknown_phone_number", "{err}");
    let (_, list) = call(app, t, Method::GET, "/api/v1/campaigns", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing created");

    body["phone_number_id"] = json!(NUMBER);
    let id = create(app, t, body).await;
    let (s, err) = call(
        app,
        t,
        Method::PATCH,
        &format!("/api/v1/campaigns/{id}"),
        Some(json!({"phone_number_id": "999999999999999"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "unknown_phone_number", "{err}");
    assert_eq!(campaign(app, t, id).await["phone_number_id"], NUMBER);
    // Another tenant's number is not this store's either.
    let other = app.create_tenant("camp-number-other").await;
    let (s, err) = call(
        app,
        &other,
        Method::POST,
        "/api/v1/campaigns",
        Some(json!({"name": "x", "template_id": tpl, "phone_number_id": NUMBER})),
    )
    .await;
    assert!(s.is_client_error(), "{s} {err}");
}
