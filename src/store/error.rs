//! The key table's error type.

use std::path::PathBuf;

use crate::token::TokenError;

/// Result of key table operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the key table. Messages start lowercase, have no final period, and put
/// user input in backticks; none of them ever holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the database's lock.
    #[error("database `{}` is in use by another process", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// The path holds something that is not a keyward database.
    #[error("`{}` is not a keyward database: {reason}", path.display())]
    NotKeyward {
        /// The path given to open.
        path: PathBuf,
        /// What was found there instead.
        reason: String,
    },
    /// Stored bytes could not be read back.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The kind of record or file, e.g. `key record` or `database`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A record or the database layout was written by a newer (or unknown) format version.
    #[error("{what} has format version {found}, this build reads version {supported} only")]
    UnsupportedVersion {
        /// The kind of record, or `database layout`.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A file system error.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The storage engine reported an error that is neither i/o nor corruption.
    #[error("storage engine error while {context}: {reason}")]
    Backend {
        /// What the store was doing.
        context: &'static str,
        /// The engine's message.
        reason: String,
    },
    /// The referenced record does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of record: `principal`, `key`, `binding`, `workspace`.
        what: &'static str,
        /// Its id, login, or other identifying text.
        id: String,
    },
    /// The mutation would break a uniqueness or reference rule.
    #[error("conflict: {what}")]
    Conflict {
        /// The rule that would be broken.
        what: String,
    },
    /// A name (key name, login, role, permission, workspace key) is not acceptable.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// The rejected name (truncated to 128 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A resource path or scope is not syntactically valid.
    #[error("invalid scope `{scope}`: {reason}")]
    InvalidScope {
        /// The rejected scope (truncated to 128 characters).
        scope: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An expiry time is not acceptable.
    #[error("invalid expiry {at}: {reason}")]
    InvalidExpiry {
        /// The rejected time, in unix seconds.
        at: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A presented or imported token is not acceptable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A record is larger than the codec allows.
    #[error("{what} is {len} bytes encoded, more than the {max} allowed")]
    TooLarge {
        /// The kind of record.
        what: &'static str,
        /// Its encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A mutating method was called on a table by the thread already writing to it (from inside a
    /// [`bulk`](super::KeyTable::bulk) closure or a change subscriber); it would deadlock.
    #[error("the key table is already being written by this thread; inside `bulk` use the `Bulk` handle")]
    Reentrant,
}

/// Why an import of many keys ([`KeyTable::import_keys_indexed`], [`KeyTable::check_import_keys`]) was
/// refused, and which key: nothing of the call was written.
///
/// [`KeyTable::import_keys_indexed`]: super::KeyTable::import_keys_indexed
/// [`KeyTable::check_import_keys`]: super::KeyTable::check_import_keys
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", index.map_or(String::new(), |i| format!("item {i}: ")))]
pub struct ImportError {
    /// The refused key's 0-based position in the call's input; `None` when no single key is at
    /// fault (the table could not be locked or the batch could not be written).
    pub index: Option<usize>,
    /// Why.
    pub error: StoreError,
}

impl ImportError {
    pub(crate) fn at(index: usize) -> impl FnOnce(StoreError) -> ImportError {
        move |error| ImportError {
            index: Some(index),
            error,
        }
    }
}

impl From<StoreError> for ImportError {
    /// An error no single key is at fault for.
    fn from(error: StoreError) -> Self {
        ImportError { index: None, error }
    }
}

impl StoreError {
    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: truncate(&id.to_string()),
        }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        StoreError::Conflict { what: what.into() }
    }

    pub(crate) fn invalid_name(what: &'static str, name: &str, reason: &'static str) -> Self {
        StoreError::InvalidName {
            what,
            name: truncate(name),
            reason,
        }
    }

    pub(crate) fn invalid_scope(scope: &str, reason: impl Into<String>) -> Self {
        StoreError::InvalidScope {
            scope: truncate(scope),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what,
            reason: reason.into(),
        }
    }
}

/// Cuts user input echoed in messages to 128 characters and escapes control characters.
pub(crate) fn truncate(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(160));
    for c in s.chars().take(128) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > 128 {
        out.push_str("...");
    }
    out
}
