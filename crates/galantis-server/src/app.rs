//! Start-up: open the store, check the master key, migrate, and serve.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use galantis_core::SystemClock;
use galantis_store::crypto::{CryptoError, MasterKey};
use galantis_store::{Db, SecretStore, StoreError, control::keyring, migrate};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{ServeRole, router};
use crate::jobs::worker::Worker;
use crate::jobs::{Registry, scheduler};
use crate::state::AppState;

pub const MASTER_KEY_FILE: &str = "master.key";

/// The master key file of embedded mode; a rotation in progress writes
/// `master.key.new` first.
pub fn master_key_path(config: &Config) -> PathBuf {
    config.data_dir.join(MASTER_KEY_FILE)
}

/// Where the master key came from (rotation needs to know whether it may
/// write the new key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Config,
    File,
}

/// Opens the store and verifies the master key against it. Control
/// migrations are applied (they are needed to read anything at all).
pub async fn open(config: &Config) -> anyhow::Result<(Db, Arc<MasterKey>, KeySource)> {
    if config.is_embedded() {
        make_data_dir_private(config)?;
    }
    let db = Db::connect(&config.db_config())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    migrate::migrate_control(&db)
        .await
        .context("applying control migrations")?;
    let (master, source) = load_master_key(config, &db).await?;
    Ok((db, Arc::new(master), source))
}

/// Files written before the umask was set (or by an older version) may be
/// readable by every local user: tighten them, and say which.
fn make_data_dir_private(config: &Config) -> anyhow::Result<()> {
    let fixed = galantis_store::files::make_private(&config.data_dir).with_context(|| {
        format!(
            "cannot restrict the permissions of {}",
            config.data_dir.display()
        )
    })?;
    for path in fixed {
        tracing::warn!(path = %path.display(), "was readable by other users; restricted to the owner (0700/0600)");
    }
    Ok(())
}

/// Everything this process creates (databases, their WAL and SHM files, keys,
/// directories) is private to its user.
pub fn restrict_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

async fn load_master_key(config: &Config, db: &Db) -> anyhow::Result<(MasterKey, KeySource)> {
    if let Some(encoded) = &config.master_key {
        let key = MasterKey::from_base64(encoded.expose_secret())?;
        verify(db, &key).await?;
        return Ok((key, KeySource::Config));
    }
    if !config.is_embedded() {
        anyhow::bail!(
            "GALANTIS_MASTER_KEY is required when DATABASE_URL points at PostgreSQL (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)"
        );
    }
    let path = master_key_path(config);
    let (key, created) = MasterKey::load_or_create_file(&path)?;
    if created {
        tracing::warn!(path = %path.display(), "generated a new master key (mode 0600); back it up: without it tenant secrets cannot be read");
    }
    match verify(db, &key).await {
        Ok(()) => Ok((key, KeySource::File)),
        Err(e) => {
            // A rotation that stopped between re-wrapping and installing the
            // new key file leaves the new key beside the old one.
            let pending = path.with_extension("key.new");
            if pending.exists() {
                let (new_key, _) = MasterKey::load_or_create_file(&pending)?;
                if verify(db, &new_key).await.is_ok() {
                    std::fs::rename(&pending, &path)
                        .context("installing the rotated master key")?;
                    tracing::warn!("completed an interrupted master key rotation");
                    return Ok((new_key, KeySource::File));
                }
            }
            Err(e)
        }
    }
}

async fn verify(db: &Db, key: &MasterKey) -> anyhow::Result<()> {
    match keyring::verify_or_init(db, key).await {
        Ok(()) => Ok(()),
        Err(StoreError::Crypto(CryptoError::WrongMasterKey)) => Err(anyhow::anyhow!(
            "the master key does not match this database: set GALANTIS_MASTER_KEY (or restore the data directory's master.key) to the key the data was encrypted with"
        )),
        Err(e) => Err(e.into()),
    }
}

