//! The benchmark harness cannot rot: every scenario of `galantis bench all`
//! runs at `--size small` on the test's engine (SQLite, or scratch databases
//! at TEST_DATABASE_URL) and produces figures. No peers, and no timing
//! assertions: only that the measured figures exist and are positive.

use galantis_server::bench::peers::Peers;
use galantis_server::bench::{Ctx, Engine, Size, run_all, scenarios};
use galantis_server::config::Config;
use secrecy::SecretString;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_produces_figures_at_a_tiny_size() {
    let mut config = Config::default();
    let engine = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => {
            config.database_url = Some(SecretString::from(url));
            Engine::Postgres
        }
        Err(_) => Engine::Sqlite,
    };
    let mut ctx = Ctx::new(&config, engine, Size::Small, Peers::none(), false).unwrap();
    let all = scenarios();
    let report = run_all(&mut ctx, &all).await.unwrap();
    assert_eq!(report.scenarios.len(), all.len());
    for s in &report.scenarios {
        assert!(!s.figures.is_empty(), "{}: no figures", s.scenario);
        for f in &s.figures {
            assert!(
                f.value.is_finite() && f.value >= 0.0,
                "{}: {} = {}",
                s.scenario,
                f.name,
                f.value
            );
            if f.unit == "/s" || f.unit == "ms" {
                assert!(f.value > 0.0, "{}: {} = {}", s.scenario, f.name, f.value);
            }
        }
    }
    let names: Vec<_> = report.scenarios.iter().map(|s| s.scenario).collect();
    assert_eq!(
        names,
        [
            "queue", "ingest", "send", "inbox", "flows", "campaign", "restock"
        ]
    );
}
