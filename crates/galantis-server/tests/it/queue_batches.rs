//! Batched kinds (`Registry::batched`): one tenant's due jobs share one
//! transaction, their effects and completions commit together, and a job
//! that fails its batch sends every job of it back through the one-job
//! path — no effect lost, none applied twice, each failure kept with its
//! own job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use galantis_core::{JobId, JobKind, Lane, RetrySchedule};
use galantis_server::jobs::{self, AfterCommit, JobContext, JobError, Registry};
use galantis_store::jobs::admin;
use galantis_store::tenant::probes;
use galantis_store::{Engine, StoreError, TenantTx};
use galantis_testkit::{TestApp, TestTenant};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Step {
    /// `ok`, `invalid` (can never work) or `snooze_once`.
    mode: String,
}

impl JobKind for Step {
    const KIND: &'static str = "test.batched_step";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 3;
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_millis(1));
}

/// How often each path ran, across the test's jobs.
static IN_BATCH: AtomicU64 = AtomicU64::new(0);
static ALONE: AtomicU64 = AtomicU64::new(0);
static SNOOZED: AtomicU64 = AtomicU64::new(0);

/// A lock (PostgreSQL: each job its own, `busy` one that a test may hold
/// elsewhere; never waited for while the batch holds others), the effect (a
/// probe row keyed by the job), then the mode's outcome.
async fn work(ctx: &JobContext, tx: &mut TenantTx, job: &Step) -> Result<(), JobError> {
    let key = match job.mode.as_str() {
        "busy" => "qb-busy".to_owned(),
        _ => format!("qb-job:{}", ctx.job.id),
    };
    tx.wait_for_locks(!tx.holds_locks());
    let locked = tx.serialize_on(&key).await;
    tx.wait_for_locks(true);
    match locked {
        Err(StoreError::LockBusy(_)) => return Err(JobError::Later),
        r => r?,
    }
    probes::record(tx, ctx.job.id, ctx.now().timestamp_millis()).await?;
    match job.mode.as_str() {
        "invalid" => Err(JobError::Permanent(anyhow::anyhow!("cannot ever work"))),
        "snooze_once" if SNOOZED.fetch_add(1, Ordering::SeqCst) == 0 => {
            Err(JobError::Snooze(Duration::ZERO))
        }
        _ => Ok(()),
    }
}

fn run_in<'a>(
    ctx: &'a JobContext,
    tx: &'a mut TenantTx,
    job: Step,
) -> BoxFuture<'a, Result<Option<AfterCommit>, JobError>> {
    Box::pin(async move {
        IN_BATCH.fetch_add(1, Ordering::SeqCst);
        work(ctx, tx, &job).await.map(|()| None)
    })
}