/// Builds the application state (store open, key verified; in embedded mode
/// also every tenant migrated when `migrate_on_start`).
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    config.validate_for_serve()?;
    if config.is_embedded()
        && (config.shopify_app_secret.is_none() || config.meta_app_secret.is_none())
    {
        tracing::warn!(
            "using development webhook secrets (embedded mode); set GALANTIS_SHOPIFY_APP_SECRET and GALANTIS_META_APP_SECRET for real traffic"
        );
    }
    // Install the metrics recorder before the first request records anything.
    crate::telemetry::prometheus();
    let (db, master, _) = open(&config).await?;
    if config.migrate_on_start {
        let report = migrate::migrate_all(&db, 100, 4)
            .await
            .context("migrating tenants")?;
        if report.tenants_upgraded > 0 || report.control_applied > 0 {
            tracing::info!(?report, "migrations applied");
        }
    }
    // Every node records events, so every node enqueues their subscribers.
    crate::automations::subscribe(db.events());
    let secrets = SecretStore::new(db.clone(), master.clone());
    let shopify = Arc::new(crate::shopify_client::HttpShopifyClient::new(
        db.clone(),
        secrets.clone(),
        config.shopify_base_url.clone(),
        config.shopify.api_version.clone(),
    ));
    let sending = crate::sending::Sending::new(&config).await?;
    let realtime = crate::realtime::hub::Hub::new(db.clone(), config.realtime.clone());
    let storefront_limiter = crate::storefront::limit::SubmissionLimiter::new(&config.storefront);
    let config = Arc::new(config);
    Ok(AppState {
        db: db.clone(),
        meta_ingest: crate::webhooks::meta_ingest::meta_ingest(db.clone(), config.clone()),
        send_recorder: crate::sending::recorder::send_recorder(db.clone()),
        config,
        master_key: master,
        secrets,
        clock: Arc::new(SystemClock),
        shop_cache: Default::default(),
        ingest: crate::webhooks::batcher::ingest_batcher(db.clone()),
        events: db.events().sender(),
        shopify,
        sending,
        realtime,
        storefront_limiter,
    })
}

/// Serves until `shutdown` resolves; then stops accepting, lets in-flight
/// requests and running jobs finish within the grace period, and closes the
/// store. With `workers`, this node also runs the job workers and scheduler.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    role: ServeRole,
    workers: Option<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let db = state.db.clone();
    if let Ok(addr) = listener.local_addr() {
        state
            .sending
            .embedded_listening(addr, state.config.public_url.as_deref());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let settings = state.config.listener.clone();
    // Bound before the workers start, so an address in use stops start-up
    // with nothing running.
    let metrics = match state.config.metrics.bind {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (GALANTIS_METRICS__BIND)"))?;
            tracing::info!(addr = %l.local_addr()?, "metrics listening");
            Some(tokio::spawn(crate::listener::serve(
                l,
                crate::http::metrics_router(state.clone()),
                settings.clone(),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let background = workers.map(|registry| {
        let periodic = registry.periodic_jobs(&state.config);
        let worker = Worker::new(state.clone(), registry);
        tracing::info!(worker = worker.id(), "job workers started");
        let live = worker.live_jobs();
        (
            tokio::spawn(worker.run(stop_rx.clone())),
            tokio::spawn(scheduler::run(
                state.clone(),
                periodic,
                live,
                stop_rx.clone(),
            )),
        )
    });
    let redis_url = state.config.redis_url.clone();
    let mut realtime =
        crate::realtime::fanout::start_publishing(&state.db, redis_url.as_deref(), stop_rx.clone())
            .into_iter()
            .collect::<Vec<_>>();
    if role != ServeRole::Worker {
        realtime.extend(crate::realtime::fanout::start_listening(
            state.realtime.clone(),
            &state.db,
            redis_url.as_deref(),
            stop_rx.clone(),
        ));
    }
    let state_realtime = state.realtime.clone();
    let app = router(state, role);
    let server = crate::listener::serve(listener, app, settings, stop_rx.clone());
    let hub = state_realtime;
    tokio::spawn(async move {
        shutdown.await;
        hub.close_all();
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; abandoning in-flight requests"),
    }
    if let Some(m) = metrics {
        m.abort();
    }
    for t in realtime {
        t.abort();
    }
    if let Some((worker, scheduler)) = background {
        // Workers drain within the grace period themselves; the margin covers
        // releasing what they had to abort.
        if tokio::time::timeout(grace + Duration::from_secs(5), worker)
            .await
            .is_err()
        {
            tracing::warn!("job workers did not stop in time");
        }
        scheduler.abort();
    }
    // Closing waits for every borrowed connection; one held by a task that
    // never ends must not keep the process from exiting.
    if tokio::time::timeout(grace, db.close()).await.is_err() {
        tracing::warn!(
            "database connections still borrowed after the grace period; exiting anyway"
        );
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
