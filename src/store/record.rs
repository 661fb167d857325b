//! The records the key table stores, and the inputs of its mutations.
//!
//! **Invariant:** no record holds a secret. Keys are stored as a [`KeyHash`] and a short display prefix.

use serde::{Deserialize, Serialize};

use super::codec::Record;
use crate::token::KeyHash;

/// Identifies a principal. Allocated from a counter, starting at 1, never reused.
pub type PrincipalId = u64;
/// Identifies a key. Allocated from a counter, starting at 1, never reused.
pub type KeyId = u64;

/// What kind of party a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A non-human account used by software.
    ServiceAccount,
    /// A workspace acting on its own behalf (seats.io workspace secret keys).
    Workspace,
    /// An organization.
    Organization,
    /// A company owning workspaces.
    Company,
}

/// A party that owns keys and holds role bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Its id.
    pub id: PrincipalId,
    /// Its kind.
    pub kind: PrincipalKind,
    /// Its login, e.g. an email. Unique, compared case-insensitively.
    pub login: String,
    /// The public key of the workspace it acts on by default.
    pub default_workspace: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: u64,
}

impl Record for Principal {
    const KIND: &'static str = "principal";
}

/// The kind of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyKind {
    /// An ordinary key.
    Standard,
    /// A company admin key (seats.io): acts on any workspace of its company.
    Admin,
}

/// A stored key. It holds the key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Its id.
    pub id: KeyId,
    /// The principal it authenticates.
    pub owner: PrincipalId,
    /// Its name, unique among its owner's current keys (see [`KeyTable::rotate_key`](super::KeyTable::rotate_key)).
    pub name: String,
    /// The hash of the secret.
    pub hash: KeyHash,
    /// The first characters of the secret, for listings.
    pub display_prefix: String,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// The key stops working at this time (unix seconds), if set.
    pub expires_at: Option<u64>,
    /// Whether the key is enabled.
    pub active: bool,
    /// Last time a request used it, unix seconds (updated in batches).
    pub last_used: Option<u64>,
    /// Whether the key may only perform read actions.
    pub read_only: bool,
    /// Action names the key is limited to; `None` means everything its owner's roles allow.
    pub permissions: Option<Vec<String>>,
    /// Resource path the key is limited to, e.g. `organization:6`.
    pub scope: Option<String>,
    /// Its kind.
    pub kind: KeyKind,
    /// Whether the secret was imported rather than generated here.
    pub imported: bool,
    /// The key that replaced this one by rotation, if any.
    pub rotated_to: Option<KeyId>,
}

impl Record for KeyRecord {
    const KIND: &'static str = "key record";
}

/// A role granted to a principal at a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    /// The principal.
    pub principal: PrincipalId,
    /// The role name.
    pub role: String,
    /// The resource path the role applies at (and beneath).
    pub scope: String,
}

impl Record for Binding {
    const KIND: &'static str = "binding";
}

/// A workspace, addressed by its public (non-secret) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// The public workspace key, e.g. sent as `X-Workspace-Key`.
    pub public_key: String,
    /// Its display name.
    pub name: String,
    /// The resource path it stands for.
    pub scope: String,
    /// The company principal owning it.
    pub company: Option<PrincipalId>,
}

impl Record for Workspace {
    const KIND: &'static str = "workspace";
}

/// Who performed a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// keyward itself, or the embedding application.
    System,
    /// A principal, e.g. through an admin API.
    Principal(PrincipalId),
    /// An operator at the shell.
    Cli,
    /// A caller who presented no key the table knows: the actor of an [`Op::AccessDenied`] entry only.
    Anonymous,
}

