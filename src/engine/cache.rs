//! The engine's in-memory view of the key table: resolved keys and principals, kept in step with
//! every write through the table's change hook.
//!
//! **Invariant:** an entry read from storage is inserted only if no mutation committed since the read
//! began (`KeyTable::seq` unchanged, checked under the shard lock); the change hook removes stale
//! entries under the same lock before the mutating call returns. So a revoked key is never served from
//! the cache after its revocation returned.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::decision::{Binding, KeyLimits};
use crate::store::{Change, KeyId, KeyRecord, Principal, PrincipalId, Workspace};
use crate::token::KeyHash;

const SHARDS: usize = 64;

/// Hashes keys that are already uniformly random (BLAKE3 outputs, sequential ids mixed).
#[derive(Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(w);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 ^= i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<PassThrough>>;

/// A key as the hot path needs it.
#[derive(Debug)]
pub(crate) struct CachedKey {
    pub record: KeyRecord,
    /// The policy generation `limits` was resolved against.
    pub generation: u64,
    pub limits: KeyLimits,
    /// Unix seconds of the last use seen in memory, and of the last one written to storage.
    pub last_used: AtomicU64,
    pub persisted: AtomicU64,
}

/// A principal as the hot path needs it.
#[derive(Debug)]
pub(crate) struct CachedPrincipal {
    pub principal: Principal,
    pub login_lower: String,
    /// The policy generation `bindings` were resolved against.
    pub generation: u64,
    /// Bindings that resolve under the current policy, with their names for decisions.
    pub bindings: Vec<Binding>,
    pub binding_names: Vec<(Arc<str>, Arc<str>)>,
    /// All stored bindings, including those the policy cannot use (for `explain`).
    pub stored_bindings: Vec<crate::store::Binding>,
    /// The scope of the principal's default workspace, if any.
    pub default_workspace: Option<(Arc<str>, Arc<str>)>,
    /// The principal's id as text, for self access.
    pub id_text: Box<str>,
}

#[derive(Default)]
pub(crate) struct Cache {
    keys: Vec<RwLock<Map<[u8; 32], Arc<CachedKey>>>>,
    principals: Vec<RwLock<Map<PrincipalId, Arc<CachedPrincipal>>>>,
    workspaces: RwLock<HashMap<String, Arc<Workspace>>>,
    /// Last-used times of entries evicted before they were written.
    pending_last_used: Mutex<Vec<(KeyId, u64)>>,
}

fn key_shard(hash: &KeyHash) -> usize {
    usize::from(hash.0[31]) % SHARDS
}

fn principal_shard(id: PrincipalId) -> usize {
    (id as usize) % SHARDS
}

impl Cache {
    pub fn new() -> Self {
        Cache {
            keys: (0..SHARDS).map(|_| RwLock::default()).collect(),
            principals: (0..SHARDS).map(|_| RwLock::default()).collect(),
            workspaces: RwLock::default(),
            pending_last_used: Mutex::default(),
        }
    }

    #[inline]
    pub fn key(&self, hash: &KeyHash) -> Option<Arc<CachedKey>> {
        self.keys[key_shard(hash)].read().get(&hash.0).cloned()
    }

    /// Inserts `entry` unless `still_current()` says a mutation committed since the read began.
    pub fn insert_key(&self, entry: Arc<CachedKey>, still_current: impl Fn() -> bool) {
        let hash = entry.record.hash;
        let mut shard = self.keys[key_shard(&hash)].write();
        if still_current() {
            shard.insert(hash.0, entry);
        }
    }

    #[inline]
    pub fn principal(&self, id: PrincipalId) -> Option<Arc<CachedPrincipal>> {
        self.principals[principal_shard(id)]
            .read()
            .get(&id)
            .cloned()
    }

    pub fn insert_principal(&self, entry: Arc<CachedPrincipal>, still_current: impl Fn() -> bool) {
        let id = entry.principal.id;
        let mut shard = self.principals[principal_shard(id)].write();
        if still_current() {
            shard.insert(id, entry);
        }
    }

    pub fn workspace(&self, public_key: &str) -> Option<Arc<Workspace>> {
        self.workspaces.read().get(public_key).cloned()
    }

    pub fn insert_workspace(&self, ws: Arc<Workspace>, still_current: impl Fn() -> bool) {
        let mut map = self.workspaces.write();
        if still_current() && map.len() < 100_000 {
            map.insert(ws.public_key.clone(), ws);
        }
    }

    /// Removes what a committed mutation made stale. Runs inside the table's change hook.
    pub fn invalidate(&self, change: &Change) {
        for hash in &change.keys {
            if let Some(old) = self.keys[key_shard(hash)].write().remove(&hash.0) {
                self.keep_last_used(&old);
            }
        }
        for &p in &change.principals {
            self.principals[principal_shard(p)].write().remove(&p);
        }
        if !change.workspaces.is_empty() {
            let mut map = self.workspaces.write();
            for w in &change.workspaces {
                map.remove(w);
            }
            drop(map);
            // Principals cache their default workspace's scope: drop them all (workspace changes are rare).
            for shard in &self.principals {
                shard.write().clear();
            }
        }
    }

    /// Drops everything (after a policy reload).
    pub fn clear(&self) {
        for shard in &self.keys {
            let mut s = shard.write();
            for e in s.values() {
                self.keep_last_used(e);
            }
            s.clear();
        }
        for shard in &self.principals {
            shard.write().clear();
        }
        self.workspaces.write().clear();
    }

    fn keep_last_used(&self, e: &CachedKey) {
        let used = e.last_used.load(Ordering::Relaxed);
        if used > e.persisted.load(Ordering::Relaxed) {
            self.pending_last_used.lock().push((e.record.id, used));
        }
    }

    /// Last-used times not yet written: (key id, unix seconds). Marks them written.
    pub fn take_dirty_last_used(&self) -> Vec<(KeyId, u64)> {
        let mut out = std::mem::take(&mut *self.pending_last_used.lock());
        for shard in &self.keys {
            for e in shard.read().values() {
                let used = e.last_used.load(Ordering::Relaxed);
                if used > e.persisted.load(Ordering::Relaxed) {
                    e.persisted.store(used, Ordering::Relaxed);
                    out.push((e.record.id, used));
                }
            }
        }
        out
    }

    /// Number of cached keys and principals.
    pub fn len(&self) -> (usize, usize) {
        (
            self.keys.iter().map(|s| s.read().len()).sum(),
            self.principals.iter().map(|s| s.read().len()).sum(),
        )
    }
}
