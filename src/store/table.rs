//! The key table: principals, keys, bindings, workspaces and the audit log over one [`Backend`].
//!
//! Reads go straight to the backend. Writers are serialized by one mutex; each mutation reads, checks and
//! then writes ONE atomic batch holding the records, their index entries, the audit entry with the next
//! sequence number and the updated counters, flushes it (unless in [`KeyTable::bulk`] mode), bumps the
//! in-memory sequence number and notifies subscribers, all before returning.
//!
//! Refused calls are the exception: [`KeyTable::record_denial`] only queues them in memory (bounded), and
//! [`KeyTable::write_denials`] writes the queue as one batch of audit entries that are not changes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard, RwLock};

use super::backend::{Backend, Order, SledBackend, WriteBatch};
use super::codec::{decode, encode, Record};
use super::error::{ImportError, Result, StoreError};
use super::layout::{self, LAYOUT_VERSION, MAGIC};
use super::record::{
    Actor, AuditEntry, AuditQuery, Binding, KeyId, KeyRecord, NewDenial, NewKey, NewPrincipal, Op,
    Principal, PrincipalId, Workspace,
};
use super::validate;
use crate::token::{classify, display_prefix, Hasher, KeyFormat, KeyHash, Secret, TokenShape};

/// Options for opening a key table.
#[derive(Clone)]
pub struct StoreOptions {
    /// Server-side secret mixed into every key hash (BLAKE3 keyed mode). A table must always be opened with
    /// the pepper it was written with, or no key will be found.
    pub pepper: Option<[u8; 32]>,
    /// The format of generated keys.
    pub key_format: KeyFormat,
    /// Upper bound, in bytes, of the memory sled may use to cache the database's pages (default
    /// [`DEFAULT_CACHE_CAPACITY`]; sled lowers it to the process's cgroup memory limit). Memory is only
    /// taken as the table grows. A table whose pages do not fit reads evicted pages back from disk on
    /// lookups, which makes the slowest lookups slower. At 1,000,000 keys on a shared 2-core machine the
    /// steady-state p99 of `key_by_hash` was 51 and 122 µs with 2 GiB (two runs), 35 and 42 µs with 8 GiB
    /// (two runs; the process held 1.2 to 1.45 GB): runs vary a lot there.
    pub cache_capacity: u64,
}

/// The default [`StoreOptions::cache_capacity`]: 8 GiB, so that a table of a few million keys stays in
/// memory (sled's accounting needs more than the ~1.5 KB per key actually resident).
pub const DEFAULT_CACHE_CAPACITY: u64 = 8 * 1024 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pepper: None,
            key_format: KeyFormat::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pepper = if self.pepper.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        f.debug_struct("StoreOptions")
            .field("pepper", &pepper)
            .field("key_format", &self.key_format)
            .field("cache_capacity", &self.cache_capacity)
            .finish()
    }
}

/// What a committed mutation made stale. Delivered to subscribers after the mutation is applied (and, outside
/// bulk mode, flushed) and after [`KeyTable::seq`] was bumped to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The sequence number of the mutation.
    pub seq: u64,
    /// Hashes of every key whose record was created, changed or removed.
    pub keys: Vec<KeyHash>,
    /// Principals whose record or bindings were created, changed or removed.
    pub principals: Vec<PrincipalId>,
    /// Public keys of workspaces created, changed or removed.
    pub workspaces: Vec<String>,
}

/// A change subscriber. It runs while the table's writer lock is held: it must be quick, must not panic,
/// and must not mutate the same table (that returns [`StoreError::Reentrant`]).
pub type Subscriber = Box<dyn Fn(&Change) + Send + Sync>;

type Subscribers = Arc<Vec<Arc<dyn Fn(&Change) + Send + Sync>>>;

/// At most this many refused calls wait in memory to be written to the audit log (see
/// [`KeyTable::record_denial`]); beyond, they are only counted.
pub const DENIAL_QUEUE_MAX: usize = 1000;
/// The longest request path an [`Op::AccessDenied`] entry records, in bytes; a longer one is cut and
/// ends with `...`.
pub const DENIAL_PATH_MAX: usize = 256;
/// The longest method and reason code an [`Op::AccessDenied`] entry records, in bytes.
const DENIAL_FIELD_MAX: usize = 64;

/// Refused calls waiting to be written to the audit log: [`KeyTable::pending_denials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingDenials {
    /// Refusals queued, at most [`DENIAL_QUEUE_MAX`].
    pub queued: usize,
    /// Refusals that found the queue full, to be written as one [`Op::DenialsNotRecorded`] entry.
    pub dropped: u64,
}

/// The queue behind [`KeyTable::record_denial`]: time, actor and operation of each refusal.
#[derive(Default)]
struct Denials {
    queued: Vec<(u64, Actor, Op)>,
    dropped: u64,
}

/// `s` cut to at most `max` bytes (ending with `...` when cut), control characters replaced by U+FFFD.
fn clip_field(s: &str, max: usize) -> String {
    let clean = |c: char| if c.is_control() { '\u{fffd}' } else { c };
    let fits = s.chars().map(|c| clean(c).len_utf8()).sum::<usize>() <= max;
    let budget = if fits { max } else { max.saturating_sub(3) };
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().map(clean) {
        if out.len() + c.len_utf8() > budget {
            break;
        }
        out.push(c);
    }
    if !fits {
        out.push_str("...");
    }
    out
}

/// Counters kept in meta and cached under the writer lock.
#[derive(Debug, Clone, Copy)]
struct Counters {
    seq: u64,
    next_principal: PrincipalId,
    next_key: KeyId,
}

static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Ids of the tables whose writer lock this thread holds.
    static WRITING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The key table. `Send + Sync`; every method takes `&self`.
pub struct KeyTable {
    backend: Box<dyn Backend>,
    hasher: Hasher,
    format: KeyFormat,
    writer: Mutex<Counters>,
    seq: AtomicU64,
    subscribers: RwLock<Subscribers>,
    denials: Mutex<Denials>,
    path: Option<PathBuf>,
    id: u64,
}

