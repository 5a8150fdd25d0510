//! What a scenario runs with: the engine and size, fresh stores on the
//! engine (a temporary data directory on SQLite, a scratch database at
//! `DATABASE_URL` on PostgreSQL, both removed after the scenario), the
//! peers, and the progress bar.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

use super::peers::Peers;
use super::{Engine, Size};
use crate::config::Config;

pub struct Ctx {
    engine: Engine,
    size: Size,
    base: Config,
    /// DATABASE_URL: where scratch databases are created (also for peers
    /// on the SQLite engine, when set).
    pg_url: Option<String>,
    peers: Peers,
    progress: ProgressBar,
    tag: String,
    next: u32,
    scratch_dbs: Vec<String>,
    temp_dirs: Vec<tempfile::TempDir>,
}

impl Ctx {
    /// `show_progress`: draw the bar on stderr (hidden anyway when stderr is
    /// not a terminal).
    pub fn new(
        config: &Config,
        engine: Engine,
        size: Size,
        peers: Peers,
        show_progress: bool,
    ) -> anyhow::Result<Self> {
        let pg_url = config
            .database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned());
        if engine == Engine::Postgres && pg_url.is_none() {
            anyhow::bail!(
                "--engine postgres needs DATABASE_URL (a PostgreSQL server where the harness may create and drop scratch databases)"
            );
        }
        let progress = if show_progress {
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {prefix:.bold} {msg} {wide_bar} {pos}/{len}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        } else {
            ProgressBar::hidden()
        };
        let tag = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
        Ok(Self {
            engine,
            size,
            base: config.clone(),
            pg_url,
            peers,
            progress,
            tag,
            next: 0,
            scratch_dbs: Vec::new(),
            temp_dirs: Vec::new(),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn small(&self) -> bool {
        self.size == Size::Small
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// A config for a fresh, empty store on the engine (migrated on start,
    /// with throwaway secrets and master key where none are configured).
    pub async fn store(&mut self) -> anyhow::Result<Config> {
        let mut cfg = self.base.clone();
        cfg.migrate_on_start = true;
        match self.engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir()?;
                cfg.database_url = None;
                cfg.data_dir = dir.path().to_path_buf();
                self.temp_dirs.push(dir);
            }
            Engine::Postgres => {
                let url = self.scratch_pg().await?.context("DATABASE_URL")?;
                cfg.database_url = Some(SecretString::from(url));
                let bench = |v: Option<SecretString>| {
                    v.or_else(|| Some(SecretString::from("galantis-bench")))
                };
                cfg.shopify_app_secret = bench(cfg.shopify_app_secret.take());
                cfg.meta_app_secret = bench(cfg.meta_app_secret.take());
                cfg.meta_verify_token = bench(cfg.meta_verify_token.take());
                cfg.metrics.token = cfg
                    .metrics
                    .token
                    .take()
                    .or_else(|| Some(SecretString::from("galantis-bench-metrics")));
                if cfg.master_key.is_none() {
                    let mut key = [0u8; 32];
                    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
                    cfg.master_key = Some(SecretString::from(
                        base64::engine::general_purpose::STANDARD.encode(key),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// A fresh PostgreSQL database at DATABASE_URL (None when unset), dropped
    /// after the scenario.
    pub async fn scratch_pg(&mut self) -> anyhow::Result<Option<String>> {
        let Some(admin) = self.pg_url.clone() else {
            return Ok(None);
        };
        self.next += 1;
        let name = format!("galantis_bench_{}_{}", self.tag, self.next);
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .context("connecting to DATABASE_URL")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .context("creating a scratch database")?;
        c.close().await.ok();
        self.scratch_dbs.push(name.clone());
        Ok(Some(with_database(&admin, &name)))
    }

    /// Removes the scenario's scratch stores.
    pub async fn cleanup(&mut self) {
        self.temp_dirs.clear();
        if self.scratch_dbs.is_empty() {
            return;
        }
        let Some(admin) = self.pg_url.clone() else {
            return;
        };
        let Ok(mut c) = sqlx::PgConnection::connect(&admin).await else {
            return;
        };
        for name in self.scratch_dbs.drain(..) {
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut c)
            .await
            {
                eprintln!("could not drop scratch database {name}: {e}");
            }
        }
        c.close().await.ok();
    }

    /// Starts a scenario on the progress bar.
    pub fn begin(&self, scenario: &str) {
        self.progress.set_prefix(scenario.to_owned());
        self.phase("", 0);
    }

    /// Starts a phase of `len` items (0: no count).
    pub fn phase(&self, msg: &str, len: u64) {
        self.progress.set_message(msg.to_owned());
        self.progress.set_length(len);
        self.progress.set_position(0);
    }

    /// Items done in the current phase.
    pub fn advance(&self, done: u64) {
        self.progress.set_position(done);
    }

    /// Prints above the progress bar.
    pub fn print(&self, text: &str) {
        self.progress.suspend(|| println!("{text}"));
    }

    pub fn finish(&self) {
        self.progress.finish_and_clear();
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
