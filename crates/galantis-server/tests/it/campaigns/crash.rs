//! `kill -9` of a real `galantis serve` mid-dispatch, then a restart: the
//! campaign resumes and each recipient still gets exactly one message. The
//! Meta sandbox runs in the test process, so its per-recipient counters
//! outlive the killed node and prove it.

use super::*;
use crate::cli::command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

async fn wait_accepted(sb: &SandboxHandle, what: &str, done: impl Fn(u64) -> bool) {
    for _ in 0..2400 {
        if done(sb.counters().accepted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", sb.counters());
}

#[tokio::test]
async fn sigkill_mid_dispatch_then_restart_sends_each_recipient_exactly_once() {
    const N: usize = 240;
    // The test's app serves the API and receives the sandbox's status
    // webhooks; it runs no workers. A separate `galantis serve --role
    // worker` process on the same store does the dispatching.
    let e = env(
        "camp-crash",
        Opts {
            sandbox_mps: 40,
            galantis_mps: 40,
            workers: false,
            ..Opts::default()
        },
        |_| {},
    )
    .await;
    let (app, t) = (&e.app, &e.t);
    grant(app, t, 1000).await;
    let tpl = template_id(app, t, "promo").await;
    let ids = people(app, t, 0, N, MarketingState::Subscribed).await;
    let l = list_of(app, t, "everyone", &ids).await;
    let id = create(app, t, promo(tpl, &[l], &[])).await;
    let (s, c) = call(
        app,
        t,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");

    let mut node_env = app.scratch.env();
    node_env.extend([
        ("GALANTIS_META_BASE_URL".into(), e.sb.base_url.clone()),
        ("GALANTIS_QUEUE__HEARTBEAT_INTERVAL_SECS".into(), "1".into()),
        ("GALANTIS_QUEUE__HEARTBEAT_TIMEOUT_SECS".into(), "2".into()),
        ("GALANTIS_QUEUE__POLL_INTERVAL_MS".into(), "100".into()),
        ("GALANTIS_QUEUE__CONCURRENCY__MESSAGES".into(), "4".into()),
        (
            "GALANTIS_CAMPAIGNS__MONITOR_INTERVAL_SECS".into(),
            "1".into(),
        ),
    ]);
    let mut first = serve(&node_env);
    wait_accepted(&e.sb, "the first node sent some", |n| n >= 40).await;
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;
    let at_kill = e.sb.counters().accepted;
    assert!(
        at_kill < N as u64,
        "the kill happened mid-dispatch ({at_kill} of {N} sent)"
    );
    assert_ne!(campaign(app, t, id).await["status"], "SENT");

    let mut second = serve(&node_env);
    let c = wait_status(app, t, id, "SENT").await;
    second.start_kill().unwrap();
    let _ = second.wait().await;
    assert_eq!(c["counts"]["recipients"], N as i64, "{c}");
    assert_eq!(c["counts"]["sent"], N as i64, "{c}");
    let k = e.sb.counters();
    assert_eq!(k.accepted, N as u64, "{k:?}");
    assert_eq!(k.accepted_by_recipient.len(), N);
    assert!(k.accepted_by_recipient.values().all(|n| *n == 1), "{k:?}");
    assert_eq!(k.duplicate_callback_data, 0, "{k:?}");
    assert_eq!(k.errors_by_code.get(&130429), None, "{k:?}");
    let rs = all_recipients(app, t, id).await;
    assert_eq!(rs.len(), N);
    assert!(
        rs.iter()
            .all(|r| r.status == "DELIVERED" || r.status == "SENT" || r.status == "READ"),
        "{rs:?}"
    );
}