impl fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTable")
            .field("path", &self.path)
            .field("seq", &self.seq())
            .field("hasher", &self.hasher)
            .field("key_format", &self.format)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn u64_value(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// The record key of the hash prefix stored in the key id index.
fn hash_key(prefix: &[u8]) -> Result<[u8; 1 + layout::HASH_KEY_BYTES]> {
    let prefix: &[u8; layout::HASH_KEY_BYTES] = prefix.try_into().map_err(|_| {
        StoreError::corrupt(
            "key id index entry",
            format!(
                "expected {} bytes, found {}",
                layout::HASH_KEY_BYTES,
                prefix.len()
            ),
        )
    })?;
    Ok(layout::key_by_hash_prefix(prefix))
}

/// The record the key id index led to, which must exist and carry that id.
fn record_at_hash(id: KeyId, hash: &[u8], record: Option<Vec<u8>>) -> Result<KeyRecord> {
    let record: KeyRecord = match record {
        Some(bytes) => decode(&bytes)?,
        None => {
            return Err(StoreError::corrupt(
                "key id index entry",
                format!("key {id} has no record"),
            ))
        }
    };
    if record.id != id || !record.hash.0.starts_with(hash) {
        return Err(StoreError::corrupt(
            "key id index entry",
            format!("key {id} leads to the record of key {}", record.id),
        ));
    }
    Ok(record)
}

/// Migrates a layout version 1 table (key records under their id, hash index to ids) to the current
/// layout (records under their hash prefix, id index to hash prefixes), in one atomic batch with the
/// new marker.
fn migrate_v1(backend: &dyn Backend) -> Result<()> {
    let mut batch = WriteBatch::new();
    for entry in backend.scan_prefix(&[layout::KEY], Order::Forward) {
        let (k, v) = entry?;
        let rec: KeyRecord = decode(&v)?;
        if layout::key(rec.id).as_slice() != k.as_slice() {
            return Err(StoreError::corrupt(
                "key record",
                format!("record of key {} stored under another id", rec.id),
            ));
        }
        batch.put(k, layout::hash_prefix(&rec.hash).to_vec());
        batch.put(layout::key_by_hash(&rec.hash).to_vec(), v);
    }
    // Version 1's hash index entries (`0x04` + 32-byte hash -> id) go; the records above replace them.
    for entry in backend.scan_prefix(&[layout::KEY_BY_HASH], Order::Forward) {
        let (k, _) = entry?;
        if k.len() != 1 + layout::HASH_KEY_BYTES {
            batch.delete(k);
        }
    }
    finish_migration(backend, batch)
}

/// Migrates a layout version 2 table (records under the whole 32-byte hash, id index to whole hashes)
/// to version 3 (records under the hash's first 16 bytes), in one atomic batch with the new marker.
fn migrate_v2(backend: &dyn Backend) -> Result<()> {
    let mut batch = WriteBatch::new();
    for entry in backend.scan_prefix(&[layout::KEY_BY_HASH], Order::Forward) {
        let (k, v) = entry?;
        let rec: KeyRecord = decode(&v)?;
        if k.get(1..) != Some(rec.hash.0.as_slice()) {
            return Err(StoreError::corrupt(
                "key record",
                format!("record of key {} stored under another hash", rec.id),
            ));
        }
        batch.delete(k);
        batch.put(layout::key_by_hash(&rec.hash).to_vec(), v);
        batch.put(
            layout::key(rec.id).to_vec(),
            layout::hash_prefix(&rec.hash).to_vec(),
        );
    }
    finish_migration(backend, batch)
}

fn finish_migration(backend: &dyn Backend, mut batch: WriteBatch) -> Result<()> {
    let mut magic = MAGIC.to_vec();
    magic.extend_from_slice(&LAYOUT_VERSION.to_be_bytes());
    batch.put(layout::meta("magic"), magic);
    backend.apply(batch)?;
    backend.flush()
}

impl KeyTable {
    /// Opens (creating if needed) the key table stored in directory `dir`.
    ///
    /// Fails with [`StoreError::InUse`] if another process has it open, [`StoreError::NotKeyward`] if the
    /// path holds something else, [`StoreError::Corrupt`] if sled cannot read it.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<KeyTable> {
        let dir = dir.as_ref();
        let backend = SledBackend::open(dir, options.cache_capacity)?;
        if backend.has_foreign_trees()? {
            return Err(StoreError::NotKeyward {
                path: dir.to_path_buf(),
                reason: "it holds sled trees keyward does not use".to_owned(),
            });
        }
        Self::with_backend(Box::new(backend), options, Some(dir.to_path_buf()))
    }

    /// A table in a temporary sled database, removed on drop. For demos and tests.
    pub fn temporary(options: StoreOptions) -> Result<KeyTable> {
        Self::with_backend(
            Box::new(SledBackend::temporary(options.cache_capacity)?),
            options,
            None,
        )
    }

    /// A table over any backend. An empty backend is initialized; one holding data must hold a keyward
    /// table of a supported layout version.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        options: StoreOptions,
        path: Option<PathBuf>,
    ) -> Result<KeyTable> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from("<temporary>"));
        match backend.get(&layout::meta("magic"))? {
            Some(magic) => {
                let version = magic
                    .strip_prefix(MAGIC.as_slice())
                    .filter(|v| v.len() == 4)
                    .ok_or_else(|| StoreError::NotKeyward {
                        path: shown.clone(),
                        reason: "its marker record is not keyward's".to_owned(),
                    })?;
                let version = u32::from_be_bytes([
                    version.first().copied().unwrap_or(0),
                    version.get(1).copied().unwrap_or(0),
                    version.get(2).copied().unwrap_or(0),
                    version.get(3).copied().unwrap_or(0),
                ]);
                if version == 1 {
                    migrate_v1(backend.as_ref())?;
                } else if version == 2 {
                    migrate_v2(backend.as_ref())?;
                } else if version != LAYOUT_VERSION {
                    return Err(StoreError::UnsupportedVersion {
                        what: "database layout",
                        found: version,
                        supported: LAYOUT_VERSION,
                    });
                }
            }
            None => {
                if !backend.is_empty()? {
                    return Err(StoreError::NotKeyward {
                        path: shown,
                        reason: "it holds data but no keyward marker".to_owned(),
                    });
                }
                let mut magic = MAGIC.to_vec();
                magic.extend_from_slice(&LAYOUT_VERSION.to_be_bytes());
                let mut batch = WriteBatch::new();
                batch.put(layout::meta("magic"), magic);
                batch.put(layout::meta("seq"), u64_value(0));
                batch.put(layout::meta("next_principal"), u64_value(1));
                batch.put(layout::meta("next_key"), u64_value(1));
                backend.apply(batch)?;
                backend.flush()?;
            }
        }
        let counter = |name: &'static str| -> Result<u64> {
            let v = backend.get(&layout::meta(name))?.ok_or_else(|| {
                StoreError::corrupt("meta record", format!("`{name}` is missing"))
            })?;
            layout::exact_u64("meta record", &v)
        };
        let counters = Counters {
            seq: counter("seq")?,
            next_principal: counter("next_principal")?,
            next_key: counter("next_key")?,
        };
        Ok(KeyTable {
            backend,
            hasher: Hasher::new(options.pepper),
            format: options.key_format,
            seq: AtomicU64::new(counters.seq),
            writer: Mutex::new(counters),
            subscribers: RwLock::new(Arc::new(Vec::new())),
            denials: Mutex::new(Denials::default()),
            path,
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The directory the table lives in (`None` for a temporary table).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The sequence number of the last entry of the audit log (0 for a new table): it moves with every
    /// committed mutation, and when queued refusals are written ([`KeyTable::write_denials`], which
    /// notifies no subscriber).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The format of generated keys.
    pub fn key_format(&self) -> &KeyFormat {
        &self.format
    }

    /// Checks a presented token's syntax against this table's key format (no lookup, no allocation).
    pub fn classify(&self, token: &str) -> Result<TokenShape, crate::token::TokenError> {
        classify(token, &self.format)
    }

    /// The stored hash of a key (keyed with the pepper when configured).
    pub fn hash(&self, secret: &str) -> KeyHash {
        self.hasher.hash(secret)
    }

    /// Registers a change subscriber; see [`Change`] and [`Subscriber`].
    pub fn subscribe(&self, f: Subscriber) {
        let mut subs = self.subscribers.write();
        let mut next: Vec<_> = subs.iter().cloned().collect();
        next.push(Arc::from(f));
        *subs = Arc::new(next);
    }

    /// Writes the queued refusals ([`KeyTable::write_denials`]; skipped when called with this table's
    /// writer lock held, e.g. inside [`KeyTable::bulk`]), then makes everything applied durable.
    pub fn flush(&self) -> Result<()> {
        let written = match self.write_denials() {
            Err(StoreError::Reentrant) => Ok(0),
            r => r,
        };
        let flushed = self.backend.flush();
        written?;
        flushed
    }

    /// Queues a refused call for the audit log, as an [`Op::AccessDenied`] entry; returns whether it was
    /// queued. The admin API calls this for every 401 and 403 it answers.
    ///
    /// No I/O and no writer lock: a push onto a bounded in-memory queue, so that callers who are refused
    /// (possibly unauthenticated, possibly many) cannot make the table write, flush, or move its sequence
    /// number per call. The queue is written as one batch by [`KeyTable::write_denials`] (also through
    /// [`KeyTable::flush`] and when the table is dropped). At most [`DENIAL_QUEUE_MAX`] refusals wait; the
    /// ones that find the queue full are only counted, and the next write records their number in one
    /// [`Op::DenialsNotRecorded`] entry.
    ///
    /// **Durability:** queued refusals live in memory until written. A process that dies before (no
    /// graceful shutdown, no drop) loses them; a written batch reaches the disk with sled's next
    /// flush (about every half second) or at [`KeyTable::flush`]. Refusals are evidence, not state: they
    /// are never worth a disk flush per call.
    pub fn record_denial(&self, denial: NewDenial<'_>) -> bool {
        let mut q = self.denials.lock();
        if q.queued.len() >= DENIAL_QUEUE_MAX {
            q.dropped = q.dropped.saturating_add(1);
            return false;
        }
        let op = Op::AccessDenied {
            status: denial.status,
            code: clip_field(denial.code, DENIAL_FIELD_MAX),
            method: clip_field(denial.method, DENIAL_FIELD_MAX),
            path: clip_field(denial.path, DENIAL_PATH_MAX),
            key: denial.key,
        };
        q.queued.push((now(), denial.actor, op));
        true
    }

    /// How many refused calls wait to be written, and how many were not queued since the last write.
    pub fn pending_denials(&self) -> PendingDenials {
        let q = self.denials.lock();
        PendingDenials {
            queued: q.queued.len(),
            dropped: q.dropped,
        }
    }

    /// Writes the queued refusals ([`KeyTable::record_denial`]) to the audit log in one batch, followed by
    /// one [`Op::DenialsNotRecorded`] entry if some found the queue full; returns how many entries were
    /// written. Each takes the next sequence number and [`KeyTable::seq`] moves, but no subscriber is told:
    /// nothing became stale (the engine's cache keeps every entry; a cache fill that raced this write is
    /// merely not kept). Applies the batch without forcing it to disk (see [`KeyTable::flush`]). If the
    /// write fails, the refusals it held are counted as not recorded.
    pub fn write_denials(&self) -> Result<usize> {
        {
            let q = self.denials.lock();
            if q.queued.is_empty() && q.dropped == 0 {
                return Ok(0);
            }
        }
        let mut w = self.lock()?;
        let Denials { queued, dropped } = std::mem::take(&mut *self.denials.lock());
        let lost = u64::try_from(queued.len())
            .unwrap_or(u64::MAX)
            .saturating_add(dropped);
        let summary = (dropped > 0).then(|| {
            (
                now(),
                Actor::System,
                Op::DenialsNotRecorded { count: dropped },
            )
        });
        let mut next = *w.state;
        let built = (|| -> Result<(WriteBatch, usize)> {
            let mut batch = WriteBatch::new();
            let mut written = 0;
            for (at, actor, op) in queued.into_iter().chain(summary) {
                next.seq = next.seq.checked_add(1).ok_or_else(|| {
                    StoreError::corrupt("meta record", "the sequence number overflowed")
                })?;
                let entry = AuditEntry {
                    seq: next.seq,
                    at,
                    actor,
                    op,
                };
                batch.put(layout::audit(entry.seq).to_vec(), encode(&entry)?);
                for p in entry.principals() {
                    batch.put(layout::audit_by_principal(p, entry.seq), Vec::new());
                }
                written += 1;
            }
            batch.put(layout::meta("seq"), u64_value(next.seq));
            Ok((batch, written))
        })();
        let applied = built.and_then(|(batch, written)| {
            self.backend.apply(batch)?;
            Ok(written)
        });
        match applied {
            Ok(written) => {
                *w.state = next;
                self.seq.store(next.seq, Ordering::Release);
                Ok(written)
            }
            Err(e) => {
                let mut q = self.denials.lock();
                q.dropped = q.dropped.saturating_add(lost);
                Err(e)
            }
        }
    }

    fn lock(&self) -> Result<Bulk<'_>> {
        let reentrant = WRITING.with(|w| w.borrow().contains(&self.id));
        if reentrant {
            return Err(StoreError::Reentrant);
        }
        let state = self.writer.lock();
        WRITING.with(|w| w.borrow_mut().push(self.id));
        Ok(Bulk {
            table: self,
            state,
            durable: true,
            pending: None,
        })
    }

    /// Bumps the sequence number to the change's, then calls every subscriber with it.
    fn publish(&self, change: &Change) {
        self.seq.store(change.seq, Ordering::Release);
        let subs = self.subscribers.read().clone();
        for s in subs.iter() {
            s(change);
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut Bulk<'_>) -> Result<R>) -> Result<R> {
        let mut w = self.lock()?;
        f(&mut w)
    }

    /// Runs many mutations under one writer lock, fast: mutations are checked one by one against everything
    /// committed before them (through the handle), but applied to the backend in large atomic batches (every
    /// few thousand operations and when `f` returns, even if it fails, so that whatever `f` committed is kept)
    /// and flushed once at the end. Each mutation still lands whole or not at all. Subscribers are notified
    /// per mutation, after the batch holding it is applied, with [`KeyTable::seq`] bumped before each call.
    ///
    /// Inside `f`, mutate through the [`Bulk`] handle; calling a mutating method of the table itself returns
    /// [`StoreError::Reentrant`]. Reads on the table are fine but see pending mutations only once applied.
    pub fn bulk<R>(&self, f: impl FnOnce(&mut Bulk<'_>) -> Result<R>) -> Result<R> {
        let mut w = self.lock()?;
        w.durable = false;
        w.pending = Some(Pending {
            batch: WriteBatch::new(),
            overlay: HashMap::new(),
            changes: Vec::new(),
            applied: *w.state,
        });
        let result = f(&mut w);
        let applied = w.apply_pending();
        let flushed = self.backend.flush();
        drop(w);
        let value = result?;
        applied?;
        flushed?;
        Ok(value)
    }

    fn get_record<T: Record>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.backend.get(key)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_id(&self, what: &'static str, key: &[u8]) -> Result<Option<u64>> {
        match self.backend.get(key)? {
            Some(bytes) => layout::exact_u64(what, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn scan_records<T: Record>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.backend
            .scan_prefix(prefix, Order::Forward)
            .map(|r| r.and_then(|(_, v)| decode(&v)))
            .collect()
    }

    // ----- principals -----

    /// The principal with this id.
    pub fn principal(&self, id: PrincipalId) -> Result<Option<Principal>> {
        self.get_record(&layout::principal(id))
    }

    /// The principal with this login, compared case-insensitively.
    pub fn principal_by_login(&self, login: &str) -> Result<Option<Principal>> {
        let key = layout::login(&validate::login_key(login));
        match self.get_id("login index entry", &key)? {
            Some(id) => self.principal(id),
            None => Ok(None),
        }
    }

    /// Every principal, by id.
    pub fn list_principals(&self) -> Result<Vec<Principal>> {
        self.scan_records(&[layout::PRINCIPAL])
    }

    fn require_principal(&self, id: PrincipalId) -> Result<Principal> {
        self.principal(id)?
            .ok_or_else(|| StoreError::not_found("principal", id))
    }

    /// Adds a principal. [`StoreError::Conflict`] if the login is taken (case-insensitively).
    pub fn add_principal(&self, actor: Actor, new: NewPrincipal) -> Result<Principal> {
        self.write(|w| w.add_principal(actor, new))
    }

    /// Sets or clears a principal's default workspace, which must exist.
    pub fn set_default_workspace(
        &self,
        actor: Actor,
        id: PrincipalId,
        workspace: Option<String>,
    ) -> Result<Principal> {
        self.write(|w| w.set_default_workspace(actor, id, workspace))
    }

    /// Removes a principal with all its keys and bindings, in one batch. [`StoreError::Conflict`] if it is
    /// the company of a workspace.
    pub fn remove_principal(&self, actor: Actor, id: PrincipalId) -> Result<Principal> {
        self.write(|w| w.remove_principal(actor, id))
    }

    // ----- keys -----

    /// The key with this id.
    pub fn key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        match self.backend.get(&layout::key(id))? {
            Some(hash) => record_at_hash(id, &hash, self.backend.get(&hash_key(&hash)?)?).map(Some),
            None => Ok(None),
        }
    }

    /// The key with this hash: one read, and the whole hash compared in constant time. The engine's
    /// cache-miss path.
    pub fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let rec: Option<KeyRecord> = self.get_record(&layout::key_by_hash(hash))?;
        Ok(rec.filter(|r| r.hash == *hash))
    }

    /// The keys of a principal, by id. [`StoreError::NotFound`] if the principal does not exist.
    pub fn keys_of(&self, owner: PrincipalId) -> Result<Vec<KeyRecord>> {
        self.require_principal(owner)?;
        self.owned_key_ids(owner)?
            .into_iter()
            .map(|id| {
                self.key(id)?.ok_or_else(|| {
                    StoreError::corrupt("key owner index", format!("key {id} is missing"))
                })
            })
            .collect()
    }

    fn owned_key_ids(&self, owner: PrincipalId) -> Result<Vec<KeyId>> {
        self.backend
            .scan_prefix(
                &layout::id_prefix(layout::KEY_BY_OWNER, owner),
                Order::Forward,
            )
            .map(|r| r.and_then(|(k, _)| layout::read_u64("key owner index entry", &k)))
            .collect()
    }

    /// Reads every entry of the table once; returns how many. After a bulk import, lookups pay for
    /// the pages the import left fragmented the first time they read each one (sled consolidates a
    /// page on its first read): at 1,000,000 keys, lookup p99 was 62 µs on the first 100,000 random
    /// lookups and 18 µs once every page had been read. Opening a table likewise reads each page
    /// from disk on its first lookup. This pays both at once, in order (about 2 s at 1,000,000 keys),
    /// so the first requests do not: `keyward serve` calls it beside serving at start-up; a host may
    /// call it at start-up or after its own bulk writes.
    pub fn settle(&self) -> Result<u64> {
        let mut n = 0;
        for entry in self.backend.scan(&[], None, Order::Forward) {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    /// Every key, by id.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let mut keys: Vec<KeyRecord> = self.scan_records(&[layout::KEY_BY_HASH])?;
        keys.sort_unstable_by_key(|k| k.id);
        Ok(keys)
    }

    /// Creates a key; returns its record and its secret, which is shown once and never stored.
    pub fn create_key(&self, actor: Actor, new: NewKey) -> Result<(KeyRecord, Secret)> {
        self.write(|w| w.create_key(actor, new))
    }

    /// Imports an existing key (any acceptable token; a token starting with the key prefix must be a valid
    /// generated key). [`StoreError::Conflict`] if a key with the same secret exists.
    pub fn import_key(&self, actor: Actor, new: NewKey, secret: &str) -> Result<KeyRecord> {
        self.write(|w| w.import_key(actor, new, secret))
    }

    /// Imports many keys as one mutation with one audit entry; see [`Bulk::import_keys`].
    pub fn import_keys<S: AsRef<str>>(
        &self,
        actor: Actor,
        keys: Vec<(NewKey, S)>,
    ) -> Result<Vec<KeyRecord>> {
        self.write(|w| w.import_keys(actor, keys))
    }

    /// [`KeyTable::import_keys`], and when a key is refused, which one ([`ImportError::index`]).
    pub fn import_keys_indexed<S: AsRef<str>>(
        &self,
        actor: Actor,
        keys: Vec<(NewKey, S)>,
    ) -> Result<Vec<KeyRecord>, ImportError> {
        self.lock()?.import_keys_indexed(actor, keys)
    }

    /// Checks `keys` exactly as [`KeyTable::import_keys_indexed`] would, under the writer lock, and writes
    /// nothing: the first key refused, if any, is the error. A later import can still fail if the table
    /// changes in between.
    pub fn check_import_keys<S: AsRef<str>>(
        &self,
        keys: Vec<(NewKey, S)>,
    ) -> Result<(), ImportError> {
        self.lock()?.check_import_keys(keys)
    }

    /// Renames a key. [`StoreError::Conflict`] if the owner has another current key of that name.
    pub fn rename_key(&self, actor: Actor, id: KeyId, name: &str) -> Result<KeyRecord> {
        self.write(|w| w.rename_key(actor, id, name))
    }

    /// Activates or deactivates a key. Setting the current state again changes nothing.
    pub fn set_key_active(&self, actor: Actor, id: KeyId, active: bool) -> Result<KeyRecord> {
        self.write(|w| w.set_key_active(actor, id, active))
    }

    /// Deletes a key; returns its last record.
    pub fn delete_key(&self, actor: Actor, id: KeyId) -> Result<KeyRecord> {
        self.write(|w| w.delete_key(actor, id))
    }

    /// Sets or clears a key's expiry (unix seconds; a past time expires it at once).
    pub fn set_key_expiry(
        &self,
        actor: Actor,
        id: KeyId,
        expires_at: Option<u64>,
    ) -> Result<KeyRecord> {
        self.write(|w| w.set_key_expiry(actor, id, expires_at))
    }

    /// Rotates a key with an overlap window; see [`Bulk::rotate_key`].
    pub fn rotate_key(
        &self,
        actor: Actor,
        id: KeyId,
        old_valid_until: u64,
    ) -> Result<(KeyRecord, Secret)> {
        self.write(|w| w.rotate_key(actor, id, old_valid_until))
    }

    /// Replaces a key at once; see [`Bulk::regenerate_key`].
    pub fn regenerate_key(&self, actor: Actor, id: KeyId) -> Result<(KeyRecord, Secret)> {
        self.write(|w| w.regenerate_key(actor, id))
    }

    /// Records when keys were last used: one batch, one flush. Not audited and not a visible change (no
    /// sequence number, no notification). A time older than the stored one and unknown keys (deleted
    /// meanwhile) are skipped.
    pub fn record_last_used(&self, updates: &[(KeyId, u64)]) -> Result<()> {
        let w = self.lock()?;
        let mut changed: Vec<KeyRecord> = Vec::new();
        // Index of each key in `changed`: a flush may carry hundreds of thousands of keys.
        let mut seen: std::collections::HashMap<KeyId, usize> = std::collections::HashMap::new();
        for &(id, at) in updates {
            if let Some(&i) = seen.get(&id) {
                changed[i].last_used = changed[i].last_used.max(Some(at));
                continue;
            }
            if let Some(mut rec) = self.key(id)? {
                if rec.last_used < Some(at) {
                    rec.last_used = Some(at);
                    seen.insert(id, changed.len());
                    changed.push(rec);
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for rec in &changed {
            batch.put(layout::key_by_hash(&rec.hash).to_vec(), encode(rec)?);
        }
        self.backend.apply(batch)?;
        let flushed = self.backend.flush();
        drop(w);
        flushed
    }

    // ----- bindings -----

    /// The role bindings of a principal, ordered by role then scope.
    pub fn bindings_of(&self, principal: PrincipalId) -> Result<Vec<Binding>> {
        self.scan_records(&layout::id_prefix(layout::BINDING, principal))
    }

    /// Binds a role at a scope to a principal. [`StoreError::Conflict`] if that binding exists.
    pub fn bind(
        &self,
        actor: Actor,
        principal: PrincipalId,
        role: &str,
        scope: &str,
    ) -> Result<Binding> {
        self.write(|w| w.bind(actor, principal, role, scope))
    }

    /// Removes a binding. [`StoreError::NotFound`] if it does not exist.
    pub fn unbind(
        &self,
        actor: Actor,
        principal: PrincipalId,
        role: &str,
        scope: &str,
    ) -> Result<Binding> {
        self.write(|w| w.unbind(actor, principal, role, scope))
    }

    // ----- workspaces -----

    /// The workspace with this public key.
    pub fn workspace(&self, public_key: &str) -> Result<Option<Workspace>> {
        self.get_record(&layout::workspace(public_key))
    }

    /// Every workspace, by public key.
    pub fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.scan_records(&[layout::WORKSPACE])
    }

    /// Adds a workspace. [`StoreError::Conflict`] if the public key is taken.
    pub fn add_workspace(&self, actor: Actor, workspace: Workspace) -> Result<Workspace> {
        self.write(|w| w.add_workspace(actor, workspace))
    }

    /// Removes a workspace. [`StoreError::Conflict`] while a principal has it as default workspace.
    pub fn remove_workspace(&self, actor: Actor, public_key: &str) -> Result<Workspace> {
        self.write(|w| w.remove_workspace(actor, public_key))
    }

    // ----- audit / change log -----

    /// Audit entries, newest first; see [`AuditQuery`].
    pub fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        if query.limit == 0 || query.before == Some(0) {
            return Ok(Vec::new());
        }
        match query.principal {
            None => {
                let start = layout::audit(0);
                let end = match query.before {
                    Some(before) => layout::audit(before).to_vec(),
                    None => vec![layout::AUDIT + 1],
                };
                self.backend
                    .scan(&start, Some(&end), Order::Reverse)
                    .take(query.limit)
                    .map(|r| r.and_then(|(_, v)| decode(&v)))
                    .collect()
            }
            Some(p) => {
                let start = layout::audit_by_principal(p, 0);
                let end = match query.before {
                    Some(before) => layout::audit_by_principal(p, before),
                    None => {
                        layout::id_prefix(layout::AUDIT_BY_PRINCIPAL, p.wrapping_add(1)).to_vec()
                    }
                };
                let end = if p == u64::MAX && query.before.is_none() {
                    vec![layout::AUDIT_BY_PRINCIPAL + 1]
                } else {
                    end
                };
                self.backend
                    .scan(&start, Some(&end), Order::Reverse)
                    .take(query.limit)
                    .map(|r| {
                        let (k, _) = r?;
                        let seq = layout::read_u64("audit index entry", &k)?;
                        self.get_record::<AuditEntry>(&layout::audit(seq))?
                            .ok_or_else(|| {
                                StoreError::corrupt(
                                    "audit index entry",
                                    format!("entry {seq} is missing"),
                                )
                            })
                    })
                    .collect()
            }
        }
    }

    /// Up to `limit` entries written after `seq`, oldest first: the audit log read as a change log. Records
    /// of refused calls are among them; [`Op::is_change`] tells them apart.
    pub fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let Some(from) = seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.backend
            .scan(
                &layout::audit(from),
                Some(&[layout::AUDIT + 1]),
                Order::Forward,
            )
            .take(limit)
            .map(|r| r.and_then(|(_, v)| decode(&v)))
            .collect()
    }
}

/// The writer handle: holds the table's writer lock. Received by the closure of [`KeyTable::bulk`], where
/// mutations are not flushed one by one; every [`KeyTable`] mutation runs through one too.
pub struct Bulk<'a> {
    table: &'a KeyTable,
    state: MutexGuard<'a, Counters>,
    durable: bool,
    pending: Option<Pending>,
}

/// Mutations committed in bulk mode but not yet applied to the backend.
struct Pending {
    batch: WriteBatch,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    changes: Vec<Change>,
    /// The counters as of the last applied batch.
    applied: Counters,
}

/// In bulk mode, pending mutations are applied once they hold this many operations. sled 0.34 writes out
/// its i/o buffer for every batch, so few large batches import far faster than one batch per mutation.
const BULK_APPLY_OPS: usize = 16 * 1024;

impl fmt::Debug for Bulk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulk")
            .field("table", &self.table)
            .field("durable", &self.durable)
            .finish()
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        let id = self.table.id;
        WRITING.with(|w| w.borrow_mut().retain(|&t| t != id));
    }
}

