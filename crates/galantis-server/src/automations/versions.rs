//! Parsed flow versions with what they read ([`FactNeeds`]), cached so a
//! step neither re-reads nor re-parses its version.
//!
//! A version that has runs never changes (`automations::update` replaces a
//! version in place only while it has none), so a run's version is cached
//! by (automation, version) alone. An automation's current flow may still
//! be a draft edited in place, so that cache is checked against the JSON
//! the caller holds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use galantis_core::automation::{FactNeeds, Flow};
use galantis_store::tenant::automations::{self, Automation};
use galantis_store::{StoreError, TenantTx};
use serde_json::Value;
use uuid::Uuid;

/// A parsed version and the facts it reads.
pub(super) struct Version {
    pub flow: Flow,
    pub needs: FactNeeds,
}

impl Version {
    fn parse(json: &Value) -> Option<Version> {
        let flow = Flow::parse(json).ok()?;
        let needs = FactNeeds::of(&flow);
        Some(Version { flow, needs })
    }
}

/// Past this many entries a cache starts afresh (versions are small; this
/// bounds a process serving many tenants).
const MAX_ENTRIES: usize = 4096;

/// (automation, version).
type Key = (Uuid, i32);
type Cache<V> = LazyLock<Mutex<HashMap<Key, V>>>;
static OF_RUNS: Cache<Arc<Version>> = LazyLock::new(Default::default);
/// With the JSON it was parsed from.
static CURRENT: Cache<(Value, Arc<Version>)> = LazyLock::new(Default::default);

fn put<V>(map: &Mutex<HashMap<Key, V>>, key: Key, v: V) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= MAX_ENTRIES {
        m.clear();
    }
    m.insert(key, v);
}

/// The version a run is on (`None`: gone or not parseable).
pub(super) async fn of_run(
    tx: &mut TenantTx,
    automation_id: Uuid,
    version: i32,
) -> Result<Option<Arc<Version>>, StoreError> {
    let key = (automation_id, version);
    if let Some(v) = OF_RUNS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(Some(v.clone()));
    }
    let Some(json) = automations::version_flow(tx, automation_id, version).await? else {
        return Ok(None);
    };
    let Some(v) = Version::parse(&json).map(Arc::new) else {
        return Ok(None);
    };
    put(&OF_RUNS, key, v.clone());
    Ok(Some(v))
}

/// The automation's current flow, parsed (`None`: not parseable).
pub(super) fn current(a: &Automation) -> Option<Arc<Version>> {
    let key = (a.id, a.current_version);
    if let Some((json, v)) = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
        && *json == a.flow
    {
        return Some(v.clone());
    }
    let v = Arc::new(Version::parse(&a.flow)?);
    put(&CURRENT, key, (a.flow.clone(), v.clone()));
    Some(v)
}
