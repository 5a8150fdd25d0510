//! A short-lived, per-process cache of resolved API tokens, so the hot API
//! path does not query the control database on every request (issue 14,
//! ADR 0032).
//!
//! Security bounds:
//! - An entry lives at most [`AUTH_CACHE_TTL`] (2 s, monotonic time): a token
//!   revoked, a member removed or re-roled, or a tenant deactivated *on
//!   another node* stops working there within that time.
//! - On the node that made the change it stops working at once: every such
//!   change ([`super::tokens::revoke`], [`super::members::set_role`],
//!   [`super::members::remove`], the tenant status change) calls
//!   [`AuthCache::invalidate_all`] after its commit. A lookup that read the
//!   database before that commit cannot re-insert its stale result: inserts
//!   carry the generation seen before the read and are dropped (or removed
//!   again) when it moved.
//! - Only successful lookups are cached (an unknown token always reaches the
//!   database), keyed by the SHA-256 of the token, never the token itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::tokens::Principal;

/// How long a resolved token is trusted without asking the database again.
/// Must stay ≤ 2 s (documented revocation bound across nodes).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// Above this many entries the cache is emptied rather than grown.
const MAX_ENTRIES: usize = 50_000;

pub(crate) type Key = [u8; 32];

#[derive(Default)]
pub struct AuthCache {
    entries: DashMap<Key, (Instant, Principal)>,
    generation: AtomicU64,
}

impl AuthCache {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Principal> {
        let hit = self.entries.get(key).and_then(|e| {
            let (at, p) = &*e;
            (at.elapsed() < AUTH_CACHE_TTL).then(|| p.clone())
        });
        if hit.is_none() {
            self.entries
                .remove_if(key, |_, (at, _)| at.elapsed() >= AUTH_CACHE_TTL);
        }
        hit
    }

    /// Caches `p` if no invalidation happened since `seen` was read (before
    /// the database lookup that produced `p`).
    pub(crate) fn insert(&self, key: Key, p: Principal, seen: u64) {
        if self.generation() != seen {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key, (Instant::now(), p));
        // An invalidation between the check and the insert: undo.
        if self.generation() != seen {
            self.entries.remove(&key);
        }
    }

    /// Records a `last_used_at` write in the cached copy, so the next
    /// requests within the TTL do not write it again.
    pub(crate) fn touched(&self, key: &Key, at: DateTime<Utc>) {
        if let Some(mut e) = self.entries.get_mut(key) {
            e.1.set_last_used_at(at);
        }
    }

    /// Forgets every cached token. Call after committing any change that can
    /// withdraw or narrow access (revocation, member removal or role change,
    /// tenant deactivation).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}
