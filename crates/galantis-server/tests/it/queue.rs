//! The durable queue, driven directly: exactly-once under concurrency,
//! retry schedules on a fake clock, unique keys, transactional enqueue,
//! lane isolation, rescue and shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use galantis_core::{Clock, FixedClock, JobKind, JobState, Lane, RetrySchedule, UniqueScope};
use galantis_server::config::QueueConfig;
use galantis_server::jobs::kinds::probe::QueueProbe;
use galantis_server::jobs::worker::Worker;
use galantis_server::jobs::{self, JobContext, JobError, Registry};
use galantis_store::jobs::admin;
use galantis_store::tenant::probes;
// `eventually` lives in the testkit; re-exported for tests that still
// import it from here.
pub(crate) use galantis_testkit::eventually;
use galantis_testkit::{TestApp, TestTenant};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

fn only(lanes: &[(Lane, usize)]) -> QueueConfig {
    let mut q = QueueConfig::default();
    for lane in Lane::ALL {
        let n = lanes
            .iter()
            .find(|(l, _)| *l == lane)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        match lane {
            Lane::Ingest => q.concurrency.ingest = n,
            Lane::Messages => q.concurrency.messages = n,
            Lane::Flows => q.concurrency.flows = n,
            Lane::Campaigns => q.concurrency.campaigns = n,
            Lane::Sync => q.concurrency.sync = n,
            Lane::Monitor => q.concurrency.monitor = n,
            Lane::Compliance => q.concurrency.compliance = n,
        }
    }
    q.poll_interval_ms = 50;
    q.heartbeat_interval_secs = 1;
    q.heartbeat_timeout_secs = 5;
    q
}

