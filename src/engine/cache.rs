//! The engine's in-memory view of the key table: resolved keys and principals, kept in step with
//! every write through the table's change hook.
//!
//! **Invariant:** an entry read from storage is inserted only if no mutation committed since the read
//! began (`KeyTable::seq` unchanged, checked under the shard lock); the change hook removes stale
//! entries under the same lock before the mutating call returns. So a revoked key is never served from
//! the cache after its revocation returned.
//!
//! A key entry points straight at its owner's entry, so a warm decision makes one map lookup, not
//! two. That pointer stays safe because every principal entry a key entry can hold is either the one
//! in the principal map or marked stale: an entry enters a key entry only after it entered the map
//! (or the key entry is not inserted: the sequence moved), and every path that takes an entry out of
//! the map (invalidation, replacement, policy reload, a workspace change) marks it stale first.
//!
//! Key entries follow the same rule, for the credential memo that holds them: a key entry that is
//! not in the map (removed, replaced, cleared, or refused at insertion because the sequence moved)
//! is marked retired, under the shard's write lock, before the mutating call returns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::decision::{Binding, KeyLimits};
use crate::store::{Change, KeyId, KeyKind, KeyRecord, Principal, PrincipalId, Workspace};
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

/// A key as the hot path needs it: its owner resolved, the full record behind a pointer.
///
/// **Layout:** a decision on a remembered credential reads only the first 64 bytes (`repr(C)`,
/// aligned to a cache line): with 100,000 keys most entries are out of the processor's caches, and
/// each further line read was one more miss per decision (nine per `/auth` request before, by
/// callgrind's cache simulation). The test `hot_fields_share_a_cache_line` keeps it so.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct CachedKey {
    /// The owner as resolved when this entry was filled. Once it is marked stale, the engine
    /// resolves the owner again and replaces this entry.
    pub principal: Arc<CachedPrincipal>,
    /// The policy generation `limits` was resolved against.
    pub generation: u64,
    pub expires_at: Option<u64>,
    /// Unix seconds of the last use seen in memory, and of the last one written to storage.
    pub last_used: AtomicU64,
    pub id: KeyId,
    pub active: bool,
    pub admin: bool,
    /// Set when this entry leaves the map or never entered it (see the module's invariant): a
    /// holder outside the map (the credential memo) must then look the key up again.
    retired: AtomicBool,
    /// `limits` restrict nothing (most keys): decisions read the shared [`KeyLimits::NONE`]
    /// instead of the lines `limits` sits on.
    unlimited: bool,
    // Read when a credential is first seen, on denials, and for limited keys.
    pub hash: KeyHash,
    pub owner: PrincipalId,
    pub persisted: AtomicU64,
    pub record: Box<KeyRecord>,
    limits: KeyLimits,
}

impl CachedKey {
    /// An entry for `record` owned by `principal`.
    pub fn new(
        record: KeyRecord,
        principal: Arc<CachedPrincipal>,
        generation: u64,
        limits: KeyLimits,
    ) -> Self {
        let last = record.last_used.unwrap_or(0);
        CachedKey {
            hash: record.hash,
            id: record.id,
            owner: record.owner,
            principal,
            generation,
            expires_at: record.expires_at,
            last_used: AtomicU64::new(last),
            active: record.active,
            admin: record.kind == KeyKind::Admin,
            retired: AtomicBool::new(false),
            unlimited: limits == KeyLimits::NONE,
            limits,
            persisted: AtomicU64::new(last),
            record: Box::new(record),
        }
    }

    /// The same key with another resolution of its owner; last-used times carried over.
    pub fn with_principal(&self, principal: Arc<CachedPrincipal>) -> Self {
        CachedKey {
            hash: self.hash,
            id: self.id,
            owner: self.owner,
            principal,
            generation: self.generation,
            expires_at: self.expires_at,
            last_used: AtomicU64::new(self.last_used.load(Ordering::Relaxed)),
            active: self.active,
            admin: self.admin,
            retired: AtomicBool::new(false),
            unlimited: self.unlimited,
            limits: self.limits.clone(),
            persisted: AtomicU64::new(self.persisted.load(Ordering::Relaxed)),
            record: self.record.clone(),
        }
    }

