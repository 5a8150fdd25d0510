//! The external peers measured in the same run, installed by
//! `bench/peers/install.sh` (never by the build or the tests):
//! graphile-worker (`bench/peers/graphile/drain.js`), pgbench
//! (`bench/peers/pgbench/insert.sql`) and wrk (`bench/peers/wrk/ingest.lua`).
//! The directory is `GALANTIS_BENCH_PEERS`, else `./bench/peers`, else the
//! source tree's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use tokio::process::Command;

/// What a figure notes when its peer is missing.
pub const NOT_INSTALLED: &str = "peer not installed: run bench/peers/install.sh";

#[derive(Debug, Clone)]
pub struct Peers {
    dir: Option<PathBuf>,
}

impl Peers {
    pub fn locate() -> Self {
        let candidates = [
            std::env::var_os("GALANTIS_BENCH_PEERS").map(PathBuf::from),
            Some(PathBuf::from("bench/peers")),
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers")),
        ];
        Self {
            dir: candidates.into_iter().flatten().find(|d| d.is_dir()),
        }
    }

    /// No peers (the smoke test).
    pub fn none() -> Self {
        Self { dir: None }
    }

    fn file(&self, rel: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(rel))
            .filter(|p| p.exists())
    }

    /// graphile-worker's drain script, when installed and node is present.
    pub fn graphile(&self) -> Option<PathBuf> {
        self.file("graphile/node_modules/graphile-worker/package.json")?;
        which("node")?;
        self.file("graphile/drain.js")
    }

    pub fn pgbench(&self) -> Option<(PathBuf, PathBuf)> {
        Some((which("pgbench")?, self.file("pgbench/insert.sql")?))
    }

    pub fn wrk(&self) -> Option<(PathBuf, PathBuf)> {
        Some((which("wrk")?, self.file("wrk/ingest.lua")?))
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

async fn output(cmd: &mut Command, bound: Duration) -> anyhow::Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(bound, cmd.output())
        .await
        .context("peer timed out")??;
    anyhow::ensure!(
        out.status.success(),
        "peer failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// graphile-worker draining `jobs` no-op jobs on the database at `url`
/// (`default`: concurrency 10; `batched`: local queue and batched
/// completion). Jobs per second.
pub async fn graphile_drain(
    script: &Path,
    url: &str,
    jobs: u32,
    mode: &str,
) -> anyhow::Result<f64> {
    let out = output(
        Command::new("node")
            .arg(script)
            .arg(url)
            .arg(jobs.to_string())
            .arg(mode),
        Duration::from_secs(300),
    )
    .await?;
    let line = out.lines().last().context("no output from drain.js")?;
    let v: serde_json::Value = serde_json::from_str(line).context("drain.js output")?;
    v["jobs_per_s"].as_f64().context("jobs_per_s")
}

/// pgbench's one-row JSONB insert per transaction with `clients` clients
/// for `seconds` on the database at `url`. Transactions per second.
pub async fn pgbench_insert(
    bin: &Path,
    script: &Path,
    url: &str,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<f64> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS bench_events (id bigserial PRIMARY KEY, topic text NOT NULL, \
         webhook_id text NOT NULL, payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut c)
    .await?;
    c.close().await.ok();
    let out = output(
        Command::new(bin)
            .args(["-n", "-j", "2", "-c", &clients.to_string()])
            .args(["-T", &seconds.to_string(), "-f"])
            .arg(script)
            .arg(url),
        Duration::from_secs(u64::from(seconds) + 60),
    )
    .await?;
    out.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .context("no tps in pgbench's output")
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    pub ok: u64,
    pub failures: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Input of one wrk run against `url` (signed Shopify webhooks).
pub struct WrkLoad<'a> {
    pub url: &'a str,
    pub body_file: &'a Path,
    pub sig: &'a str,
    pub shops: &'a [String],
    pub tag: &'a str,
    pub requests: u32,
    pub connections: usize,
}

/// Runs wrk until every thread has answered its share (each prints
/// `WRKDONE`; wrk is then interrupted, as it would otherwise sleep out its
/// whole `-d`), or the time bound.
pub async fn wrk_ingest(bin: &Path, script: &Path, l: WrkLoad<'_>) -> anyhow::Result<WrkRun> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    const THREADS: u32 = 2;
    // Bounded in time as well: at least 200 requests/s or it stops.
    let secs = (l.requests / 200).max(30);
    let mut child = Command::new(bin)
        .args(["-t", &THREADS.to_string()])
        .args(["-c", &l.connections.max(2).to_string()])
        .args(["-d", &format!("{secs}s"), "--timeout", "10s"])
        .arg("-s")
        .arg(script)
        .arg(l.url)
        .env("BENCH_BODY_FILE", l.body_file)
        .env("BENCH_SIG", l.sig)
        .env("BENCH_SHOPS", l.shops.join(","))
        .env("BENCH_TAG", l.tag)
        .env("BENCH_PER_THREAD", l.requests.div_ceil(THREADS).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting wrk")?;
    let pid = child.id().context("wrk's pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("wrk's stdout")?).lines();
    let mut json = None;
    let mut finished = 0;
    let mut interrupted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(secs) + 30);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if line.trim() == "WRKDONE" {
            finished += 1;
            if finished == THREADS && !interrupted {
                interrupted = true;
                Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status()
                    .await
                    .ok();
            }
        } else if let Some(j) = line.strip_prefix("WRKJSON ") {
            json = Some(j.to_owned());
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).await.ok();
    }
    let json =
        json.with_context(|| format!("no summary in wrk's output ({status:?}): {}", err.trim()))?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let failures = n("errors_status")
        + n("errors_connect")
        + n("errors_read")
        + n("errors_write")
        + n("errors_timeout");
    let ok = n("ok");
    let secs = n("duration_us") as f64 / 1e6;
    Ok(WrkRun {
        ok,
        failures,
        per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        p50_ms: n("p50_us") as f64 / 1000.0,
        p99_ms: n("p99_us") as f64 / 1000.0,
    })
}