/// One mutation, as recorded in the audit log. Carries ids and names, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A principal was added.
    PrincipalAdded {
        /// Its id.
        id: PrincipalId,
        /// Its login.
        login: String,
    },
    /// A principal was removed with its keys and bindings.
    PrincipalRemoved {
        /// Its id.
        id: PrincipalId,
        /// Its login.
        login: String,
        /// The keys removed with it.
        keys: Vec<KeyId>,
    },
    /// A principal's default workspace was set or cleared.
    DefaultWorkspaceSet {
        /// The principal.
        id: PrincipalId,
        /// The workspace's public key.
        workspace: Option<String>,
    },
    /// A key was generated.
    KeyCreated {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
        /// Its name.
        name: String,
    },
    /// A key was imported.
    KeyImported {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
        /// Its name.
        name: String,
    },
    /// Keys `first..=last` (consecutive ids) were imported by one [`Bulk::import_keys`] call: one entry for
    /// the whole call. Each key's name, owner and settings are in its record.
    ///
    /// [`Bulk::import_keys`]: super::Bulk::import_keys
    KeysImported {
        /// The first key id.
        first: KeyId,
        /// The last key id.
        last: KeyId,
        /// The distinct owners of the keys, ascending.
        owners: Vec<PrincipalId>,
    },
    /// A key was renamed.
    KeyRenamed {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// A key was deactivated.
    KeyDeactivated {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
    },
    /// A key was re-activated.
    KeyActivated {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
    },
    /// A key was deleted.
    KeyDeleted {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
        /// Its name.
        name: String,
    },
    /// A key's expiry was set or cleared.
    KeyExpirySet {
        /// The key.
        key: KeyId,
        /// Its owner.
        owner: PrincipalId,
        /// The new expiry, unix seconds.
        expires_at: Option<u64>,
    },
    /// A key was rotated: a new key replaces it, and it keeps working until `old_valid_until`.
    KeyRotated {
        /// The old key.
        old: KeyId,
        /// The new key.
        new: KeyId,
        /// Their owner.
        owner: PrincipalId,
        /// The old key's expiry.
        old_valid_until: u64,
    },
    /// A key was regenerated: the old one was removed at once and a new one took its place.
    KeyRegenerated {
        /// The removed key.
        old: KeyId,
        /// The new key.
        new: KeyId,
        /// Their owner.
        owner: PrincipalId,
    },
    /// A role was bound to a principal.
    Bound {
        /// The principal.
        principal: PrincipalId,
        /// The role.
        role: String,
        /// The scope.
        scope: String,
    },
    /// A role binding was removed.
    Unbound {
        /// The principal.
        principal: PrincipalId,
        /// The role.
        role: String,
        /// The scope.
        scope: String,
    },
    /// A workspace was added.
    WorkspaceAdded {
        /// Its public key.
        public_key: String,
        /// Its name.
        name: String,
        /// Its company.
        company: Option<PrincipalId>,
    },
    /// A workspace was removed.
    WorkspaceRemoved {
        /// Its public key.
        public_key: String,
        /// Its company.
        company: Option<PrincipalId>,
    },
    /// A call was refused (the admin API records every 401 and 403 it answers). Not a change: it
    /// takes a sequence number when written, but no subscriber hears of it (see
    /// [`KeyTable::record_denial`]). The entry's actor is the principal whose key was presented, when
    /// the table knows that key (also when it is inactive or expired), else [`Actor::Anonymous`].
    /// Never holds a secret or a credential.
    ///
    /// [`KeyTable::record_denial`]: super::KeyTable::record_denial
    AccessDenied {
        /// The HTTP status answered: 401 or 403.
        status: u16,
        /// The reason code answered, e.g. `no_role`.
        code: String,
        /// The request method.
        method: String,
        /// The request path, without the query string (a credential may travel there), cut to
        /// [`DENIAL_PATH_MAX`](super::DENIAL_PATH_MAX) bytes.
        path: String,
        /// The key presented, when the table knows it.
        key: Option<KeyId>,
    },
    /// `count` refused calls were not recorded: the queue of refusals waiting to be written was full
    /// (see [`KeyTable::record_denial`]). Written, by [`Actor::System`], after the refusals that were.
    ///
    /// [`KeyTable::record_denial`]: super::KeyTable::record_denial
    DenialsNotRecorded {
        /// How many.
        count: u64,
    },
}

impl Op {
    /// The principals this operation concerns (the audit log is indexed by them).
    pub fn principals(&self) -> Vec<PrincipalId> {
        match self {
            Op::PrincipalAdded { id, .. }
            | Op::PrincipalRemoved { id, .. }
            | Op::DefaultWorkspaceSet { id, .. } => vec![*id],
            Op::KeyCreated { owner, .. }
            | Op::KeyImported { owner, .. }
            | Op::KeyRenamed { owner, .. }
            | Op::KeyDeactivated { owner, .. }
            | Op::KeyActivated { owner, .. }
            | Op::KeyDeleted { owner, .. }
            | Op::KeyExpirySet { owner, .. }
            | Op::KeyRotated { owner, .. }
            | Op::KeyRegenerated { owner, .. } => vec![*owner],
            Op::KeysImported { owners, .. } => owners.clone(),
            Op::Bound { principal, .. } | Op::Unbound { principal, .. } => vec![*principal],
            Op::WorkspaceAdded { company, .. } | Op::WorkspaceRemoved { company, .. } => {
                company.iter().copied().collect()
            }
            // A refusal concerns its actor only, who is indexed as the actor.
            Op::AccessDenied { .. } | Op::DenialsNotRecorded { .. } => Vec::new(),
        }
    }

