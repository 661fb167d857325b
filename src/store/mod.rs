//! The key table: principals, API keys (stored as hashes only), role bindings, workspaces and an audit log
//! that doubles as the change log, in one sled database.
//!
//! **Invariant:** no secret is ever stored; keys are kept as a [`KeyHash`](crate::token::KeyHash) and a
//! short display prefix. **Invariant:** every mutation is one atomic batch (records, indexes, audit entry,
//! counters), durable when the call returns outside bulk mode. **Invariant:** every record is versioned
//! (see [`codec`]).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backend;
pub mod codec;
mod error;
mod layout;
pub mod record;
mod table;
pub mod validate;

pub use backend::{Backend, Order, SledBackend, WriteBatch};
pub use codec::{decode, encode, Record, FORMAT_VERSION, MAX_RECORD_LEN};
pub use error::{ImportError, Result, StoreError};
pub use layout::LAYOUT_VERSION;
pub use record::{
    Actor, AuditEntry, AuditQuery, Binding, KeyId, KeyKind, KeyRecord, NewDenial, NewKey,
    NewPrincipal, Op, Principal, PrincipalId, PrincipalKind, Workspace,
};
pub use table::{
    Bulk, Change, KeyTable, PendingDenials, StoreOptions, Subscriber, DEFAULT_CACHE_CAPACITY,
    DENIAL_PATH_MAX, DENIAL_QUEUE_MAX,
};
