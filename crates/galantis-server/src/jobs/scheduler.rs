//! Per-node housekeeping of the queue: rescue jobs of dead workers, enqueue
//! periodic jobs (exactly one per period across all nodes: the period is in
//! the job's unique key), publish queue gauges, and on PostgreSQL turn other
//! nodes' NOTIFYs into local wake-ups. On SQLite it also finds, at start,
//! the tenant files that hold pending jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::Lane;
use galantis_store::jobs::{self, NewJob};
use tokio::sync::watch;

use super::live::LiveJobs;
use crate::state::AppState;

/// A job enqueued once per `every`; modules add theirs with
/// [`Registry::periodic`](super::Registry::periodic).
#[derive(Clone)]
pub struct Periodic {
    pub name: &'static str,
    pub every: Duration,
    pub make: fn(DateTime<Utc>) -> NewJob,
}

/// `live` are the jobs this node's worker runs: the rescue spares them.
pub async fn run(
    app: AppState,
    periodic: Vec<Periodic>,
    live: LiveJobs,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(e) = jobs::admin::discover_sources(&app.db).await {
        tracing::error!(error = %e, "could not scan for pending jobs");
    }
    let listener = app
        .db
        .pg_pool()
        .cloned()
        .map(|pool| tokio::spawn(listen(app.db.clone(), pool)));
    let q = app.config.queue.clone();
    let rescue_every = Duration::from_secs(q.heartbeat_interval_secs);
    let mut last_rescue = std::time::Instant::now() - rescue_every;
    let mut last_gauges = std::time::Instant::now() - Duration::from_secs(60);
    let mut last_discover = std::time::Instant::now();
    loop {
        if last_rescue.elapsed() >= rescue_every {
            last_rescue = std::time::Instant::now();
            let timeout = Duration::from_secs(q.heartbeat_timeout_secs);
            if let Err(e) =
                jobs::admin::rescue(&app.db, app.clock.now(), timeout, &live.ids()).await
            {
                tracing::error!(error = %e, "rescuing jobs failed");
            }
        }
        for p in &periodic {
            if let Err(e) = enqueue_periodic(&app, p).await {
                tracing::error!(job = p.name, error = %e, "could not enqueue periodic job");
            }
        }
        if last_gauges.elapsed() >= Duration::from_secs(15) {
            last_gauges = std::time::Instant::now();
            publish_gauges(&app).await;
        }
        if last_discover.elapsed() >= Duration::from_secs(300) {
            last_discover = std::time::Instant::now();
            let _ = jobs::admin::discover_sources(&app.db).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    if let Some(l) = listener {
        l.abort();
    }
}

async fn enqueue_periodic(app: &AppState, p: &Periodic) -> Result<(), galantis_store::StoreError> {
    let now = app.clock.now();
    let every_ms = p.every.as_millis().max(1) as i64;
    let slot = now.timestamp_millis().div_euclid(every_ms);
    let start = DateTime::from_timestamp_millis(slot * every_ms).unwrap_or(now);
    let mut job = (p.make)(start);
    job.unique = Some((
        format!("periodic:{}:{slot}", p.name),
        galantis_core::UniqueScope::Forever,
    ));
    jobs::enqueue_global_now(&app.db, &job).await?;
    Ok(())
}

async fn publish_gauges(app: &AppState) {
    match jobs::admin::stats(&app.db, None, app.clock.now()).await {
        Ok(stats) => {
            for s in stats {
                let lane = s.lane.clone();
                metrics::gauge!("galantis_jobs", "lane" => lane.clone(), "state" => "queued")
                    .set(s.queued as f64);
                metrics::gauge!("galantis_jobs", "lane" => lane.clone(), "state" => "scheduled")
                    .set(s.scheduled as f64);
                metrics::gauge!("galantis_jobs", "lane" => lane.clone(), "state" => "running")
                    .set(s.running as f64);
                metrics::gauge!("galantis_jobs", "lane" => lane.clone(), "state" => "dead")
                    .set(s.dead as f64);
                metrics::gauge!("galantis_jobs_oldest_queued_age_seconds", "lane" => lane)
                    .set(s.oldest_queued_age_secs);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read queue stats"),
    }
}

/// Wakes local workers when any node enqueues (PostgreSQL NOTIFY). Reconnects
/// on failure; polling covers the gap.
async fn listen(db: galantis_store::Db, pool: sqlx::PgPool) {
    while !db.is_closed() {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => {
                if let Err(e) = l.listen(galantis_store::jobs::JOBS_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    loop {
                        match l.recv().await {
                            Ok(n) => {
                                if let Ok(lane) = n.payload().parse::<Lane>() {
                                    db.wake_lane(lane);
                                }
                            }
                            Err(_) if db.is_closed() => return,
                            Err(e) => {
                                tracing::warn!(error = %e, "job notification listener lost its connection");
                                break;
                            }
                        }
                    }
                }
            }
            Err(_) if db.is_closed() => return,
            Err(e) => tracing::warn!(error = %e, "cannot start the job notification listener"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
