//! The queue's operator API for a tenant.

use chrono::Utc;
use galantis_core::{JobId, Role};
use galantis_server::jobs::kinds::probe::QueueProbe;
use galantis_server::jobs::{self, new_job};
use galantis_store::jobs::run;
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn stats_list_and_retry_through_the_api() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("jobs-api").await;
    let other = app.create_tenant("jobs-api-other").await;
    // One dead job, one completed job, one queued job.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let mut dying = new_job(&QueueProbe { sleep_ms: 0 }, Utc::now()).unwrap();
    dying.max_attempts = 1;
    let dead_id = galantis_store::jobs::enqueue(&mut tx, &dying)
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let claimed = run::claim(
        app.db(),
        galantis_core::Lane::Monitor,
        &["queue.probe"],
        "w",
        Utc::now(),
        1,
    )
    .await
    .unwrap();
    run::fail(app.db(), &claimed[0], Utc::now(), "boom", None)
        .await
        .unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let done_id = jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let claimed = run::claim(
        app.db(),
        galantis_core::Lane::Monitor,
        &["queue.probe"],
        "w",
        Utc::now(),
        1,
    )
    .await
    .unwrap();
    run::complete(app.db(), &claimed[0], Utc::now())
        .await
        .unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let stats: Value = app
        .get("/api/v1/jobs/stats", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let monitor = stats["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lane"] == "monitor")
        .unwrap()
        .clone();
    assert_eq!(
        (
            monitor["queued"].as_i64(),
            monitor["dead"].as_i64(),
            monitor["completed"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let theirs: Value = app
        .get("/api/v1/jobs/stats", &other.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        theirs["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["queued"] == 0 && l["dead"] == 0),
        "other tenants see nothing"
    );

    let dead: Value = app
        .get("/api/v1/jobs?state=dead", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dead["data"].as_array().unwrap().len(), 1);
    assert_eq!(dead["data"][0]["id"], dead_id.to_string());
    assert_eq!(dead["data"][0]["last_error"], "boom");

    // Pagination walks every job once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?limit=1&cursor={c}"),
            None => "/api/v1/jobs?limit=1".into(),
        };
        let page: Value = app
            .get(&path, &t.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);

    // Retry: the dead job → 200 available; again → 409; completed → 409; unknown → 404; other tenant → 404.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{dead_id}/retry"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "available");
    for (id, token, status, code) in [
        (dead_id, &t.token, StatusCode::CONFLICT, "job_not_retryable"),
        (done_id, &t.token, StatusCode::CONFLICT, "job_not_retryable"),
        (JobId::new(), &t.token, StatusCode::NOT_FOUND, "not_found"),
        (done_id, &other.token, StatusCode::NOT_FOUND, "not_found"),
    ] {
        let r = app
            .request(Method::POST, &format!("/api/v1/jobs/{id}/retry"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], code);
    }
    let r = app
        .request(Method::POST, "/api/v1/jobs/not-an-id/retry", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Bad query input.
    for bad in [
        "/api/v1/jobs?state=exploded",
        "/api/v1/jobs?cursor=%%%",
        "/api/v1/jobs?limit=abc",
        "/api/v1/jobs?bogus=1",
    ] {
        let r = app.get(bad, &t.token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let b: Value = r.json().await.unwrap();
        assert!(b["error"]["code"].is_string());
    }

    // An analyst reads but cannot retry; a viewer cannot even read.
    let (_, analyst) = app.add_member(&t, Role::Analyst).await;
    assert_eq!(
        app.get("/api/v1/jobs/stats", &analyst)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{done_id}/retry"),
            &analyst,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, viewer) = app.add_member(&t, Role::Viewer).await;
    assert_eq!(
        app.get("/api/v1/jobs/stats", &viewer)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}