    /// Whether this entry records a change of the table's contents. Records of refused calls
    /// ([`Op::AccessDenied`], [`Op::DenialsNotRecorded`]) are not: a reader of
    /// [`KeyTable::changes_since`](super::KeyTable::changes_since) skips them.
    pub fn is_change(&self) -> bool {
        !self.is_denial()
    }

    /// Whether this entry records refused calls: [`Op::AccessDenied`] or [`Op::DenialsNotRecorded`].
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Op::AccessDenied { .. } | Op::DenialsNotRecorded { .. }
        )
    }
}

/// One entry of the audit log, which is also the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, starting at 1, one per committed mutation and per record of refused calls
    /// (those take theirs when written, in batches, so their order by `seq` is the order of writing).
    pub seq: u64,
    /// Time of the mutation or of the refusal, unix seconds.
    pub at: u64,
    /// Who performed it.
    pub actor: Actor,
    /// What it did.
    pub op: Op,
}

impl AuditEntry {
    /// The principals this entry is indexed under: the acting principal and those the operation concerns.
    pub fn principals(&self) -> Vec<PrincipalId> {
        let mut out = self.op.principals();
        if let Actor::Principal(id) = self.actor {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

impl Record for AuditEntry {
    const KIND: &'static str = "audit entry";
}

/// Input of [`KeyTable::add_principal`](super::KeyTable::add_principal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrincipal {
    /// Its kind.
    pub kind: PrincipalKind,
    /// Its login, unique case-insensitively.
    pub login: String,
    /// The public key of an existing workspace.
    pub default_workspace: Option<String>,
}

/// Input of [`KeyTable::create_key`](super::KeyTable::create_key) and
/// [`KeyTable::import_key`](super::KeyTable::import_key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The owning principal, which must exist.
    pub owner: PrincipalId,
    /// Its name: 1 to 100 characters, no control characters, unique among the owner's keys.
    pub name: String,
    /// Expiry, unix seconds; must be in the future.
    pub expires_at: Option<u64>,
    /// Whether the key may only perform read actions.
    pub read_only: bool,
    /// Action names the key is limited to.
    pub permissions: Option<Vec<String>>,
    /// Resource path the key is limited to.
    pub scope: Option<String>,
    /// Its kind.
    pub kind: KeyKind,
}

impl NewKey {
    /// A standard, unrestricted, non-expiring key.
    pub fn new(owner: PrincipalId, name: impl Into<String>) -> Self {
        NewKey {
            owner,
            name: name.into(),
            expires_at: None,
            read_only: false,
            permissions: None,
            scope: None,
            kind: KeyKind::Standard,
        }
    }
}

/// Input of [`KeyTable::record_denial`](super::KeyTable::record_denial): a refused call, as recorded in
/// an [`Op::AccessDenied`] entry. Longer fields are cut (the path to
/// [`DENIAL_PATH_MAX`](super::DENIAL_PATH_MAX) bytes) and control characters replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDenial<'a> {
    /// The principal whose key was presented, when the table knows it; [`Actor::Anonymous`] otherwise.
    pub actor: Actor,
    /// The HTTP status answered (401 or 403).
    pub status: u16,
    /// The reason code answered.
    pub code: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request path, WITHOUT the query string.
    pub path: &'a str,
    /// The key presented, when the table knows it.
    pub key: Option<KeyId>,
}

/// Input of [`KeyTable::audit`](super::KeyTable::audit): newest first, optionally one principal's entries,
/// `limit` entries at most, only entries with a sequence number below `before` when set (paging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries concerning this principal.
    pub principal: Option<PrincipalId>,
    /// At most this many entries.
    pub limit: usize,
    /// Only entries with `seq < before`.
    pub before: Option<u64>,
}