    /// What the key limits on top of its owner's roles (resolved under `generation`).
    #[inline]
    pub fn limits(&self) -> &KeyLimits {
        if self.unlimited {
            &KeyLimits::NONE
        } else {
            &self.limits
        }
    }

    /// No longer the map's entry for its key (see the module's invariant).
    #[inline]
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

/// A key entry for unit tests: key 1 of principal 1, hash `hash`, in the map of no cache.
#[cfg(test)]
pub(crate) fn test_key(hash: KeyHash) -> Arc<CachedKey> {
    use crate::store::PrincipalKind;
    let principal = Principal {
        id: 1,
        kind: PrincipalKind::User,
        login: "a@example.com".into(),
        default_workspace: None,
        created_at: 0,
    };
    let owner = Arc::new(CachedPrincipal {
        stale: AtomicBool::new(false),
        generation: 1,
        id: 1,
        id_text: IdText::new(1),
        bindings: Bindings::default(),
        login_lower: SmallText::new("a@example.com"),
        default_workspace: None,
        principal,
        stored_bindings: Vec::new(),
    });
    let record = KeyRecord {
        id: 1,
        owner: 1,
        name: "k".into(),
        hash,
        display_prefix: String::new(),
        created_at: 0,
        expires_at: None,
        active: true,
        last_used: None,
        read_only: false,
        permissions: None,
        scope: None,
        kind: KeyKind::Standard,
        imported: false,
        rotated_to: None,
    };
    Arc::new(CachedKey::new(record, owner, 1, KeyLimits::default()))
}

/// A principal's id as decimal text, inline (self access compares it with a resource's first id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdText(arrayvec::ArrayString<20>);

impl IdText {
    pub fn new(id: PrincipalId) -> Self {
        let mut text = arrayvec::ArrayString::new();
        // A u64 has at most 20 digits.
        let _ = text.try_push_str(crate::text::decimal(id, &mut [0u8; 20]));
        IdText(text)
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login kept inline when short (an email, almost always).
pub(crate) type SmallText = crate::text::InlineStr<44>;

/// A principal's resolved bindings: up to two inline (nearly every principal), so a decision reads
/// them from the cache entry itself; more than two all go to the heap.
///
/// **Layout:** the number of inline bindings comes first, then the bindings (`ArrayVec` is
/// `repr(C)`, length first), so at the principal entry's offset 56 a decision reads the count in
/// the entry's first line and a first binding in its second. `smallvec` put its length after both
/// items, a third line: one more cache miss per decision over a large key table.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Bindings {
    inline: arrayvec::ArrayVec<Binding, 2>,
    /// Every binding, when there are more than fit inline (then `inline` is empty).
    spilled: Vec<Binding>,
}

impl Bindings {
    /// Where the first inline binding is (or would be): an address to prefetch, read by nothing.
    #[inline]
    pub fn first_inline(&self) -> *const Binding {
        self.inline.as_ptr()
    }
}

impl std::ops::Deref for Bindings {
    type Target = [Binding];

