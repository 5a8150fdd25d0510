//! Time: the send window, the missed-schedule grace, overlapping starts,
//! and pause, resume and cancel.

use super::*;

fn fixed(at: &str) -> Arc<FixedClock> {
    Arc::new(FixedClock::new(at.parse::<DateTime<Utc>>().unwrap()))
}

async fn messages_count(app: &TestApp, t: &TestTenant) -> i64 {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let n = galantis_store::tenant::sending::list_outbound(
        &mut tx,
        &galantis_store::tenant::sending::OutboundFilter {
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .len() as i64;
    tx.commit().await.unwrap();
    n
}

/// Launched at 03:00 in Mexico City with a 09:00–21:00 window: nothing is
/// resolved or queued until the window opens (fixed clock), then all is.
#[tokio::test]
async fn a_closed_send_window_holds_dispatch_until_it_opens() {
    let clock = fixed("2026-03-10T09:00:00Z"); // 03:00 in Mexico City
    let e = env(
        "camp-window",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 5, MarketingState::Subscribed).await;
    let l = list_of(app, t, "w", &ids).await;
    let mut body = promo(tpl, &[l], &[]);
    body["send_window"] =
        json!({"start": "09:00", "end": "21:00", "timezone": "America/Mexico_City"});
    let id = create(app, t, body).await;
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
    app.advance_clock_and_run(Duration::hours(5)).await; // 08:00 local
    assert_eq!(messages_count(app, t).await, 0);
    assert!(all_recipients(app, t, id).await.is_empty());
    assert_eq!(campaign(app, t, id).await["status"], "PENDING");
    // 09:00 local: the window opens and the campaign goes out.
    app.advance_clock_and_run(Duration::hours(1)).await;
    for _ in 0..20 {
        if messages_count(app, t).await == 5 {
            break;
        }
        app.advance_clock_and_run(Duration::seconds(1)).await;
    }
    assert_eq!(messages_count(app, t).await, 5);
    assert_eq!(all_recipients(app, t, id).await.len(), 5);
}

/// The scheduled start runs at its time; one whose time passed while no
/// node ran starts within the grace and is cancelled with
/// `missed_schedule` past it.
#[tokio::test]
async fn a_missed_schedule_starts_within_the_grace_and_is_cancelled_past_it() {
    let clock = fixed("2026-03-10T12:00:00Z");
    let e = env(
        "camp-missed",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 2, MarketingState::Subscribed).await;
    let l = list_of(app, t, "m", &ids).await;
    let mut within = promo(tpl, &[l], &[]);
    within["scheduled_at"] = json!("2026-03-10T13:00:00Z");
    let within = create(app, t, within).await;
    let mut late = promo(tpl, &[l], &[]);
    late["scheduled_at"] = json!("2026-03-10T12:30:00Z");
    let late = create(app, t, late).await;
    assert_eq!(campaign(app, t, within).await["status"], "SCHEDULED");
    // Nothing before its time.
    app.run_jobs_until_idle().await;
    assert_eq!(campaign(app, t, within).await["status"], "SCHEDULED");
    assert_eq!(campaign(app, t, late).await["status"], "SCHEDULED");

    // No node ran until 18:59: 5 h 59 min after the first's time (within
    // the 6 h grace), 6 h 29 min after the second's (past it).
    clock.advance(Duration::minutes(6 * 60 + 59));
    app.run_jobs_until_idle().await;
    let c = campaign(app, t, within).await;
    assert!(c["status"] == "PENDING" || c["status"] == "SENT", "{c}");
    assert!(c["launched_at"].is_string());
    assert!(c["cancel_reason"].is_null());
    let c = campaign(app, t, late).await;
    assert_eq!(c["status"], "CANCELLED", "{c}");
    assert_eq!(c["cancel_reason"], "missed_schedule");
    assert!(c["launched_at"].is_null());
}

/// Two launches at the same moment (two nodes' scheduled starts): one
/// dispatch, each recipient once.
#[tokio::test]
async fn two_overlapping_starts_launch_one_dispatch() {
    let e = env("camp-overlap", Opts::default(), |_| {}).await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 6, MarketingState::Subscribed).await;
    let l = list_of(app, t, "o", &ids).await;
    let mut body = promo(tpl, &[l], &[]);
    body["scheduled_at"] = json!((app.state.clock.now() + Duration::hours(1)).to_rfc3339());
    let id = create(app, t, body).await;
    let start = || async {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        let c = cstore::get(&mut tx, id).await.unwrap().unwrap();
        let r = start_in(
            &mut tx,
            &c,
            &[CampaignStatus::Scheduled],
            app.state.clock.now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        r
    };
    let (a, b) = tokio::join!(start(), start());
    let launched = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Started::Launched))
        .count();
    assert_eq!(launched, 1, "{a:?} {b:?}");
    // And two HTTP launches after it: both 409.
    for _ in 0..2 {
        assert_eq!(
            call(
                app,
                t,
                Method::POST,
                &format!("/api/v1/campaigns/{id}/launch"),
                None
            )
            .await
            .0,
            StatusCode::CONFLICT
        );
    }
    wait_status(app, t, id, "SENT").await;
    let k = e.sb.counters();
    assert_eq!(k.accepted, 6);
    assert!(k.accepted_by_recipient.values().all(|n| *n == 1));
}

