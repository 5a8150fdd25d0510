//! The real `galantis` binary against a scratch store.

use std::process::Output;
use std::time::Duration;

use galantis_core::SecretName;
use galantis_store::crypto::MasterKey;
use galantis_testkit::Scratch;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub fn command(env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_galantis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GALANTIS_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.kill_on_drop(true);
    cmd
}

async fn run(env: &[(String, String)], args: &[&str]) -> Output {
    command(env)
        .args(args)
        .output()
        .await
        .expect("run galantis")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn tenant_count(env: &[(String, String)]) -> usize {
    json_of(&run(env, &["tenant", "list"]).await)
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn tenant_create_prints_the_owner_token_once_and_it_works() {
    let scratch = Scratch::new().await;
    let env = scratch.env();
    let out = json_of(
        &run(
            &env,
            &[
                "tenant",
                "create",
                "--shop",
                "Cli-Shop.myshopify.com",
                "--phone-number-id",
                "1234567890",
                "--waba-id",
                "987654321",
            ],
        )
        .await,
    );
    assert_eq!(out["shop"], "cli-shop.myshopify.com");
    assert!(out["tenant_id"].as_str().is_some());
    assert!(out["token"].as_str().unwrap().starts_with("glt_"));
    assert_eq!(out["phone_number_id"], "1234567890");

    let list = json_of(&run(&env, &["tenant", "list"]).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains("glt_"),
        "tokens are never listed"
    );

    // Members and tokens through the CLI.
    let m = json_of(
        &run(
            &env,
            &[
                "member",
                "add",
                "--shop",
                "cli-shop.myshopify.com",
                "--email",
                "ops@shop.mx",
                "--role",
                "ANALYST",
            ],
        )
        .await,
    );
    assert_eq!(m["role"], "ANALYST");
    let t = json_of(
        &run(
            &env,
            &[
                "token",
                "create",
                "--shop",
                "cli-shop.myshopify.com",
                "--member",
                "ops@shop.mx",
            ],
        )
        .await,
    );
    assert!(t["token"].as_str().unwrap().starts_with("glt_"));
    let token_id = t["token_id"].as_str().unwrap().to_owned();
    let r = json_of(
        &run(
            &env,
            &[
                "token",
                "revoke",
                "--shop",
                "cli-shop.myshopify.com",
                "--token-id",
                &token_id,
            ],
        )
        .await,
    );
    assert_eq!(r["revoked"], token_id.as_str());

    let d = json_of(
        &run(
            &env,
            &["tenant", "deactivate", "--shop", "cli-shop.myshopify.com"],
        )
        .await,
    );
    assert_eq!(d["status"], "deactivated");
}

#[tokio::test]
async fn bad_cli_input_fails_clearly_and_writes_nothing() {
    let scratch = Scratch::new().await;
    let env = scratch.env();
    json_of(&run(&env, &["tenant", "create", "--shop", "taken.myshopify.com"]).await);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["tenant", "create", "--shop", "taken.com"],
            "not a Shopify store domain",
        ),
        (
            vec!["tenant", "create", "--shop", "https://x.myshopify.com"],
            "not a Shopify store domain",
        ),
        (
            vec!["tenant", "create", "--shop", "taken.myshopify.com"],
            "already exists",
        ),
        (
            vec!["tenant", "create", "--shop", "TAKEN.myshopify.com"],
            "already exists",
        ),
        (
            vec!["tenant", "create", "--shop", "x.myshopify.com", "--bogus"],
            "unexpected argument",
        ),
        (
            vec![
                "tenant",
                "create",
                "--shop",
                "x.myshopify.com",
                "--phone-number-id",
                "1",
            ],
            "--waba-id",
        ),
        (
            vec![
                "tenant",
                "create",
                "--shop",
                "x.myshopify.com",
                "--phone-number-id",
                "abc",
                "--waba-id",
                "1",
            ],
            "numeric",
        ),
        (vec!["tenant", "create"], "--shop"),
        (
            vec!["tenant", "deactivate", "--shop", "ghost.myshopify.com"],
            "no tenant",
        ),
        (
            vec![
                "member",
                "add",
                "--shop",
                "taken.myshopify.com",
                "--email",
                "a@b.co",
                "--role",
                "GOD",
            ],
            "not a role",
        ),
        (
            vec![
                "member",
                "add",
                "--shop",
                "taken.myshopify.com",
                "--email",
                "a@b.co",
                "--role",
                "OWNER",
            ],
            "exactly one OWNER",
        ),
        (
            vec![
                "member",
                "add",
                "--shop",
                "taken.myshopify.com",
                "--email",
                "nope",
                "--role",
                "VIEWER",
            ],
            "email",
        ),
        (
            vec![
                "member",
                "add",
                "--shop",
                "ghost.myshopify.com",
                "--email",
                "a@b.co",
                "--role",
                "VIEWER",
            ],
            "no tenant",
        ),
        (
            vec![
                "token",
                "create",
                "--shop",
                "taken.myshopify.com",
                "--member",
                "ghost@b.co",
            ],
            "no member",
        ),
        (
            vec![
                "token",
                "revoke",
                "--shop",
                "taken.myshopify.com",
                "--token-id",
                "nope",
            ],
            "token id",
        ),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, expected) in cases {
        let out = run(&env, &args).await;
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
    assert_eq!(tenant_count(&env).await, 1);
    let members = json_of(&run(&env, &["member", "list", "--shop", "taken.myshopify.com"]).await);
    assert_eq!(members.as_array().unwrap().len(), 1, "only the owner");
}

#[tokio::test]
async fn migrate_twice_the_second_run_changes_nothing() {
    let scratch = Scratch::new().await;
    let env = scratch.env();
    for i in 0..3 {
        json_of(
            &run(
                &env,
                &[
                    "tenant",
                    "create",
                    "--shop",
                    &format!("mig-{i}.myshopify.com"),
                ],
            )
            .await,
        );
    }
    let first = json_of(&run(&env, &["migrate"]).await);
    assert_eq!(first["tenants_total"], 3);
    let second = json_of(&run(&env, &["migrate"]).await);
    assert_eq!(second["control_applied"], 0);
    assert_eq!(second["tenants_upgraded"], 0);
    assert_eq!(second["tenants_total"], 3);
}

#[tokio::test]
async fn keys_rotate_keeps_secrets_readable_and_the_old_key_is_refused() {
    let scratch = Scratch::new().await;
    let mut env = scratch.env();
    let created = json_of(&run(&env, &["tenant", "create", "--shop", "rot.myshopify.com"]).await);
    let tenant: galantis_core::TenantId = created["tenant_id"].as_str().unwrap().parse().unwrap();
    {
        let (db, master, _) = galantis_server::app::open(&scratch.config()).await.unwrap();
        let store = galantis_store::SecretStore::new(db.clone(), master);
        store
            .put(
                tenant,
                SecretName::ShopifyAccessToken,
                &SecretString::from("shpat_rotate_me"),
            )
            .await
            .unwrap();
        db.close().await;
    }
    let new = MasterKey::generate().unwrap();
    env.push(("GALANTIS_NEW_MASTER_KEY".into(), new.to_base64()));
    let out = json_of(&run(&env, &["keys", "rotate"]).await);
    assert_eq!(out["rotated_tenants"], 1);
    assert!(
        out.get("new_master_key").is_none(),
        "a provided key is not echoed"
    );

    // The old key is now refused with a clear message, before anything runs.
    env.retain(|(k, _)| k != "GALANTIS_NEW_MASTER_KEY");
    let out = run(&env, &["serve", "--bind", "127.0.0.1:0"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("master key does not match"),
        "{}",
        stderr(&out)
    );

    // With the new key the secret reads back.
    let mut config = scratch.config();
    config.master_key = Some(SecretString::from(new.to_base64()));
    let (db, master, _) = galantis_server::app::open(&config).await.unwrap();
    let store = galantis_store::SecretStore::new(db.clone(), master);
    let back = store
        .get(tenant, SecretName::ShopifyAccessToken)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.expose_secret(), "shpat_rotate_me");
    db.close().await;

    // A malformed key is a clear start-up error too.
    env.retain(|(k, _)| k != "GALANTIS_MASTER_KEY");
    env.push(("GALANTIS_MASTER_KEY".into(), "c2hvcnQ=".into()));
    let out = run(&env, &["tenant", "list"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GALANTIS_MASTER_KEY"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn embedded_key_file_rotation_replaces_the_file() {
    let scratch = Scratch::new().await;
    if scratch.pg.is_some() {
        return; // The key file exists only in embedded (SQLite) mode.
    }
    let env: Vec<_> = scratch
        .env()
        .into_iter()
        .filter(|(k, _)| k != "GALANTIS_MASTER_KEY")
        .collect();
    json_of(
        &run(
            &env,
            &["tenant", "create", "--shop", "file-rot.myshopify.com"],
        )
        .await,
    );
    let key_path = scratch.dir.path().join("data").join("master.key");
    let before = std::fs::read_to_string(&key_path).unwrap();
    let out = json_of(&run(&env, &["keys", "rotate"]).await);
    assert_eq!(out["rotated_tenants"], 1);
    let after = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(before, after);
    assert!(!key_path.with_extension("key.new").exists());
    assert_eq!(
        tenant_count(&env).await,
        1,
        "the store opens with the rotated key file"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_on_a_fresh_directory_with_no_config_answers_health_ready_and_metrics() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = command(&[])
        .current_dir(cwd.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not come up");
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("galantis_http_requests_total")
    );
    assert!(cwd.path().join("galantis-data/control.db").exists());
    assert!(cwd.path().join("galantis-data/master.key").exists());

    // SIGTERM shuts it down gracefully.
    #[cfg(unix)]
    {
        let pid = child.id().unwrap() as i32;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "graceful exit");
    }
    #[cfg(not(unix))]
    child.kill().await.unwrap();
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_naming_the_setting() {
    let scratch = Scratch::new().await;
    let mut env = scratch.env();
    env.push(("GALANTIS_REQUEST_TIMEOUT_SECS".into(), "soon".into()));
    let out = run(&env, &["tenant", "list"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GALANTIS_REQUEST_TIMEOUT_SECS"),
        "{}",
        stderr(&out)
    );

    let mut env = scratch.env();
    env.push(("DATABASE_URL".into(), "mysql://nope".into()));
    let out = run(&env, &["tenant", "list"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));
}

#[tokio::test]
async fn billing_grant_writes_an_operator_grant_entry_and_refuses_bad_input() {
    let scratch = Scratch::new().await;
    let env = scratch.env();
    let t = json_of(
        &run(
            &env,
            &["tenant", "create", "--shop", "granted.myshopify.com"],
        )
        .await,
    );
    let tenant: galantis_core::TenantId = t["tenant_id"].as_str().unwrap().parse().unwrap();
    let shop = ["--shop", "granted.myshopify.com"];
    let grant = |credits: &'static str, reason: &'static str| {
        let mut a = vec!["billing", "grant"];
        a.extend(shop);
        a.extend(["--credits", credits, "--reason", reason]);
        a
    };
    for (args, expect) in [
        (grant("0", "goodwill"), "--credits"),
        (grant("-5", "goodwill"), "--credits"),
        (grant("1000001", "goodwill"), "--credits"),
        (grant("abc", "goodwill"), "invalid value"),
        (grant("10", "   "), "--reason"),
        (grant("10", "bad\u{7}bell"), "--reason"),
        (
            vec![
                "billing",
                "grant",
                "--shop",
                "ghost.myshopify.com",
                "--credits",
                "10",
                "--reason",
                "x",
            ],
            "no tenant",
        ),
        (
            vec![
                "billing",
                "grant",
                "--shop",
                "granted.myshopify.com",
                "--credits",
                "10",
            ],
            "--reason",
        ),
    ] {
        let out = run(&env, &args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
    let (db, _, _) = galantis_server::app::open(&scratch.config()).await.unwrap();
    let kinds = |db: galantis_store::Db| async move {
        let mut tx = db.tenant_read(tenant).await.unwrap();
        let rows = galantis_store::tenant::billing::ledger(&mut tx, None, 100)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        rows
    };
    assert!(
        kinds(db.clone())
            .await
            .iter()
            .all(|e| e.kind != "operator_grant"),
        "refused grants wrote nothing"
    );
    let out = json_of(&run(&env, &grant("250", "support ticket #812: failed campaign")).await);
    assert_eq!(out["entry"]["kind"], "operator_grant");
    assert_eq!(out["entry"]["credits"], 250);
    assert_eq!(
        out["entry"]["reason"],
        "support ticket #812: failed campaign"
    );
    let grants: Vec<_> = kinds(db.clone())
        .await
        .into_iter()
        .filter(|e| e.kind == "operator_grant")
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].credits, 250);
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let balance = galantis_store::tenant::billing::balance(&mut tx)
        .await
        .unwrap();
    let sum = galantis_store::tenant::billing::ledger_sum(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (balance, sum),
        (10 + 250, 10 + 250),
        "trial allowance + grant"
    );
    db.close().await;
}

#[cfg(unix)]
fn loose_paths(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut loose = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            loose.push(format!("{} {mode:o}", p.display()));
        }
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    loose
}

/// Customer data and the master key are readable by the service's user only:
/// a fresh data directory is created private, and loose permissions left by
/// an older version are fixed at start-up (and logged).
#[cfg(unix)]
#[tokio::test]
async fn serve_keeps_the_data_directory_private() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("galantis-data");
    let env = vec![("GALANTIS_DATA_DIR".to_owned(), data.display().to_string())];
    // A tenant, so there are tenant files too.
    let out = command(&env)
        .current_dir(cwd.path())
        .args(["tenant", "create", "--shop", "private.myshopify.com"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(loose_paths(&data), Vec::<String>::new(), "created private");
    // As an older version left them.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stale = data.join("tenants/stale.db");
    std::fs::write(&stale, b"").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        data.join("control.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let port = free_port();
    let mut child = command(&env)
        .current_dir(cwd.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not come up");
    assert_eq!(
        loose_paths(&data),
        Vec::<String>::new(),
        "fixed at start-up"
    );
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains("stale.db") && log.contains("restricted to the owner"),
        "each fixed path is logged: {log}"
    );
}

/// Starts `serve` with `env`, waits until it is ready, stops it and returns
/// what it logged.
async fn serve_log(env: &[(String, String)]) -> String {
    let port = free_port();
    let mut child = command(env)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(up, "server did not come up: {log}");
    log
}

/// A production (PostgreSQL) configuration without a metrics token is
/// refused at start-up, whether or not /metrics has its own address: a
/// separate address is a network boundary, not a credential.
#[tokio::test]
async fn production_refuses_to_serve_metrics_without_a_token() {
    let scratch = Scratch::new().await;
    if scratch.engine() != galantis_store::Engine::Postgres {
        return;
    }
    let env: Vec<_> = scratch
        .env()
        .into_iter()
        .filter(|(k, _)| k != "GALANTIS_METRICS__TOKEN")
        .collect();
    let mut with_bind = env.clone();
    with_bind.push((
        "GALANTIS_METRICS__BIND".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    ));
    for env in [&env, &with_bind] {
        let out = run(
            env,
            &["serve", "--bind", &format!("127.0.0.1:{}", free_port())],
        )
        .await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("GALANTIS_METRICS__TOKEN"), "{err}");
    }
    // With the token (as `scratch.env()` has it), it serves.
    serve_log(&scratch.env()).await;
}
