//! The narrow storage interface the key table needs, and its sled implementation.
//!
//! The table needs point reads, ordered range scans (forward, and backward for the audit log), atomic
//! batches of puts and deletes, and a durability barrier. Anything offering those (e.g. PostgreSQL) can back
//! the table later. The sled implementation keeps every logical table in ONE sled tree, distinguished by a
//! one-byte key prefix (see `layout.rs`), so a single `Tree::apply_batch` is atomic across all of them.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};

/// A stored key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An iterator over stored entries.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>;

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Reverse,
}

/// A set of puts and deletes applied atomically: after a crash either all or none of them are visible.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Moves every operation of `other` to the end of this batch.
    pub fn append(&mut self, mut other: WriteBatch) {
        self.ops.append(&mut other.ops);
    }

    /// The operations, in order: a key and its new value, or `None` for a delete.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Storage operations the key table relies on.
pub trait Backend: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Entries with `start <= key < end` (no upper bound when `end` is `None`), in the given order.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, order: Order) -> Entries<'_>;

    /// Whether `key` holds a value (a backend may answer without copying the value).
    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Entries whose key starts with `prefix`, in the given order.
    fn scan_prefix(&self, prefix: &[u8], order: Order) -> Entries<'_> {
        let end = prefix_end(prefix);
        self.scan(prefix, end.as_deref(), order)
    }

    /// Applies every operation of the batch atomically.
    fn apply(&self, batch: WriteBatch) -> Result<()>;

    /// Makes every applied batch durable.
    fn flush(&self) -> Result<()>;

    /// Whether the store holds no entry at all.
    fn is_empty(&self) -> Result<bool>;
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The sled backend: one tree (sled's default tree) of one database directory.
pub struct SledBackend {
    db: sled::Db,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend").finish_non_exhaustive()
    }
}

pub(crate) fn sled_error(context: &'static str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(source) => StoreError::Io { context, source },
        sled::Error::Corruption { at, .. } => StoreError::corrupt(
            "database",
            match at {
                Some(at) => format!("sled found corrupt data at {at:?} while {context}"),
                None => format!("sled found corrupt data while {context}"),
            },
        ),
        other => StoreError::Backend {
            context,
            reason: other.to_string(),
        },
    }
}

const LOCK_RETRIES: u32 = 10;
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

impl SledBackend {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// Before opening, deletes `snap.*.generating` files: sled writes snapshots under that name and renames
    /// them when complete, but it also reads them back, so one left half-written by a killed process makes
    /// every later open fail. Such a file was never renamed; the older snapshot and the log hold everything.
    ///
    /// Refuses a path that is a file, or a non-empty directory that does not hold a sled database.
    /// `cache_capacity` bounds sled's page cache, in bytes.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<SledBackend> {
        let path = dir.to_path_buf();
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::NotKeyward {
                    path,
                    reason: "it is not a directory".to_owned(),
                })
            }
            Ok(_) => prepare_dir(dir)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    context: "reading the database directory",
                    source,
                })
            }
        }
        let config = sled::Config::new().path(dir).cache_capacity(cache_capacity);
        let mut attempts = 0;
        let opened = loop {
            let opened = catch_unwind(AssertUnwindSafe(|| config.open()));
            // sled's background threads can hold the file lock for a moment after the database was dropped
            // in this process; a lock held by another process is still reported after about 200 ms.
            match &opened {
                Ok(Err(sled::Error::Io(e))) if is_lock_error(e) && attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_DELAY);
                }
                _ => break opened,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e))) if is_lock_error(&e) => {
                return Err(StoreError::InUse { path })
            }
            Ok(Err(sled::Error::Corruption { .. })) => {
                return Err(StoreError::corrupt(
                    "database",
                    format!("sled cannot read `{}`", path.display()),
                ))
            }
            Ok(Err(sled::Error::Unsupported(reason))) => {
                return Err(StoreError::NotKeyward { path, reason })
            }
            Ok(Err(e)) => return Err(sled_error("opening the database", e)),
            Err(_) => {
                return Err(StoreError::corrupt(
                    "database",
                    format!("sled failed while reading `{}`", path.display()),
                ))
            }
        };
        Ok(SledBackend { db })
    }

    /// A database in a temporary location, removed when dropped.
    pub fn temporary(cache_capacity: u64) -> Result<SledBackend> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(cache_capacity)
            .open()
            .map_err(|e| sled_error("creating a temporary database", e))?;
        Ok(SledBackend { db })
    }

    /// Whether sled holds data in trees other than the default one (i.e. it belongs to another program).
    pub(crate) fn has_foreign_trees(&self) -> Result<bool> {
        for name in self.db.tree_names() {
            if name.as_ref() == b"__sled__default" {
                continue;
            }
            let tree = self
                .db
                .open_tree(&name)
                .map_err(|e| sled_error("listing trees", e))?;
            if !tree.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Removes stale `snap.*.generating` files and refuses directories that hold something other than sled.
fn prepare_dir(dir: &Path) -> Result<()> {
    let io = |source| StoreError::Io {
        context: "reading the database directory",
        source,
    };
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        names.push(entry.path());
    }
    if names.is_empty() {
        return Ok(());
    }
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let has = |name: &str| names.iter().any(|p| file_name(p).as_deref() == Some(name));
    if !has("db") {
        return Err(StoreError::NotKeyward {
            path: dir.to_path_buf(),
            reason: "the directory is not empty and holds no database".to_owned(),
        });
    }
    // sled writes `conf` right after creating `db`; a non-empty `db` without it is not sled's.
    let db_len = std::fs::metadata(dir.join("db")).map_err(io)?.len();
    if !has("conf") && db_len > 0 {
        return Err(StoreError::NotKeyward {
            path: dir.to_path_buf(),
            reason: "its `db` file was not written by sled".to_owned(),
        });
    }
    for p in &names {
        let Some(name) = file_name(p) else { continue };
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(p).map_err(|source| StoreError::Io {
                context: "removing a half-written snapshot",
                source,
            })?;
        }
    }
    Ok(())
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| sled_error("reading", e))
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.db
            .contains_key(key)
            .map_err(|e| sled_error("reading", e))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, order: Order) -> Entries<'_> {
        let iter = match end {
            // sled's range on an empty or inverted interval is not worth the risk: answer nothing.
            Some(end) if end <= start => return Box::new(std::iter::empty()),
            Some(end) => self.db.range(start.to_vec()..end.to_vec()),
            None => self.db.range(start.to_vec()..),
        };
        let map = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| sled_error("scanning", e))
        };
        match order {
            Order::Forward => Box::new(iter.map(map)),
            Order::Reverse => Box::new(iter.rev().map(map)),
        }
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db
            .apply_batch(b)
            .map_err(|e| sled_error("writing a batch", e))
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| sled_error("flushing to disk", e))
    }

    fn is_empty(&self) -> Result<bool> {
        Ok(self.db.is_empty())
    }
}