async fn alone(ctx: JobContext, job: Step) -> Result<(), JobError> {
    ALONE.fetch_add(1, Ordering::SeqCst);
    let mut tx = ctx.app.db.tenant_tx(ctx.tenant().unwrap()).await?;
    work(&ctx, &mut tx, &job).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn app_with(max: usize) -> TestApp {
    let mut registry = Registry::builtin();
    registry.batched::<Step, _, _>(max, alone, run_in);
    TestApp::builder()
        .without_workers()
        .registry(registry)
        .spawn()
        .await
}

async fn enqueue(app: &TestApp, t: &TestTenant, modes: &[&str]) -> Vec<JobId> {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let mut ids = Vec::new();
    for m in modes {
        let job = Step { mode: (*m).into() };
        ids.push(jobs::enqueue(&mut tx, &job, Utc::now()).await.unwrap().id());
    }
    tx.commit().await.unwrap();
    ids
}

async fn state(app: &TestApp, t: &TestTenant, id: JobId) -> galantis_store::jobs::JobView {
    admin::get(app.db(), Some(t.id), id).await.unwrap().unwrap()
}

async fn effects(app: &TestApp, t: &TestTenant) -> probes::ProbeSummary {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let s = probes::summary(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    s
}

// The counters are statics: one test owns them, its cases in sequence.
#[tokio::test]
async fn batches_commit_together_and_a_failing_job_sends_its_batch_back_one_by_one() {
    // 1. Twelve good jobs: one batch, no job alone.
    let app = app_with(16).await;
    let t = app.create_tenant("qb-good").await;
    let ids = enqueue(&app, &t, &["ok"; 12]).await;
    let before = (
        IN_BATCH.load(Ordering::SeqCst),
        ALONE.load(Ordering::SeqCst),
    );
    assert_eq!(app.run_jobs_until_idle().await.ran, 12);
    assert_eq!(
        (
            IN_BATCH.load(Ordering::SeqCst) - before.0,
            ALONE.load(Ordering::SeqCst) - before.1
        ),
        (12, 0),
        "all twelve in one transaction"
    );
    for id in &ids {
        assert_eq!(state(&app, &t, *id).await.state, "completed");
    }
    let s = effects(&app, &t).await;
    assert_eq!((s.jobs, s.runs, s.repeated), (12, 12, 0));

    // 2. A job that can never work in the middle: the batch rolls back at
    // it, every job runs again alone; the others complete once, it dies
    // with its own reason, and its effect is not kept.
    let t = app.create_tenant("qb-invalid").await;
    let modes = ["ok", "ok", "ok", "ok", "ok", "invalid", "ok", "ok"];
    let ids = enqueue(&app, &t, &modes).await;
    let before = (
        IN_BATCH.load(Ordering::SeqCst),
        ALONE.load(Ordering::SeqCst),
    );
    let _dead = app.try_run_jobs_until_idle().await;
    assert_eq!(
        (
            IN_BATCH.load(Ordering::SeqCst) - before.0,
            ALONE.load(Ordering::SeqCst) - before.1
        ),
        (6, 8),
        "the batch stopped at the bad job, then each ran alone"
    );
    for (id, mode) in ids.iter().zip(modes) {
        let v = state(&app, &t, *id).await;
        if mode == "invalid" {
            assert_eq!((v.state.as_str(), v.attempt), ("dead", 1));
            assert_eq!(v.last_error.as_deref(), Some("cannot ever work"));
        } else {
            assert_eq!((v.state.as_str(), v.attempt), ("completed", 1));
        }
    }
    let s = effects(&app, &t).await;
    assert_eq!(
        (s.jobs, s.runs, s.repeated),
        (7, 7, 0),
        "the rolled-back batch left nothing; each good job's effect once"
    );

    // 3. A snooze inside a batch is a snooze of that job alone, spending
    // no attempt; the rest complete.
    let t = app.create_tenant("qb-snooze").await;
    SNOOZED.store(0, Ordering::SeqCst);
    let ids = enqueue(&app, &t, &["ok", "snooze_once", "ok"]).await;
    let _dead = app.try_run_jobs_until_idle().await;
    for id in &ids {
        let v = state(&app, &t, *id).await;
        assert_eq!((v.state.as_str(), v.attempt), ("completed", 1), "{id}");
    }
    let s = effects(&app, &t).await;
    assert_eq!((s.jobs, s.runs, s.repeated), (3, 3, 0));

    // 4. Another tenant's jobs never share a transaction: batches are per
    // tenant, and each tenant sees only its own effects.
    let a = app.create_tenant("qb-a").await;
    let b = app.create_tenant("qb-b").await;
    enqueue(&app, &a, &["ok"; 3]).await;
    enqueue(&app, &b, &["ok"; 2]).await;
    let _dead = app.try_run_jobs_until_idle().await;
    assert_eq!(effects(&app, &a).await.runs, 3);
    assert_eq!(effects(&app, &b).await.runs, 2);

    // 5. A job that would wait for a lock while its batch holds others
    // (PostgreSQL) does not: the batch commits the jobs before it, and it
    // and the rest run alone, where waiting is safe. On SQLite (one writer,
    // no such locks) all three share the batch.
    let t = app.create_tenant("qb-later").await;
    let holder = if app.db().engine() == Engine::Postgres {
        let mut tx = app.db().tenant_tx(t.id).await.unwrap();
        tx.serialize_on("qb-busy").await.unwrap();
        Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.commit().await.unwrap();
        }))
    } else {
        None
    };
    let ids = enqueue(&app, &t, &["ok", "busy", "ok"]).await;
    let before = (
        IN_BATCH.load(Ordering::SeqCst),
        ALONE.load(Ordering::SeqCst),
    );
    let _dead = app.try_run_jobs_until_idle().await;
    let ran = (
        IN_BATCH.load(Ordering::SeqCst) - before.0,
        ALONE.load(Ordering::SeqCst) - before.1,
    );
    if let Some(h) = holder {
        h.await.unwrap();
        assert_eq!(ran, (2, 2), "the batch stopped at the busy lock");
    } else {
        assert_eq!(ran, (3, 0));
    }
    for id in &ids {
        let v = state(&app, &t, *id).await;
        assert_eq!((v.state.as_str(), v.attempt), ("completed", 1), "{id}");
    }
    let s = effects(&app, &t).await;
    assert_eq!((s.jobs, s.runs, s.repeated), (3, 3, 0));

    // 6. A batch size of one is the one-job path.
    let app = app_with(1).await;
    let t = app.create_tenant("qb-one").await;
    enqueue(&app, &t, &["ok"; 3]).await;
    let before = (
        IN_BATCH.load(Ordering::SeqCst),
        ALONE.load(Ordering::SeqCst),
    );
    assert_eq!(app.run_jobs_until_idle().await.ran, 3);
    assert_eq!(
        (
            IN_BATCH.load(Ordering::SeqCst) - before.0,
            ALONE.load(Ordering::SeqCst) - before.1
        ),
        (0, 3)
    );
    assert_eq!(effects(&app, &t).await.runs, 3);
}

