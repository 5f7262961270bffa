//! The in-process cache of API keys that the gateway check reads (versioned: a fill that
//! raced an invalidation is dropped), and the invalidation every area that changes a key
//! or its account calls, which also reaches the other instances through the store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use super::ServiceResult;
use crate::clock::Millis;
use crate::domain::api_key::{Allowlist, Permissions, Verifier};
use crate::store::SharedStore;

/// Cached entries beyond this are dropped wholesale (a flood of distinct keys cannot grow
/// memory without bound; the next requests simply reload).
const CACHE_LIMIT: usize = 200_000;

/// A key ready to verify requests.
#[derive(Debug)]
pub struct CachedKey {
    pub api_key: String,
    pub account_id: String,
    pub uid: String,
    /// `None` when the stored type, secret or public key cannot be used (the key is refused).
    pub verifier: Option<Verifier>,
    pub permissions: Permissions,
    /// `permissions` as the identity header sends it, made once per key.
    pub permissions_csv: String,
    pub allowlist: Allowlist,
    pub expires_at: Option<Millis>,
    pub frozen: bool,
    /// Suspended by its owner.
    pub suspended: bool,
    /// End of the account's latest withdrawal lock (compared with the clock on each request).
    pub withdrawals_locked_until: Option<Millis>,
    /// The stored permissions or allowlist did not decode: refused after the signature
    /// check (fail closed), never run with what could be read.
    pub unusable: bool,
}

/// The cached keys and the generation: every invalidation bumps it, and a fill stores its
/// entry only if no invalidation happened since before its database read. Otherwise a read
/// that raced an eviction (a freeze, a deletion) could put the key's old state back with
/// nothing left to evict it.
#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<String, Arc<CachedKey>>,
}

/// Taken before the database read of a cache fill; see [`KeyCache::fill`].
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

/// The keys in memory, and what the hot path notes for the timed job to write in batches.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<Entries>,
    pub(super) used: Mutex<HashMap<String, (Millis, IpAddr)>>,
    pub(super) refused_ips: Mutex<HashMap<String, (Millis, IpAddr)>>,
    pub(super) last_ip_alert: Mutex<HashMap<String, Millis>>,
}

impl KeyCache {
    pub fn get(&self, key: &str) -> Option<Arc<CachedKey>> {
        self.keys.read().ok()?.map.get(key).cloned()
    }

    /// Call before reading a key from the database to fill the cache.
    pub fn begin_fill(&self) -> FillTicket {
        FillTicket(self.keys.read().map_or(u64::MAX, |e| e.generation))
    }

    /// Stores `entry` unless an invalidation happened since `ticket` was taken (then the
    /// read may be stale; the next request reads again). Returns whether it was stored.
    pub fn fill(&self, ticket: FillTicket, entry: Arc<CachedKey>) -> bool {
        let Ok(mut e) = self.keys.write() else {
            return false;
        };
        if e.generation != ticket.0 {
            return false;
        }
        if e.map.len() >= CACHE_LIMIT {
            e.map.clear();
        }
        e.map.insert(entry.api_key.clone(), entry);
        true
    }

    /// Applies an invalidation message: `key:<api_key>`, `account:<id>`, or `all`;
    /// anything else (the listener's `ping`) changes nothing.
    pub fn invalidate(&self, what: &str) {
        let Ok(mut e) = self.keys.write() else {
            return;
        };
        if let Some(key) = what.strip_prefix("key:") {
            e.map.remove(key);
        } else if let Some(account) = what.strip_prefix("account:") {
            e.map.retain(|_, v| v.account_id != account);
        } else if what == "all" {
            e.map.clear();
        } else {
            return;
        }
        e.generation = e.generation.wrapping_add(1);
    }

    pub fn len(&self) -> usize {
        self.keys.read().map_or(0, |e| e.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn note_use(&self, key: &str, at: Millis, ip: IpAddr) {
        if let Ok(mut used) = self.used.lock() {
            // Most uses are by a key already noted since the last flush: no allocation.
            match used.get_mut(key) {
                Some(last) => *last = (at, ip),
                None => {
                    used.insert(key.to_owned(), (at, ip));
                }
            }
        }
    }

    pub fn note_refused_ip(&self, key: &str, at: Millis, ip: IpAddr) {
        if let Ok(mut r) = self.refused_ips.lock() {
            r.entry(key.to_owned()).or_insert((at, ip));
        }
    }
}

/// Evicts keys here and, through the store (PostgreSQL `NOTIFY`), on every instance.
pub struct CacheInvalidator {
    pub(crate) store: SharedStore,
    pub(crate) cache: Arc<KeyCache>,
}

impl CacheInvalidator {
    /// Drops a key (or all of an account's keys) from every instance's cache.
    pub async fn invalidate_keys(&self, what: &str) -> ServiceResult<()> {
        self.cache.invalidate(what);
        self.store.broadcast_invalidation(what).await?;
        Ok(())
    }
}