    fn deref(&self) -> &[Binding] {
        if self.inline.is_empty() {
            &self.spilled
        } else {
            &self.inline
        }
    }
}

impl FromIterator<Binding> for Bindings {
    fn from_iter<I: IntoIterator<Item = Binding>>(iter: I) -> Self {
        let all: Vec<Binding> = iter.into_iter().collect();
        if all.len() <= 2 {
            Bindings {
                inline: all.into_iter().collect(),
                spilled: Vec::new(),
            }
        } else {
            Bindings {
                inline: arrayvec::ArrayVec::new(),
                spilled: all,
            }
        }
    }
}

/// A principal as the hot path needs it.
///
/// **Layout:** as for [`CachedKey`], what every decision reads comes first, from a cache line's
/// start: the header fields, then the bindings (the first ends in the second line), then the login
/// (compared when an `email:key` credential is first read, not on each decision).
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct CachedPrincipal {
    /// Set when the cache drops this entry (a change to the principal, its bindings or workspaces,
    /// or a policy reload), before the mutating call returns; key entries that still point here
    /// then resolve their owner again.
    pub stale: AtomicBool,
    /// The policy generation `bindings` were resolved against.
    pub generation: u64,
    pub id: PrincipalId,
    /// The principal's id as text, for self access.
    pub id_text: IdText,
    /// The principal's default workspace (its public key and scope), if any.
    pub default_workspace: Option<Arc<(Arc<str>, Arc<str>)>>,
    /// Bindings that resolve under the current policy (their scope texts name them in decisions).
    pub bindings: Bindings,
    /// Read when a Basic `email:key` is first seen (the memo remembers the comparison).
    pub login_lower: SmallText,
    pub principal: Principal,
    /// All stored bindings, including those the policy cannot use (for `explain`).
    pub stored_bindings: Vec<crate::store::Binding>,
}

impl CachedPrincipal {
    /// Usable for a decision under policy `generation`.
    #[inline]
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation == generation && !self.stale.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.stale.store(true, Ordering::Release);
    }
}

/// A lock on its own cache lines, so readers of neighbouring shards on other cores do not contend
/// for one line (every read lock writes its lock word).
#[derive(Default)]
#[repr(align(128))]
struct Shard<T>(RwLock<T>);

impl<T> std::ops::Deref for Shard<T> {
    type Target = RwLock<T>;
    fn deref(&self) -> &RwLock<T> {
        &self.0
    }
}

#[derive(Default)]
pub(crate) struct Cache {
    keys: Vec<Shard<Map<[u8; 32], Arc<CachedKey>>>>,
    principals: Vec<Shard<Map<PrincipalId, Arc<CachedPrincipal>>>>,
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
            keys: (0..SHARDS).map(|_| Shard::default()).collect(),
            principals: (0..SHARDS).map(|_| Shard::default()).collect(),
            workspaces: RwLock::default(),
            pending_last_used: Mutex::default(),
        }
    }

    #[inline]
    pub fn key(&self, hash: &KeyHash) -> Option<Arc<CachedKey>> {
        self.keys[key_shard(hash)].read().get(&hash.0).cloned()
    }

    /// Runs `f` on the cached entry of `hash` while its shard is read-locked (so the change hook
    /// cannot remove it meanwhile); `None` if there is none. `f` must not lock this cache's key
    /// shards.
    #[inline]
    pub fn with_key<R>(&self, hash: &KeyHash, f: impl FnOnce(&Arc<CachedKey>) -> R) -> Option<R> {
        let shard = self.keys[key_shard(hash)].read();
        shard.get(&hash.0).map(f)
    }

    /// Inserts `entry` unless `still_current()` says a mutation committed since the read began (then
    /// `entry` is retired: it may be used for the decision at hand, and never again).
    pub fn insert_key(&self, entry: Arc<CachedKey>, still_current: impl Fn() -> bool) {
        let hash = entry.hash;
        let mut shard = self.keys[key_shard(&hash)].write();
        if still_current() {
            if let Some(old) = shard.insert(hash.0, entry) {
                self.drop_key(&old);
            }
        } else {
            entry.retire();
        }
    }

    #[inline]
    pub fn principal(&self, id: PrincipalId) -> Option<Arc<CachedPrincipal>> {
        self.principals[principal_shard(id)]
            .read()
            .get(&id)
            .cloned()
    }

    /// Inserts `entry` unless `still_current()` says a mutation committed since the read began, and
    /// returns the entry to use: one already cached for the same generation wins over `entry`, so
    /// that every entry a key entry points to is either in the map or marked stale.
    pub fn insert_principal(
        &self,
        entry: Arc<CachedPrincipal>,
        still_current: impl Fn() -> bool,
    ) -> Arc<CachedPrincipal> {
        let id = entry.id;
        let mut shard = self.principals[principal_shard(id)].write();
        if !still_current() {
            return entry;
        }
        if let Some(existing) = shard.get(&id) {
            if existing.is_current(entry.generation) {
                return Arc::clone(existing);
            }
            existing.retire();
        }
        shard.insert(id, Arc::clone(&entry));
        entry
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
                self.drop_key(&old);
            }
        }
        for &p in &change.principals {
            if let Some(old) = self.principals[principal_shard(p)].write().remove(&p) {
                old.retire();
            }
        }
        if !change.workspaces.is_empty() {
            let mut map = self.workspaces.write();
            for w in &change.workspaces {
                map.remove(w);
            }
            drop(map);
            // Principals cache their default workspace's scope: drop them all (workspace changes are rare).
            self.clear_principals();
        }
    }

    fn clear_principals(&self) {
        for shard in &self.principals {
            let mut s = shard.write();
            for p in s.values() {
                p.retire();
            }
            s.clear();
        }
    }

    /// Drops everything (after a policy reload).
    pub fn clear(&self) {
        for shard in &self.keys {
            let mut s = shard.write();
            for e in s.values() {
                self.drop_key(e);
            }
            s.clear();
        }
        self.clear_principals();
        self.workspaces.write().clear();
    }

    /// What happens to a key entry that leaves the map (called under its shard's write lock).
    fn drop_key(&self, e: &CachedKey) {
        e.retire();
        self.keep_last_used(e);
    }

    fn keep_last_used(&self, e: &CachedKey) {
        let used = e.last_used.load(Ordering::Relaxed);
        if used > e.persisted.load(Ordering::Relaxed) {
            self.pending_last_used.lock().push((e.id, used));
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
                    out.push((e.id, used));
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

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// What a decision on a remembered credential reads lies in one cache line of the key entry
    /// (the entry is aligned to one), and the principal's header fields in the first line of its.
    #[test]
    fn hot_fields_share_a_cache_line() {
        assert_eq!(std::mem::align_of::<CachedKey>(), 64);
        let key_hot = [
            offset_of!(CachedKey, principal) + size_of::<Arc<CachedPrincipal>>(),
            offset_of!(CachedKey, generation) + 8,
            offset_of!(CachedKey, expires_at) + size_of::<Option<u64>>(),
            offset_of!(CachedKey, last_used) + 8,
            offset_of!(CachedKey, id) + 8,
            offset_of!(CachedKey, active) + 1,
            offset_of!(CachedKey, admin) + 1,
            offset_of!(CachedKey, retired) + 1,
            offset_of!(CachedKey, unlimited) + 1,
        ];
        assert!(key_hot.iter().all(|end| *end <= 64), "{key_hot:?}");
        assert_eq!(std::mem::align_of::<CachedPrincipal>(), 64);
        let principal_hot = [
            offset_of!(CachedPrincipal, stale) + 1,
            offset_of!(CachedPrincipal, generation) + 8,
            offset_of!(CachedPrincipal, id) + 8,
            offset_of!(CachedPrincipal, id_text) + size_of::<IdText>(),
            offset_of!(CachedPrincipal, default_workspace) + 8,
        ];
        assert!(
            principal_hot.iter().all(|end| *end <= 64),
            "{principal_hot:?}"
        );
        // The bindings' count in the first line, a first binding within the second.
        let key = test_key(KeyHash([1; 32]));
        let p = &*key.principal;
        let at = |x: *const u8| x as usize - (p as *const CachedPrincipal as usize);
        let count = offset_of!(CachedPrincipal, bindings) + offset_of!(Bindings, inline);
        let first = at(p.bindings.inline.as_ptr().cast()) + size_of::<crate::decision::Binding>();
        assert!(
            count + 4 <= 64 && first <= 128,
            "count at {count}, first binding ends at {first}"
        );
        // The memo prefetches an owner entry's first two lines: the header and the first binding.
        let starts = at(p.bindings.first_inline().cast());
        assert!(
            starts >= 64,
            "the first binding starts at {starts}, on the second line"
        );
        assert_eq!(std::mem::align_of::<CachedPrincipal>(), 64);
    }
}