/// A contact who unsubscribes after the audience was resolved is SKIPPED
/// with `CUSTOMER_IS_NOT_OPTED_IN`; the others still go out. Pause stops
/// dispatch, resume continues it, cancel stops it for good.
#[tokio::test]
async fn unsubscribed_after_launch_is_skipped_and_pause_resume_cancel_control_dispatch() {
    let clock = fixed("2026-03-10T12:00:00Z");
    let e = env(
        "camp-control",
        Opts {
            clock: Some(clock.clone()),
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 100).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, 6, MarketingState::Subscribed).await;
    let l = list_of(app, t, "c", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // The dispatcher's first step: resolution. Then a contact opts out.
    let c = {
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        let c = cstore::get(&mut tx, id).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        c
    };
    galantis_server::campaigns::dispatch::resolve(&app.state, t.id, &c, app.state.clock.now())
        .await
        .unwrap();
    assert_eq!(all_recipients(app, t, id).await.len(), 6);
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    contacts::set_marketing_state(
        &mut tx,
        ids[3],
        MarketingState::Unsubscribed,
        ConsentSource::StopReply,
        None,
        2,
        2,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Paused before any batch: nothing is queued.
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "PAUSED");
    app.run_jobs_until_idle().await;
    assert_eq!(messages_count(app, t).await, 0);
    // Resumed: everyone but the opted-out contact is queued and sent.
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    for _ in 0..30 {
        app.advance_clock_and_run(Duration::seconds(1)).await;
        if campaign(app, t, id).await["status"] == "SENT" {
            break;
        }
    }
    assert_eq!(messages_count(app, t).await, 5);
    let rs = all_recipients(app, t, id).await;
    let skipped: Vec<_> = rs.iter().filter(|r| r.status == "SKIPPED").collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].contact_id, ids[3]);
    assert_eq!(
        skipped[0].error_code.as_deref(),
        Some("CUSTOMER_IS_NOT_OPTED_IN")
    );

    // Cancel before dispatch: nothing is ever queued.
    let id2 = create(app, t, promo(tpl, &[l], &[])).await;
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id2}/launch"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id2}/cancel"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["cancel_reason"], "cancelled_by_member");
    app.advance_clock_and_run(Duration::seconds(5)).await;
    assert_eq!(messages_count(app, t).await, 5);
    assert_eq!(
        call(
            app,
            t,
            Method::POST,
            &format!("/api/v1/campaigns/{id2}/resume"),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
}
