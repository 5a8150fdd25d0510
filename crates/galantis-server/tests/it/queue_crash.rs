//! `kill -9` of a serving node while jobs run: after a restart every job is
//! completed exactly once (the probe job counts its own runs).

use std::time::Duration;

use galantis_testkit::Scratch;
use serde_json::Value;

use crate::cli::command;
use galantis_testkit::eventually;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn report(env: &[(String, String)]) -> Value {
    let out = command(env)
        .args(["jobs", "probe-report", "--shop", "crash.myshopify.com"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve(env: &[(String, String)]) -> tokio::process::Child {
    command(env)
        .args([
            "serve",
            "--role",
            "worker",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn sigkill_while_jobs_run_then_restart_completes_every_job_exactly_once() {
    let scratch = Scratch::new().await;
    let mut env = scratch.env();
    env.extend([
        ("GALANTIS_QUEUE__HEARTBEAT_INTERVAL_SECS".into(), "1".into()),
        ("GALANTIS_QUEUE__HEARTBEAT_TIMEOUT_SECS".into(), "2".into()),
        ("GALANTIS_QUEUE__POLL_INTERVAL_MS".into(), "100".into()),
        ("GALANTIS_QUEUE__CONCURRENCY__MONITOR".into(), "8".into()),
    ]);
    let out = command(&env)
        .args(["tenant", "create", "--shop", "crash.myshopify.com"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let out = command(&env)
        .args([
            "jobs",
            "probe",
            "--shop",
            "crash.myshopify.com",
            "--count",
            "400",
            "--sleep-ms",
            // A batch of probes holds its tenant's SQLite writer for all of
            // its sleeps, so the jobs run one after another: 400 × 20 ms.
            "20",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut first = serve(&env);
    let e = env.clone();
    eventually("some probes ran", || {
        let e = e.clone();
        async move { report(&e).await["jobs"].as_i64().unwrap() >= 40 }
    })
    .await;
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;
    let at_kill = report(&env).await["jobs"].as_i64().unwrap();
    assert!(
        at_kill < 400,
        "the kill happened while jobs were still running ({at_kill} done)"
    );

    let mut second = serve(&env);
    let e = env.clone();
    eventually("every probe ran", || {
        let e = e.clone();
        async move { report(&e).await["jobs"].as_i64().unwrap() == 400 }
    })
    .await;
    second.start_kill().unwrap();
    let _ = second.wait().await;
    let r = report(&env).await;
    assert_eq!(r["runs"], 400, "no job's effect applied twice: {r}");
    assert_eq!(r["repeated"], 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
