//! A hung test must fail the run, not use up CI's time limit in silence.
//!
//! Every [`TestApp`](crate::TestApp) is registered here with the name of the
//! test thread that spawned it (libtest names threads after tests); one
//! background thread checks them. A test app still alive after
//! [`limit`] is reported by name and the test process exits with a failure,
//! so `cargo test` ends with the culprit named instead of hanging.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default bound on one test app's life. Tests take seconds; the slowest
/// take about a minute on a loaded 2-core machine. Override with
/// `GALANTIS_TEST_WATCHDOG_SECS`.
const DEFAULT_LIMIT: Duration = Duration::from_secs(600);

static LIVE: OnceLock<Mutex<HashMap<u64, (String, Instant)>>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(1);

fn limit() -> Duration {
    std::env::var("GALANTIS_TEST_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIMIT)
}

fn live() -> &'static Mutex<HashMap<u64, (String, Instant)>> {
    LIVE.get_or_init(|| {
        let limit = limit();
        std::thread::Builder::new()
            .name("galantis-test-watchdog".into())
            .spawn(move || watch(limit))
            .expect("start the test watchdog");
        Mutex::new(HashMap::new())
    })
}

fn watch(limit: Duration) {
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let map = live().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, since)) = map.values().find(|(_, since)| since.elapsed() > limit) {
            // Straight to the process's stderr: libtest captures `eprintln!`
            // of test threads, and this thread inherited a test's capture.
            let _ = writeln!(
                std::io::stderr(),
                "\nwatchdog: test `{name}` still running after {}s (limit {}s); \
                 failing the test process",
                since.elapsed().as_secs(),
                limit.as_secs()
            );
            std::process::exit(101);
        }
    }
}

/// Registration of one live test app; dropping it ends the watch.
pub(crate) struct Watched(u64);

pub(crate) fn watch_current_test() -> Watched {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    live()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (name, Instant::now()));
    Watched(id)
}

impl Drop for Watched {
    fn drop(&mut self) {
        live()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}