struct Running {
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn start(app: &TestApp, registry: &Registry, n: usize, config: QueueConfig) -> Self {
        let (stop, rx) = watch::channel(false);
        let handles = (0..n)
            .map(|_| {
                let w =
                    Worker::new(app.state.clone(), registry.clone()).with_config(config.clone());
                tokio::spawn(w.run(rx.clone()))
            })
            .collect();
        Self { stop, handles }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

async fn probe_summary(app: &TestApp, t: &TestTenant) -> probes::ProbeSummary {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let s = probes::summary(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    s
}

async fn lane_stats(app: &TestApp, t: &TestTenant, lane: Lane) -> admin::LaneStats {
    admin::stats(app.db(), Some(t.id), Utc::now())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.lane == lane.as_str())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_run_ten_thousand_jobs_exactly_once() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-ten-k").await;
    for _ in 0..20 {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        for _ in 0..500 {
            jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let workers = Running::start(&app, &Registry::builtin(), 4, only(&[(Lane::Monitor, 4)]));
    eventually("10,000 probes applied", || async {
        probe_summary(&app, &t).await.jobs == 10_000
    })
    .await;
    workers.stop().await;
    let s = probe_summary(&app, &t).await;
    assert_eq!(s.runs, 10_000, "no effect applied twice");
    assert_eq!(s.repeated, 0);
    let stats = lane_stats(&app, &t, Lane::Monitor).await;
    assert_eq!(
        (stats.queued, stats.running, stats.scheduled, stats.dead),
        (0, 0, 0, 0),
        "nothing left claimed"
    );
    assert_eq!(stats.completed, 10_000);
}

#[derive(Serialize, Deserialize)]
struct Flaky {
    fail_times: u32,
}

impl JobKind for Flaky {
    const KIND: &'static str = "test.flaky";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 5;
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(10),
        factor: 3.0,
        cap: Duration::from_secs(3600),
        jitter: 0.25,
    };
}

#[tokio::test]
async fn a_job_failing_twice_then_succeeding_runs_three_times_on_its_schedule() {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let app = TestApp::builder()
        .without_workers()
        .clock(clock.clone())
        .spawn()
        .await;
    let t = app.create_tenant("q-flaky").await;
    let runs: Arc<Mutex<Vec<DateTime<Utc>>>> = Arc::default();
    let mut registry = Registry::default();
    let seen = runs.clone();
    registry.register::<Flaky, _, _>(move |ctx: JobContext, job: Flaky| {
        let seen = seen.clone();
        async move {
            let n = {
                let mut v = seen.lock().unwrap();
                v.push(ctx.now());
                v.len() as u32
            };
            if n <= job.fail_times {
                Err(JobError::Retry(anyhow::anyhow!("boom {n}")))
            } else {
                Ok(())
            }
        }
    });
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = jobs::enqueue(&mut tx, &Flaky { fail_times: 2 }, t0)
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let workers = Running::start(&app, &registry, 1, only(&[(Lane::Sync, 1)]));

    let mut expected = vec![t0];
    for attempt in 1..=2u32 {
        eventually("the attempt ran and was rescheduled", || async {
            let j = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
            j.state == "available" && j.attempt == i64::from(attempt)
        })
        .await;
        let job = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
        let delay = Flaky::RETRY.delay(attempt, id.as_uuid().as_u128());
        let due = *expected.last().unwrap() + chrono::Duration::from_std(delay).unwrap();
        assert_eq!(
            job.run_at.timestamp_millis(),
            due.timestamp_millis(),
            "attempt {attempt} rescheduled per the schedule"
        );
        assert_eq!(
            runs.lock().unwrap().len(),
            attempt as usize,
            "does not run before it is due"
        );
        clock.set(due);
        app.db().wake_lane(Lane::Sync);
        expected.push(due);
    }
    eventually("third attempt succeeded", || async {
        admin::get(app.db(), Some(t.id), id)
            .await
            .unwrap()
            .unwrap()
            .state
            == "completed"
    })
    .await;
    workers.stop().await;
    let ran = runs.lock().unwrap().clone();
    let ran_ms: Vec<i64> = ran.iter().map(|d| d.timestamp_millis()).collect();
    let expected_ms: Vec<i64> = expected.iter().map(|d| d.timestamp_millis()).collect();
    assert_eq!(
        ran_ms, expected_ms,
        "ran exactly three times, at the scheduled times"
    );
    let job = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
    let errors = job.errors.as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["error"], "boom 1");
    assert_eq!(errors[1]["error"], "boom 2");
    assert_eq!(job.attempt, 3);
}

#[derive(Serialize, Deserialize)]
struct Unique {
    key: String,
}

impl JobKind for Unique {
    const KIND: &'static str = "test.unique";
    const LANE: Lane = Lane::Sync;
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::WhileActive;
    fn unique_key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_unique_job_enqueued_concurrently_exists_once() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-unique").await;
    let other = app.create_tenant("q-unique-other").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = app.db().clone();
        let tenant = t.id;
        tasks.push(tokio::spawn(async move {
            let mut tx = db.tenant_tx(tenant).await.unwrap();
            let r = jobs::enqueue(
                &mut tx,
                &Unique {
                    key: "campaign-7".into(),
                },
                Utc::now(),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            r
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    let created = ids
        .iter()
        .filter(|r| matches!(r, galantis_store::jobs::Enqueued::Created(_)))
        .count();
    assert_eq!(created, 1);
    assert!(ids.iter().all(|r| r.id() == ids[0].id()));
    let listed = admin::list(app.db(), Some(t.id), None, None, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // Keys are per tenant.
    let mut tx = app.db().tenant_tx(other.id).await.unwrap();
    let r = jobs::enqueue(
        &mut tx,
        &Unique {
            key: "campaign-7".into(),
        },
        Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(r, galantis_store::jobs::Enqueued::Created(_)));

    // WhileActive: once the job completes the key is free again.
    let mut registry = Registry::default();
    registry.register::<Unique, _, _>(|_ctx, _job| async { Ok(()) });
    let workers = Running::start(&app, &registry, 1, only(&[(Lane::Sync, 1)]));
    eventually("unique job done", || async {
        admin::get(app.db(), Some(t.id), ids[0].id())
            .await
            .unwrap()
            .unwrap()
            .state
            == "completed"
    })
    .await;
    workers.stop().await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let again = jobs::enqueue(
        &mut tx,
        &Unique {
            key: "campaign-7".into(),
        },
        Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(again, galantis_store::jobs::Enqueued::Created(_)));
}

#[tokio::test]
async fn a_rolled_back_enqueue_leaves_no_job() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-rollback").await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    galantis_store::tenant::settings::put(&mut tx, "k", &serde_json::json!(1))
        .await
        .unwrap();
    jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, Utc::now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        admin::list(app.db(), Some(t.id), None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = lane_stats(&app, &t, Lane::Monitor).await;
    assert_eq!(stats.queued, 0);
}

#[derive(Serialize, Deserialize)]
struct Bulk;
impl JobKind for Bulk {
    const KIND: &'static str = "test.bulk";
    const LANE: Lane = Lane::Campaigns;
}

#[derive(Serialize, Deserialize)]
struct Urgent;
impl JobKind for Urgent {
    const KIND: &'static str = "test.urgent";
    const LANE: Lane = Lane::Ingest;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_in_campaigns_does_not_delay_ingest() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-flood").await;
    for _ in 0..10 {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        for _ in 0..5_000 {
            jobs::enqueue(&mut tx, &Bulk, Utc::now()).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    // Enqueued last, so in a single shared queue it would run last.
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    jobs::enqueue(&mut tx, &Urgent, Utc::now()).await.unwrap();
    tx.commit().await.unwrap();

    let bulk_done = Arc::new(AtomicU64::new(0));
    let seen_at_urgent = Arc::new(AtomicU64::new(u64::MAX));
    let mut registry = Registry::default();
    let b = bulk_done.clone();
    registry.register::<Bulk, _, _>(move |_ctx, _job| {
        let b = b.clone();
        async move {
            b.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let (b, s) = (bulk_done.clone(), seen_at_urgent.clone());
    registry.register::<Urgent, _, _>(move |_ctx, _job| {
        let (b, s) = (b.clone(), s.clone());
        async move {
            s.store(b.load(Ordering::SeqCst), Ordering::SeqCst);
            Ok(())
        }
    });
    let workers = Running::start(
        &app,
        &registry,
        1,
        only(&[(Lane::Campaigns, 2), (Lane::Ingest, 1)]),
    );
    eventually("urgent ran", || async {
        seen_at_urgent.load(Ordering::SeqCst) != u64::MAX
    })
    .await;
    workers.stop().await;
    let before = seen_at_urgent.load(Ordering::SeqCst);
    assert!(
        before < 1_000,
        "ingest waited behind {before} campaign jobs of 50,000"
    );
    assert!(
        bulk_done.load(Ordering::SeqCst) < 50_000,
        "the flood was still going on"
    );
}

#[derive(Serialize, Deserialize)]
struct Outcomes {
    mode: String,
}

impl JobKind for Outcomes {
    const KIND: &'static str = "test.outcomes";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 2;
    const TIMEOUT: Duration = Duration::from_millis(300);
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_millis(10));
}

#[tokio::test]
async fn permanent_errors_die_at_once_snoozes_do_not_spend_attempts_and_timeouts_retry() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-outcomes").await;
    let snoozed = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::default();
    let sn = snoozed.clone();
    registry.register::<Outcomes, _, _>(move |_ctx, job: Outcomes| {
        let sn = sn.clone();
        async move {
            match job.mode.as_str() {
                "permanent" => Err(JobError::Permanent(anyhow::anyhow!("cannot ever work"))),
                "snooze" if sn.fetch_add(1, Ordering::SeqCst) < 3 => {
                    Err(JobError::Snooze(Duration::from_millis(1)))
                }
                "snooze" => Ok(()),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                }
                "panic" => panic!("handler bug"),
                _ => Ok(()),
            }
        }
    });
    let mut ids = Vec::new();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    for mode in ["permanent", "snooze", "slow", "panic"] {
        ids.push(
            jobs::enqueue(&mut tx, &Outcomes { mode: mode.into() }, Utc::now())
                .await
                .unwrap()
                .id(),
        );
    }
    // A payload that is not an Outcomes at all.
    let mut bad = jobs::new_job(&Outcomes { mode: "x".into() }, Utc::now()).unwrap();
    bad.payload = serde_json::json!({"nope": true});
    ids.push(
        galantis_store::jobs::enqueue(&mut tx, &bad)
            .await
            .unwrap()
            .id(),
    );
    tx.commit().await.unwrap();
    let workers = Running::start(&app, &registry, 1, only(&[(Lane::Flows, 4)]));
    let get = |id| {
        let db = app.db().clone();
        let tenant = t.id;
        async move { admin::get(&db, Some(tenant), id).await.unwrap().unwrap() }
    };
    eventually("all settled", || async {
        let mut done = true;
        for id in &ids {
            done &= matches!(get(*id).await.state.as_str(), "completed" | "dead");
        }
        done
    })
    .await;
    workers.stop().await;
    let permanent = get(ids[0]).await;
    assert_eq!((permanent.state.as_str(), permanent.attempt), ("dead", 1));
    assert_eq!(permanent.last_error.as_deref(), Some("cannot ever work"));
    let snooze = get(ids[1]).await;
    assert_eq!(
        (snooze.state.as_str(), snooze.attempt),
        ("completed", 1),
        "snoozes spent no attempt"
    );
    let slow = get(ids[2]).await;
    assert_eq!((slow.state.as_str(), slow.attempt), ("dead", 2));
    assert!(slow.last_error.unwrap().contains("timed out"));
    let panicked = get(ids[3]).await;
    assert_eq!((panicked.state.as_str(), panicked.attempt), ("dead", 2));
    assert!(panicked.last_error.unwrap().contains("panicked"));
    let bad = get(ids[4]).await;
    assert_eq!((bad.state.as_str(), bad.attempt), ("dead", 1));
    assert!(bad.last_error.unwrap().contains("payload"));

    // Dead jobs can be retried by hand and then run again.
    let retried = admin::retry_dead(app.db(), Some(t.id), ids[0], Utc::now())
        .await
        .unwrap();
    assert_eq!((retried.state.as_str(), retried.attempt), ("available", 0));
    assert!(matches!(
        admin::retry_dead(app.db(), Some(t.id), ids[1], Utc::now()).await,
        Err(admin::RetryError::NotRetryable(_))
    ));
}

#[tokio::test]
async fn a_job_whose_worker_vanished_is_rescued_and_dies_after_its_last_attempt() {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let app = TestApp::builder()
        .without_workers()
        .clock(clock.clone())
        .spawn()
        .await;
    let t = app.create_tenant("q-rescue").await;
    let mut job = jobs::new_job(&QueueProbe { sleep_ms: 0 }, t0).unwrap();
    job.max_attempts = 2;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = galantis_store::jobs::enqueue(&mut tx, &job)
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let timeout = Duration::from_secs(30);
    for attempt in 1..=2 {
        // A worker claims it and dies (never heartbeats, never finishes).
        let claimed = galantis_store::jobs::run::claim(
            app.db(),
            Lane::Monitor,
            &[QueueProbe::KIND],
            "ghost",
            clock.now(),
            10,
        )
        .await
        .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempt, attempt);
        let r = admin::rescue(app.db(), clock.now(), timeout, &[])
            .await
            .unwrap();
        assert_eq!(r.retried + r.dead, 0, "not before the heartbeat timeout");
        clock.advance(chrono::Duration::seconds(31));
        // A node never rescues the jobs its own worker still runs, however
        // late their heartbeat (it can wait behind SQLite's one writer).
        let live = [(Some(t.id), id)];
        let r = admin::rescue(app.db(), clock.now(), timeout, &live)
            .await
            .unwrap();
        assert_eq!(r.retried + r.dead, 0, "a live job is spared");
        let view = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
        assert_eq!(view.state, "running");
        let r = admin::rescue(app.db(), clock.now(), timeout, &[])
            .await
            .unwrap();
        let view = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
        if attempt == 1 {
            assert_eq!(r.retried, 1);
            assert_eq!(view.state, "available");
        } else {
            assert_eq!(r.dead, 1);
            assert_eq!(view.state, "dead");
        }
        assert!(view.last_error.unwrap().contains("worker lost"));
        // The ghost's late completion is refused.
        assert!(
            !galantis_store::jobs::run::complete(app.db(), &claimed[0], clock.now())
                .await
                .unwrap()
        );
    }
    let dead = admin::list(app.db(), Some(t.id), Some(JobState::Dead), None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
}

#[derive(Serialize, Deserialize)]
struct Long;
impl JobKind for Long {
    const KIND: &'static str = "test.long";
    const LANE: Lane = Lane::Sync;
}

#[tokio::test]
async fn shutdown_releases_jobs_that_did_not_finish_in_the_grace_period() {
    let app = TestApp::builder()
        .config(|c| c.shutdown_grace_secs = 1)
        .without_workers()
        .spawn()
        .await;
    let t = app.create_tenant("q-shutdown").await;
    let mut registry = Registry::default();
    registry.register::<Long, _, _>(|_ctx, _job| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    });
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = jobs::enqueue(&mut tx, &Long, Utc::now())
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let workers = Running::start(&app, &registry, 1, only(&[(Lane::Sync, 1)]));
    eventually("long job running", || async {
        admin::get(app.db(), Some(t.id), id)
            .await
            .unwrap()
            .unwrap()
            .state
            == "running"
    })
    .await;
    workers.stop().await;
    let view = admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap();
    assert_eq!(view.state, "available", "released for another worker");
    assert_eq!(view.attempt, 0, "the interrupted run is not counted");
}

/// A kind only some nodes know, in the probe's lane.
#[derive(Serialize, Deserialize)]
struct OtherMonitor;

impl JobKind for OtherMonitor {
    const KIND: &'static str = "test.other_monitor";
    const LANE: Lane = Lane::Monitor;
}

async fn enqueue_probe(app: &TestApp, t: &TestTenant, at: DateTime<Utc>) -> galantis_core::JobId {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = jobs::enqueue(&mut tx, &QueueProbe { sleep_ms: 0 }, at)
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn a_node_without_a_kinds_handler_leaves_its_jobs_pending_and_a_node_with_it_runs_them() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("q-by-kind").await;
    let probe = enqueue_probe(&app, &t, Utc::now()).await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let other = jobs::enqueue(&mut tx, &OtherMonitor, Utc::now())
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();

    // An older node: it runs the monitor lane, but knows only the other kind.
    let mut old = Registry::default();
    old.register::<OtherMonitor, _, _>(|_ctx, _job| async { Ok(()) });
    assert_eq!(old.kinds_in(Lane::Monitor), vec![OtherMonitor::KIND]);
    let workers = Running::start(&app, &old, 1, only(&[(Lane::Monitor, 1)]));
    eventually("the known kind ran", || async {
        admin::get(app.db(), Some(t.id), other)
            .await
            .unwrap()
            .unwrap()
            .state
            == "completed"
    })
    .await;
    // Its lane loop has claimed since, and a drain on it finds nothing.
    let drained = Worker::new(app.state.clone(), old.clone())
        .run_until_idle(100)
        .await
        .unwrap();
    workers.stop().await;
    assert_eq!(drained, 0);
    let view = admin::get(app.db(), Some(t.id), probe)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (view.state.as_str(), view.attempt, view.last_error),
        ("available", 0, None),
        "left pending, untouched, for a node that has the handler"
    );
    assert_eq!(probe_summary(&app, &t).await.jobs, 0);

    // A node with the handler runs it.
    let drained = app.run_jobs_until_idle().await;
    assert_eq!(drained.ran, 1);
    let view = admin::get(app.db(), Some(t.id), probe)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((view.state.as_str(), view.attempt), ("completed", 1));
    let s = probe_summary(&app, &t).await;
    assert_eq!((s.jobs, s.runs), (1, 1));
}

#[tokio::test]
async fn run_jobs_until_idle_runs_a_delayed_job_only_once_the_clock_reaches_it() {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let app = TestApp::builder()
        .without_workers()
        .fixed_clock(clock.clone())
        .spawn()
        .await;
    let t = app.create_tenant("q-drain-delay").await;
    let now = enqueue_probe(&app, &t, t0).await;
    let later = enqueue_probe(&app, &t, t0 + chrono::Duration::hours(1)).await;
    let state = |id| {
        let app = &app;
        let t = &t;
        async move {
            admin::get(app.db(), Some(t.id), id)
                .await
                .unwrap()
                .unwrap()
                .state
        }
    };

    assert_eq!(app.run_jobs_until_idle().await.ran, 1, "only the due job");
    assert_eq!(state(now).await, "completed");
    assert_eq!(state(later).await, "available");
    assert_eq!(app.run_jobs_until_idle().await.ran, 0, "idle is idle");

    let drained = app
        .advance_clock_and_run(chrono::Duration::minutes(59))
        .await;
    assert_eq!(drained.ran, 0, "not before it is due");
    assert_eq!(state(later).await, "available");

    let drained = app
        .advance_clock_and_run(chrono::Duration::minutes(1))
        .await;
    assert_eq!(drained.ran, 1);
    assert_eq!(state(later).await, "completed");
    let s = probe_summary(&app, &t).await;
    assert_eq!((s.jobs, s.runs), (2, 2));
    // The store stamps its rows by the same clock.
    let view = admin::get(app.db(), Some(t.id), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.created_at, t0);
    assert_eq!(view.finished_at, Some(t0 + chrono::Duration::hours(1)));
}

#[derive(Serialize, Deserialize)]
struct Doomed;

impl JobKind for Doomed {
    const KIND: &'static str = "test.doomed";
    const LANE: Lane = Lane::Sync;
}

#[tokio::test]
async fn a_drain_that_ends_with_dead_jobs_fails_and_lists_them() {
    let mut registry = Registry::builtin();
    registry.register::<Doomed, _, _>(|_ctx, _job| async {
        Err(JobError::Permanent(anyhow::anyhow!("cannot ever work")))
    });
    let app = TestApp::builder()
        .without_workers()
        .registry(registry)
        .spawn()
        .await;
    let t = app.create_tenant("q-drain-dead").await;
    enqueue_probe(&app, &t, Utc::now()).await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let id = jobs::enqueue(&mut tx, &Doomed, Utc::now())
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();

    let dead = app.try_run_jobs_until_idle().await.unwrap_err();
    assert_eq!(dead.0.len(), 1);
    assert_eq!(dead.0[0].id, id);
    let text = dead.to_string();
    assert!(
        text.contains("test.doomed") && text.contains("cannot ever work"),
        "{text}"
    );
    assert_eq!(probe_summary(&app, &t).await.jobs, 1, "the rest still ran");
    let panicked = tokio::spawn(async move {
        app.run_jobs_until_idle().await;
    })
    .await;
    assert!(panicked.is_err(), "run_jobs_until_idle fails on dead jobs");
}

/// Other nodes hear of a committed enqueue through PostgreSQL's NOTIFY,
/// sent after the commit (ADR 0040: no data transaction takes PostgreSQL's
/// notification lock), and never of a rolled-back one.
#[tokio::test]
async fn other_nodes_hear_of_committed_enqueues_only() {
    let app = TestApp::builder().without_workers().spawn().await;
    let Some(pool) = app.db().pg_pool() else {
        return;
    };
    let t = app.create_tenant("q-notify").await;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .unwrap();
    listener
        .listen(galantis_store::jobs::JOBS_CHANNEL)
        .await
        .unwrap();
    let in_lane = |lane: Lane| {
        let mut job = jobs::new_job(&QueueProbe { sleep_ms: 0 }, Utc::now()).unwrap();
        job.lane = lane;
        job
    };
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    galantis_store::jobs::enqueue(&mut tx, &in_lane(Lane::Compliance))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    galantis_store::jobs::enqueue(&mut tx, &in_lane(Lane::Campaigns))
        .await
        .unwrap();
    // Nothing is announced before the commit.
    let early = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await;
    assert!(early.is_err(), "announced before commit: {early:?}");
    tx.commit().await.unwrap();
    // Notifications arrive in order: the rolled-back lane, had it been
    // announced, would come first.
    let heard = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("the commit is announced")
        .unwrap();
    assert_eq!(heard.payload(), Lane::Campaigns.as_str());
}