/// A whole-batch kind (`Registry::batched_whole`): the handler gets the
/// batch, reports the prefix it did, and the worker completes exactly that
/// prefix in the batch's transaction and runs the rest alone afterwards.
/// A handler that claims to have done nothing (a bug) rolls back and every
/// job runs alone.
#[derive(Serialize, Deserialize)]
struct Whole {
    /// `ok`, or `stop` (the handler stops before it).
    mode: String,
}

impl JobKind for Whole {
    const KIND: &'static str = "test.whole_batch";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 3;
    const RETRY: RetrySchedule = RetrySchedule::fixed(Duration::from_millis(1));
}

static WHOLE_BATCHES: AtomicU64 = AtomicU64::new(0);
static WHOLE_ALONE: AtomicU64 = AtomicU64::new(0);

fn whole<'a>(
    ctxs: &'a [JobContext],
    tx: &'a mut TenantTx,
    jobs: Vec<Whole>,
) -> BoxFuture<'a, Result<jobs::registry::BatchDone, JobError>> {
    Box::pin(async move {
        WHOLE_BATCHES.fetch_add(1, Ordering::SeqCst);
        let mut done = 0;
        for (ctx, job) in ctxs.iter().zip(&jobs) {
            if job.mode == "stop" {
                break;
            }
            probes::record(tx, ctx.job.id, ctx.now().timestamp_millis()).await?;
            done += 1;
        }
        Ok(jobs::registry::BatchDone {
            done,
            after: Vec::new(),
        })
    })
}

async fn whole_alone(ctx: JobContext, _job: Whole) -> Result<(), JobError> {
    WHOLE_ALONE.fetch_add(1, Ordering::SeqCst);
    let mut tx = ctx.app.db.tenant_tx(ctx.tenant().unwrap()).await?;
    probes::record(&mut tx, ctx.job.id, ctx.now().timestamp_millis()).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

#[tokio::test]
async fn a_whole_batch_handler_completes_the_prefix_it_did_and_the_rest_run_alone() {
    let mut registry = Registry::builtin();
    registry.batched_whole::<Whole, _, _>(16, whole_alone, whole);
    let app = TestApp::builder()
        .without_workers()
        .registry(registry)
        .spawn()
        .await;
    let run = |t: TestTenant, modes: Vec<&'static str>| {
        let app = &app;
        async move {
            let mut tx = app.db().tenant_tx(t.id).await.unwrap();
            let mut ids = Vec::new();
            for m in &modes {
                let job = Whole { mode: (*m).into() };
                ids.push(jobs::enqueue(&mut tx, &job, Utc::now()).await.unwrap().id());
            }
            tx.commit().await.unwrap();
            let before = (
                WHOLE_BATCHES.load(Ordering::SeqCst),
                WHOLE_ALONE.load(Ordering::SeqCst),
            );
            assert_eq!(app.run_jobs_until_idle().await.ran, modes.len());
            for id in &ids {
                let v = state(app, &t, *id).await;
                assert_eq!((v.state.as_str(), v.attempt), ("completed", 1), "{id}");
            }
            let s = effects(app, &t).await;
            assert_eq!(
                (s.jobs, s.runs, s.repeated),
                (modes.len() as i64, modes.len() as i64, 0),
                "each job's effect once"
            );
            (
                WHOLE_BATCHES.load(Ordering::SeqCst) - before.0,
                WHOLE_ALONE.load(Ordering::SeqCst) - before.1,
            )
        }
    };
    // The whole batch at once.
    let t = app.create_tenant("wb-all").await;
    assert_eq!(run(t, vec!["ok"; 5]).await, (1, 0));
    // Stopped after two: those commit with the batch, the other three run
    // alone (the stop job among them: alone, it works).
    let t = app.create_tenant("wb-prefix").await;
    assert_eq!(run(t, vec!["ok", "ok", "stop", "ok", "ok"]).await, (1, 3));
    // Nothing done: a handler bug; nothing of the batch is kept, all alone.
    let t = app.create_tenant("wb-none").await;
    assert_eq!(run(t, vec!["stop", "ok", "ok"]).await, (1, 3));
}
