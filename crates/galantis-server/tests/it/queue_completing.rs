//! `begin_completing`: a job completed in the transaction that opens its
//! effect (one round trip fewer on PostgreSQL, ADR 0033). Commit applies
//! effect and completion together; a lost claim applies neither, and the
//! pooled connection stays usable afterwards.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use galantis_core::{Clock, FixedClock, JobKind, Lane};
use galantis_server::jobs;
use galantis_server::jobs::kinds::probe::QueueProbe;
use galantis_store::jobs::admin;
use galantis_store::jobs::run::{self, ClaimedJob};
use galantis_store::tenant::probes;
use galantis_testkit::{TestApp, TestTenant};

async fn claim_one(app: &TestApp, worker: &str, now: DateTime<Utc>) -> ClaimedJob {
    let mut claimed = run::claim(app.db(), Lane::Monitor, &[QueueProbe::KIND], worker, now, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

async fn enqueue(app: &TestApp, t: &TestTenant, at: DateTime<Utc>) -> galantis_core::JobId {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, at)
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    id
}

/// Tries to apply the probe's effect in a transaction opened completing
/// `job`; true when it committed.
async fn apply(app: &TestApp, job: &ClaimedJob, now: DateTime<Utc>) -> bool {
    let Some(mut tx) = run::begin_completing(app.db(), job, now).await.unwrap() else {
        return false; // SQLite: the claim is known lost at once
    };
    if probes::record(&mut tx, job.id, now.timestamp_millis())
        .await
        .is_err()
    {
        // PostgreSQL: the transaction turned read-only; dropping it rolls back.
        return false;
    }
    tx.commit().await.unwrap();
    true
}

#[tokio::test]
async fn a_job_completed_as_its_transaction_begins_commits_once_and_a_lost_claim_applies_nothing() {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let app = TestApp::builder()
        .without_workers()
        .clock(clock.clone())
        .spawn()
        .await;
    let t = app.create_tenant("q-completing").await;

    // Claimed, applied: effect and completion commit together.
    let id = enqueue(&app, &t, t0).await;
    let job = claim_one(&app, "node-1", clock.now()).await;
    assert!(apply(&app, &job, clock.now()).await);
    let view = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
    assert_eq!(view.state, "completed");
    // The same claim again (a duplicate delivery to the handler) is refused.
    assert!(!apply(&app, &job, clock.now()).await);

    // Claimed by a worker that vanished, rescued, and only then applied by
    // the late worker: nothing commits, the job waits for its next run.
    let id2 = enqueue(&app, &t, clock.now()).await;
    let ghost = claim_one(&app, "ghost", clock.now()).await;
    clock.advance(chrono::Duration::seconds(31));
    let r = admin::rescue(app.db(), clock.now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.retried, 1);
    assert!(!apply(&app, &ghost, clock.now()).await);
    let view = admin::get(app.db(), Some(t.id), id2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.state, "available");

    // The connections that saw the refused transactions are clean: the next
    // claim applies, and each effect counted exactly once.
    let again = claim_one(&app, "node-2", clock.now()).await;
    assert_eq!(again.id, id2);
    for _ in 0..4 {
        // Several transactions, so a pooled connection is reused.
        let mut tx = app.db().tenant_read(t.id).await.unwrap();
        probes::summary(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert!(apply(&app, &again, clock.now()).await);
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let s = probes::summary(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((s.jobs, s.runs, s.repeated), (2, 2, 0));
}