/// What an import of many keys would write: the records, the counters after them, the first id, the owners.
struct Prepared {
    records: Vec<KeyRecord>,
    next: Counters,
    first: KeyId,
    owners: HashSet<PrincipalId>,
}

/// What a mutation made stale, before it gets its sequence number.
#[derive(Default)]
struct Stale {
    keys: Vec<KeyHash>,
    principals: Vec<PrincipalId>,
    workspaces: Vec<String>,
}

impl Bulk<'_> {
    /// The table being written. In bulk mode, reads through it see this handle's mutations only once they
    /// are applied (every few thousand operations, and when the closure returns).
    pub fn table(&self) -> &KeyTable {
        self.table
    }

    /// Reads a value, seeing mutations still pending in bulk mode.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(p) = &self.pending {
            if let Some(v) = p.overlay.get(key) {
                return Ok(v.clone());
            }
        }
        self.table.backend.get(key)
    }

    /// Whether `key` holds a value, without copying it out.
    fn contains(&self, key: &[u8]) -> Result<bool> {
        if let Some(p) = &self.pending {
            if let Some(v) = p.overlay.get(key) {
                return Ok(v.is_some());
            }
        }
        self.table.backend.contains(key)
    }

    fn get_record<T: Record>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.get(key)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_id(&self, what: &'static str, key: &[u8]) -> Result<Option<u64>> {
        match self.get(key)? {
            Some(bytes) => layout::exact_u64(what, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        match self.get(&layout::key(id))? {
            Some(hash) => record_at_hash(id, &hash, self.get(&hash_key(&hash)?)?).map(Some),
            None => Ok(None),
        }
    }

    fn require_key(&self, id: KeyId) -> Result<KeyRecord> {
        self.key(id)?
            .ok_or_else(|| StoreError::not_found("key", id))
    }

    fn require_principal(&self, id: PrincipalId) -> Result<Principal> {
        self.get_record(&layout::principal(id))?
            .ok_or_else(|| StoreError::not_found("principal", id))
    }

    fn workspace(&self, public_key: &str) -> Result<Option<Workspace>> {
        self.get_record(&layout::workspace(public_key))
    }

    /// Writes the counters that differ from `before` (the sequence number always moves).
    fn put_counters(batch: &mut WriteBatch, next: &Counters, before: &Counters) {
        batch.put(layout::meta("seq"), u64_value(next.seq));
        if next.next_principal != before.next_principal {
            batch.put(
                layout::meta("next_principal"),
                u64_value(next.next_principal),
            );
        }
        if next.next_key != before.next_key {
            batch.put(layout::meta("next_key"), u64_value(next.next_key));
        }
    }

    /// Applies the mutations pending in bulk mode as one atomic batch, then bumps the sequence number and
    /// notifies subscribers for each of them in order. On failure none of them is applied and the counters
    /// go back to the last applied state.
    fn apply_pending(&mut self) -> Result<()> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        if p.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut p.batch);
        // The counters are written once per applied batch, which is atomic, rather than per mutation.
        Self::put_counters(&mut batch, &self.state, &p.applied);
        let changes = std::mem::take(&mut p.changes);
        p.overlay.clear();
        if let Err(e) = self.table.backend.apply(batch) {
            *self.state = p.applied;
            return Err(e);
        }
        p.applied = *self.state;
        for change in changes {
            self.table.publish(&change);
        }
        Ok(())
    }

    /// Adds the audit entry and counters to `batch`, applies it, flushes it unless in bulk mode, bumps the
    /// sequence number and notifies subscribers.
    fn commit(
        &mut self,
        batch: WriteBatch,
        next: Counters,
        actor: Actor,
        op: Op,
        stale: Stale,
    ) -> Result<u64> {
        self.commit_with(batch, next, actor, op, stale, false)
    }

    /// [`Bulk::commit`]; with `direct`, applies the batch at once even in bulk mode, without copying it into
    /// the read overlay. Only valid when nothing is pending (call [`Bulk::apply_pending`] first).
    fn commit_with(
        &mut self,
        mut batch: WriteBatch,
        mut next: Counters,
        actor: Actor,
        op: Op,
        stale: Stale,
        direct: bool,
    ) -> Result<u64> {
        let t = self.table;
        let seq = next
            .seq
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("meta record", "the sequence number overflowed"))?;
        next.seq = seq;
        let entry = AuditEntry {
            seq,
            at: now(),
            actor,
            op,
        };
        batch.put(layout::audit(seq).to_vec(), encode(&entry)?);
        for p in entry.principals() {
            batch.put(layout::audit_by_principal(p, seq), Vec::new());
        }
        let queue = !direct && self.pending.is_some();
        if !queue {
            Self::put_counters(&mut batch, &next, &self.state);
        }
        let change = Change {
            seq,
            keys: stale.keys,
            principals: stale.principals,
            workspaces: stale.workspaces,
        };
        if let Some(p) = self.pending.as_mut().filter(|_| queue) {
            for (k, v) in batch.iter() {
                p.overlay.insert(k.to_vec(), v.map(<[u8]>::to_vec));
            }
            p.batch.append(batch);
            p.changes.push(change);
            *self.state = next;
            if p.batch.len() >= BULK_APPLY_OPS {
                self.apply_pending()?;
            }
            return Ok(seq);
        }
        t.backend.apply(batch)?;
        // INVARIANT: from here on the mutation is visible to readers, so the sequence number must move and
        // subscribers must hear of it even if the flush fails.
        *self.state = next;
        if let Some(p) = self.pending.as_mut() {
            // Direct commit in bulk mode: nothing was pending, so the applied counters are these.
            p.applied = next;
        }
        let flushed = if self.durable {
            t.backend.flush()
        } else {
            Ok(())
        };
        t.publish(&change);
        flushed?;
        Ok(seq)
    }

    // ----- principals -----

    /// Adds a principal; see [`KeyTable::add_principal`].
    pub fn add_principal(&mut self, actor: Actor, new: NewPrincipal) -> Result<Principal> {
        validate::login(&new.login)?;
        let lower = validate::login_key(&new.login);
        let login_key = layout::login(&lower);
        if self.get(&login_key)?.is_some() {
            return Err(StoreError::conflict(format!(
                "login `{}` is taken",
                super::error::truncate(&new.login)
            )));
        }
        if let Some(ws) = &new.default_workspace {
            validate::workspace_key(ws)?;
            if self.workspace(ws)?.is_none() {
                return Err(StoreError::not_found("workspace", ws));
            }
        }
        let mut next = *self.state;
        let id = next.next_principal;
        next.next_principal = id
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("meta record", "principal ids are exhausted"))?;
        let principal = Principal {
            id,
            kind: new.kind,
            login: new.login,
            default_workspace: new.default_workspace,
            created_at: now(),
        };
        let mut batch = WriteBatch::new();
        batch.put(layout::principal(id).to_vec(), encode(&principal)?);
        batch.put(login_key, u64_value(id));
        let op = Op::PrincipalAdded {
            id,
            login: principal.login.clone(),
        };
        let stale = Stale {
            principals: vec![id],
            ..Stale::default()
        };
        self.commit(batch, next, actor, op, stale)?;
        Ok(principal)
    }

    /// Sets or clears a principal's default workspace; see [`KeyTable::set_default_workspace`].
    pub fn set_default_workspace(
        &mut self,
        actor: Actor,
        id: PrincipalId,
        workspace: Option<String>,
    ) -> Result<Principal> {
        let mut principal = self.require_principal(id)?;
        if let Some(ws) = &workspace {
            validate::workspace_key(ws)?;
            if self.workspace(ws)?.is_none() {
                return Err(StoreError::not_found("workspace", ws));
            }
        }
        if principal.default_workspace == workspace {
            return Ok(principal);
        }
        principal.default_workspace = workspace.clone();
        let mut batch = WriteBatch::new();
        batch.put(layout::principal(id).to_vec(), encode(&principal)?);
        let stale = Stale {
            principals: vec![id],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(
            batch,
            next,
            actor,
            Op::DefaultWorkspaceSet { id, workspace },
            stale,
        )?;
        Ok(principal)
    }

    /// Removes a principal with its keys and bindings; see [`KeyTable::remove_principal`].
    pub fn remove_principal(&mut self, actor: Actor, id: PrincipalId) -> Result<Principal> {
        // The scans below read the backend directly.
        self.apply_pending()?;
        let t = self.table;
        let principal = self.require_principal(id)?;
        for ws in t.list_workspaces()? {
            if ws.company == Some(id) {
                return Err(StoreError::conflict(format!(
                    "principal {id} is the company of workspace `{}`; remove the workspace first",
                    super::error::truncate(&ws.public_key)
                )));
            }
        }
        let mut batch = WriteBatch::new();
        let mut stale = Stale {
            principals: vec![id],
            ..Stale::default()
        };
        let mut keys = Vec::new();
        for key_id in t.owned_key_ids(id)? {
            if let Some(rec) = self.key(key_id)? {
                self.delete_key_entries(&mut batch, &rec)?;
                stale.keys.push(rec.hash);
            } else {
                batch.delete(layout::key_by_owner(id, key_id));
            }
            keys.push(key_id);
        }
        for entry in t
            .backend
            .scan_prefix(&layout::id_prefix(layout::BINDING, id), Order::Forward)
        {
            let (k, _) = entry?;
            batch.delete(k);
        }
        batch.delete(layout::principal(id).to_vec());
        batch.delete(layout::login(&validate::login_key(&principal.login)));
        let op = Op::PrincipalRemoved {
            id,
            login: principal.login.clone(),
            keys,
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(principal)
    }

    // ----- keys -----

    fn check_new_key(&self, new: &NewKey) -> Result<()> {
        Self::check_new_key_fields(new)?;
        self.require_principal(new.owner)?;
        self.check_name_free(new.owner, &new.name, None)
    }

    /// The checks of a new key that need no read.
    fn check_new_key_fields(new: &NewKey) -> Result<()> {
        validate::name("key name", &new.name)?;
        if let Some(scope) = &new.scope {
            validate::scope(scope)?;
        }
        if let Some(perms) = &new.permissions {
            validate::permissions(perms)?;
        }
        if let Some(at) = new.expires_at {
            if at <= now() {
                return Err(StoreError::InvalidExpiry {
                    at,
                    reason: "it is not in the future",
                });
            }
        }
        Ok(())
    }

    /// Fails if `owner` has a current key named `name` other than `except`.
    fn check_name_free(&self, owner: PrincipalId, name: &str, except: Option<KeyId>) -> Result<()> {
        let existing = self.get_id("key name index entry", &layout::key_name(owner, name))?;
        match existing {
            Some(other) if Some(other) != except => Err(StoreError::conflict(format!(
                "principal {owner} already has a key named `{}`",
                super::error::truncate(name)
            ))),
            _ => Ok(()),
        }
    }

    /// A stored key under the same record key: the same secret, or (never seen: 128 bits of BLAKE3)
    /// another whose hash starts the same. Both are refused.
    fn check_hash_free(&self, hash: &KeyHash) -> Result<()> {
        if self.contains(&layout::key_by_hash(hash))? {
            return Err(StoreError::conflict(
                "a key with the same secret already exists",
            ));
        }
        Ok(())
    }

    /// Deletes a key record and its index entries (the name index only if it points to this key).
    fn delete_key_entries(&self, batch: &mut WriteBatch, rec: &KeyRecord) -> Result<()> {
        batch.delete(layout::key(rec.id).to_vec());
        batch.delete(layout::key_by_owner(rec.owner, rec.id));
        let by_hash = layout::key_by_hash(&rec.hash);
        let stored: Option<KeyRecord> = self.get_record(&by_hash)?;
        if stored.map(|r| r.id) == Some(rec.id) {
            batch.delete(by_hash.to_vec());
        }
        let name = layout::key_name(rec.owner, &rec.name);
        if self.get_id("key name index entry", &name)? == Some(rec.id) {
            batch.delete(name);
        }
        Ok(())
    }

    /// Writes a new key record and its index entries.
    fn put_new_key(batch: &mut WriteBatch, rec: &KeyRecord) -> Result<()> {
        batch.put(
            layout::key(rec.id).to_vec(),
            layout::hash_prefix(&rec.hash).to_vec(),
        );
        batch.put(layout::key_by_hash(&rec.hash).to_vec(), encode(rec)?);
        batch.put(layout::key_by_owner(rec.owner, rec.id), Vec::new());
        batch.put(layout::key_name(rec.owner, &rec.name), u64_value(rec.id));
        Ok(())
    }

    fn next_key_id(next: &mut Counters) -> Result<KeyId> {
        let id = next.next_key;
        next.next_key = id
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("meta record", "key ids are exhausted"))?;
        Ok(id)
    }

    fn generate(&self) -> Result<(Secret, KeyHash)> {
        let secret = self.table.format.generate()?;
        let hash = self.table.hasher.hash(secret.expose());
        self.check_hash_free(&hash)?;
        Ok((secret, hash))
    }

    fn new_record(
        id: KeyId,
        new: NewKey,
        hash: KeyHash,
        display_prefix: String,
        created_at: u64,
        imported: bool,
    ) -> KeyRecord {
        KeyRecord {
            id,
            owner: new.owner,
            name: new.name,
            hash,
            display_prefix,
            created_at,
            expires_at: new.expires_at,
            active: true,
            last_used: None,
            read_only: new.read_only,
            permissions: new.permissions,
            scope: new.scope,
            kind: new.kind,
            imported,
            rotated_to: None,
        }
    }

    fn insert_key(
        &mut self,
        actor: Actor,
        new: NewKey,
        hash: KeyHash,
        display_prefix: String,
        imported: bool,
    ) -> Result<KeyRecord> {
        let mut next = *self.state;
        let id = Self::next_key_id(&mut next)?;
        let rec = Self::new_record(id, new, hash, display_prefix, now(), imported);
        let mut batch = WriteBatch::new();
        Self::put_new_key(&mut batch, &rec)?;
        let (key, owner, name) = (id, rec.owner, rec.name.clone());
        let op = if imported {
            Op::KeyImported { key, owner, name }
        } else {
            Op::KeyCreated { key, owner, name }
        };
        let stale = Stale {
            keys: vec![hash],
            ..Stale::default()
        };
        self.commit(batch, next, actor, op, stale)?;
        Ok(rec)
    }

    /// Creates a key; see [`KeyTable::create_key`].
    pub fn create_key(&mut self, actor: Actor, new: NewKey) -> Result<(KeyRecord, Secret)> {
        self.check_new_key(&new)?;
        let (secret, hash) = self.generate()?;
        let shown = display_prefix(secret.expose(), TokenShape::Generated);
        let rec = self.insert_key(actor, new, hash, shown, false)?;
        Ok((rec, secret))
    }

    /// Imports a key; see [`KeyTable::import_key`].
    pub fn import_key(&mut self, actor: Actor, new: NewKey, secret: &str) -> Result<KeyRecord> {
        let shape = classify(secret, &self.table.format)?;
        self.check_new_key(&new)?;
        let hash = self.table.hasher.hash(secret);
        self.check_hash_free(&hash)?;
        self.insert_key(actor, new, hash, display_prefix(secret, shape), true)
    }

    /// Imports many keys as ONE mutation: one atomic batch, one audit entry ([`Op::KeysImported`], listing
    /// the consecutive id range and the owners) and one sequence number; subscribers get one [`Change`]
    /// naming every key hash. Every key is checked as [`Bulk::import_key`] checks it, against the table and
    /// against the other keys of the call; if any fails, nothing of the call is written and the error is
    /// returned. Returns the records in input order.
    ///
    /// This is the fast path for large imports (a few thousand keys per call is a good size; the whole call
    /// is held in memory): four writes per key instead of six, and no per-key copy into the bulk read
    /// overlay. Inside [`KeyTable::bulk`], mutations pending before the call are applied first.
    pub fn import_keys<S: AsRef<str>>(
        &mut self,
        actor: Actor,
        keys: Vec<(NewKey, S)>,
    ) -> Result<Vec<KeyRecord>> {
        self.import_keys_indexed(actor, keys).map_err(|e| e.error)
    }

    /// [`Bulk::import_keys`], and when a key is refused, which one ([`ImportError::index`]).
    pub fn import_keys_indexed<S: AsRef<str>>(
        &mut self,
        actor: Actor,
        keys: Vec<(NewKey, S)>,
    ) -> Result<Vec<KeyRecord>, ImportError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // The checks below read the backend directly, and the batch is applied on its own.
        self.apply_pending()?;
        let Prepared {
            records,
            next,
            first,
            owners,
        } = self.prepare_import(keys)?;
        let mut batch = WriteBatch::new();
        for rec in &records {
            Self::put_new_key(&mut batch, rec)?;
        }
        let mut owners: Vec<PrincipalId> = owners.into_iter().collect();
        owners.sort_unstable();
        let op = Op::KeysImported {
            first,
            last: next.next_key.saturating_sub(1),
            owners,
        };
        let stale = Stale {
            keys: records.iter().map(|r| r.hash).collect(),
            ..Stale::default()
        };
        self.commit_with(batch, next, actor, op, stale, true)?;
        Ok(records)
    }

    /// Checks `keys` exactly as [`Bulk::import_keys_indexed`] would, and writes nothing.
    pub fn check_import_keys<S: AsRef<str>>(
        &mut self,
        keys: Vec<(NewKey, S)>,
    ) -> Result<(), ImportError> {
        self.prepare_import(keys).map(|_| ())
    }

    /// The checks of an import of many keys and the records it would write, with the counters after it.
    /// Reads through the bulk overlay, so it sees pending mutations.
    fn prepare_import<S: AsRef<str>>(
        &self,
        keys: Vec<(NewKey, S)>,
    ) -> Result<Prepared, ImportError> {
        let t = self.table;
        let at = now();
        let mut next = *self.state;
        let first = next.next_key;
        let mut owners: HashSet<PrincipalId> = HashSet::new();
        // The first key of the call with each hash, and with each name.
        let mut hashes: HashMap<[u8; layout::HASH_KEY_BYTES], usize> =
            HashMap::with_capacity(keys.len());
        let mut names: HashMap<(PrincipalId, String), usize> = HashMap::with_capacity(keys.len());
        let mut records = Vec::with_capacity(keys.len());
        for (i, (new, secret)) in keys.into_iter().enumerate() {
            let item = ImportError::at(i);
            let secret = secret.as_ref();
            let shape = match classify(secret, &t.format) {
                Ok(shape) => shape,
                Err(e) => return Err(item(e.into())),
            };
            if !owners.contains(&new.owner) {
                if let Err(e) = self.require_principal(new.owner) {
                    return Err(item(e));
                }
                owners.insert(new.owner);
            }
            if let Err(e) = Self::check_new_key_fields(&new) {
                return Err(item(e));
            }
            if let Some(j) = names.insert((new.owner, new.name.clone()), i) {
                return Err(item(StoreError::conflict(format!(
                    "the same key name `{}` as item {j}",
                    super::error::truncate(&new.name)
                ))));
            }
            if let Err(e) = self.check_name_free(new.owner, &new.name, None) {
                return Err(item(e));
            }
            let hash = t.hasher.hash(secret);
            if let Some(j) = hashes.insert(*layout::hash_prefix(&hash), i) {
                return Err(item(StoreError::conflict(format!(
                    "the same secret as item {j}"
                ))));
            }
            if let Err(e) = self.check_hash_free(&hash) {
                return Err(item(e));
            }
            let id = match Self::next_key_id(&mut next) {
                Ok(id) => id,
                Err(e) => return Err(item(e)),
            };
            records.push(Self::new_record(
                id,
                new,
                hash,
                display_prefix(secret, shape),
                at,
                true,
            ));
        }
        Ok(Prepared {
            records,
            next,
            first,
            owners,
        })
    }

    /// Renames a key; see [`KeyTable::rename_key`].
    pub fn rename_key(&mut self, actor: Actor, id: KeyId, name: &str) -> Result<KeyRecord> {
        validate::name("key name", name)?;
        let mut rec = self.require_key(id)?;
        if rec.name == name {
            return Ok(rec);
        }
        self.check_name_free(rec.owner, name, Some(id))?;
        let mut batch = WriteBatch::new();
        let old_index = layout::key_name(rec.owner, &rec.name);
        if self.get_id("key name index entry", &old_index)? == Some(id) {
            batch.delete(old_index);
        }
        batch.put(layout::key_name(rec.owner, name), u64_value(id));
        let from = std::mem::replace(&mut rec.name, name.to_owned());
        batch.put(layout::key_by_hash(&rec.hash).to_vec(), encode(&rec)?);
        let op = Op::KeyRenamed {
            key: id,
            owner: rec.owner,
            from,
            to: rec.name.clone(),
        };
        let stale = Stale {
            keys: vec![rec.hash],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(rec)
    }

    /// Updates one key record in place and commits `op`.
    fn update_key(&mut self, actor: Actor, rec: &KeyRecord, op: Op) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(layout::key_by_hash(&rec.hash).to_vec(), encode(rec)?);
        let stale = Stale {
            keys: vec![rec.hash],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(())
    }

    /// Activates or deactivates a key; see [`KeyTable::set_key_active`].
    pub fn set_key_active(&mut self, actor: Actor, id: KeyId, active: bool) -> Result<KeyRecord> {
        let mut rec = self.require_key(id)?;
        if rec.active == active {
            return Ok(rec);
        }
        rec.active = active;
        let (key, owner) = (id, rec.owner);
        let op = if active {
            Op::KeyActivated { key, owner }
        } else {
            Op::KeyDeactivated { key, owner }
        };
        self.update_key(actor, &rec, op)?;
        Ok(rec)
    }

    /// Sets or clears a key's expiry; see [`KeyTable::set_key_expiry`].
    pub fn set_key_expiry(
        &mut self,
        actor: Actor,
        id: KeyId,
        expires_at: Option<u64>,
    ) -> Result<KeyRecord> {
        let mut rec = self.require_key(id)?;
        if rec.expires_at == expires_at {
            return Ok(rec);
        }
        rec.expires_at = expires_at;
        let op = Op::KeyExpirySet {
            key: id,
            owner: rec.owner,
            expires_at,
        };
        self.update_key(actor, &rec, op)?;
        Ok(rec)
    }

    /// Deletes a key; see [`KeyTable::delete_key`].
    pub fn delete_key(&mut self, actor: Actor, id: KeyId) -> Result<KeyRecord> {
        let rec = self.require_key(id)?;
        let mut batch = WriteBatch::new();
        self.delete_key_entries(&mut batch, &rec)?;
        let op = Op::KeyDeleted {
            key: id,
            owner: rec.owner,
            name: rec.name.clone(),
        };
        let stale = Stale {
            keys: vec![rec.hash],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(rec)
    }

    fn successor(old: &KeyRecord, id: KeyId, hash: KeyHash, secret: &Secret) -> KeyRecord {
        KeyRecord {
            id,
            owner: old.owner,
            name: old.name.clone(),
            hash,
            display_prefix: display_prefix(secret.expose(), TokenShape::Generated),
            created_at: now(),
            expires_at: old.expires_at,
            active: old.active,
            last_used: None,
            read_only: old.read_only,
            permissions: old.permissions.clone(),
            scope: old.scope.clone(),
            kind: old.kind,
            imported: false,
            rotated_to: None,
        }
    }

    fn require_current(rec: &KeyRecord) -> Result<()> {
        match rec.rotated_to {
            Some(new) => Err(StoreError::conflict(format!(
                "key {} was already rotated to key {new}",
                rec.id
            ))),
            None => Ok(()),
        }
    }

    /// Rotates a key with an overlap window: a new key is generated, and the old one keeps working until
    /// `old_valid_until` (its expiry becomes the earlier of its current expiry and that time; a past time
    /// revokes it at once).
    ///
    /// The new key copies every setting of the old one: name, permissions, scope, read-only flag, kind,
    /// active flag and expiry (rotation never extends a key's lifetime). Both keep the same name: the old
    /// key records the new one in `rotated_to` and leaves the per-owner name index to it, so names stay
    /// unique among current keys. A key that was already rotated cannot be rotated again
    /// ([`StoreError::Conflict`]); rotate its successor.
    pub fn rotate_key(
        &mut self,
        actor: Actor,
        id: KeyId,
        old_valid_until: u64,
    ) -> Result<(KeyRecord, Secret)> {
        let mut old = self.require_key(id)?;
        Self::require_current(&old)?;
        let (secret, hash) = self.generate()?;
        let mut next = *self.state;
        let new_id = Self::next_key_id(&mut next)?;
        let new = Self::successor(&old, new_id, hash, &secret);
        old.expires_at = Some(
            old.expires_at
                .map_or(old_valid_until, |e| e.min(old_valid_until)),
        );
        old.rotated_to = Some(new_id);
        let mut batch = WriteBatch::new();
        batch.put(layout::key_by_hash(&old.hash).to_vec(), encode(&old)?);
        Self::put_new_key(&mut batch, &new)?;
        let op = Op::KeyRotated {
            old: id,
            new: new_id,
            owner: old.owner,
            old_valid_until,
        };
        let stale = Stale {
            keys: vec![old.hash, new.hash],
            ..Stale::default()
        };
        self.commit(batch, next, actor, op, stale)?;
        Ok((new, secret))
    }

    /// Replaces a key at once (SEED's "Get a New API Key"): the old key is removed in the same batch that adds
    /// the new one, which copies every setting (name, permissions, scope, read-only flag, kind, active flag,
    /// expiry). A key already rotated away cannot be regenerated ([`StoreError::Conflict`]).
    pub fn regenerate_key(&mut self, actor: Actor, id: KeyId) -> Result<(KeyRecord, Secret)> {
        let old = self.require_key(id)?;
        Self::require_current(&old)?;
        let (secret, hash) = self.generate()?;
        let mut next = *self.state;
        let new_id = Self::next_key_id(&mut next)?;
        let new = Self::successor(&old, new_id, hash, &secret);
        let mut batch = WriteBatch::new();
        self.delete_key_entries(&mut batch, &old)?;
        Self::put_new_key(&mut batch, &new)?;
        let op = Op::KeyRegenerated {
            old: id,
            new: new_id,
            owner: old.owner,
        };
        let stale = Stale {
            keys: vec![old.hash, new.hash],
            ..Stale::default()
        };
        self.commit(batch, next, actor, op, stale)?;
        Ok((new, secret))
    }

    // ----- bindings -----

    /// Binds a role; see [`KeyTable::bind`].
    pub fn bind(
        &mut self,
        actor: Actor,
        principal: PrincipalId,
        role: &str,
        scope: &str,
    ) -> Result<Binding> {
        validate::role(role)?;
        validate::scope(scope)?;
        self.require_principal(principal)?;
        let key = layout::binding(principal, role, scope);
        if self.get(&key)?.is_some() {
            return Err(StoreError::conflict(format!(
                "principal {principal} already has role `{role}` at `{scope}`"
            )));
        }
        let binding = Binding {
            principal,
            role: role.to_owned(),
            scope: scope.to_owned(),
        };
        let mut batch = WriteBatch::new();
        batch.put(key, encode(&binding)?);
        let op = Op::Bound {
            principal,
            role: binding.role.clone(),
            scope: binding.scope.clone(),
        };
        let stale = Stale {
            principals: vec![principal],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(binding)
    }

    /// Removes a binding; see [`KeyTable::unbind`].
    pub fn unbind(
        &mut self,
        actor: Actor,
        principal: PrincipalId,
        role: &str,
        scope: &str,
    ) -> Result<Binding> {
        validate::role(role)?;
        validate::scope(scope)?;
        let key = layout::binding(principal, role, scope);
        let binding: Binding = self.get_record(&key)?.ok_or_else(|| {
            StoreError::not_found(
                "binding",
                format!("role `{role}` at `{scope}` of principal {principal}"),
            )
        })?;
        let mut batch = WriteBatch::new();
        batch.delete(key);
        let op = Op::Unbound {
            principal,
            role: binding.role.clone(),
            scope: binding.scope.clone(),
        };
        let stale = Stale {
            principals: vec![principal],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(binding)
    }

    // ----- workspaces -----

    /// Adds a workspace; see [`KeyTable::add_workspace`].
    pub fn add_workspace(&mut self, actor: Actor, workspace: Workspace) -> Result<Workspace> {
        validate::workspace_key(&workspace.public_key)?;
        validate::name("workspace name", &workspace.name)?;
        validate::scope(&workspace.scope)?;
        if let Some(company) = workspace.company {
            self.require_principal(company)?;
        }
        let key = layout::workspace(&workspace.public_key);
        if self.get(&key)?.is_some() {
            return Err(StoreError::conflict(format!(
                "workspace `{}` exists",
                workspace.public_key
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(key, encode(&workspace)?);
        let op = Op::WorkspaceAdded {
            public_key: workspace.public_key.clone(),
            name: workspace.name.clone(),
            company: workspace.company,
        };
        let stale = Stale {
            workspaces: vec![workspace.public_key.clone()],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(workspace)
    }

    /// Removes a workspace; see [`KeyTable::remove_workspace`]. Scans the principals to keep default
    /// workspaces valid.
    pub fn remove_workspace(&mut self, actor: Actor, public_key: &str) -> Result<Workspace> {
        // The scan below reads the backend directly.
        self.apply_pending()?;
        let t = self.table;
        let key = layout::workspace(public_key);
        let workspace: Workspace = t
            .get_record(&key)?
            .ok_or_else(|| StoreError::not_found("workspace", public_key))?;
        for entry in t.backend.scan_prefix(&[layout::PRINCIPAL], Order::Forward) {
            let (_, v) = entry?;
            let p: Principal = decode(&v)?;
            if p.default_workspace.as_deref() == Some(public_key) {
                return Err(StoreError::conflict(format!(
                    "workspace `{public_key}` is the default workspace of principal {}",
                    p.id
                )));
            }
        }
        let mut batch = WriteBatch::new();
        batch.delete(key);
        let op = Op::WorkspaceRemoved {
            public_key: workspace.public_key.clone(),
            company: workspace.company,
        };
        let stale = Stale {
            workspaces: vec![workspace.public_key.clone()],
            ..Stale::default()
        };
        let next = *self.state;
        self.commit(batch, next, actor, op, stale)?;
        Ok(workspace)
    }
}

impl Drop for KeyTable {
    fn drop(&mut self) {
        // Best effort: the refusals still queued. Nobody can hold the writer lock any more.
        if self.write_denials().is_ok_and(|n| n > 0) {
            let _ = self.backend.flush();
        }
    }
}

// Compile-time check that the table can be shared across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KeyTable>();
};
