//! Key management through the engine, authorized by the policy: users manage their own keys where a
//! self rule grants the policy's manage action; others need that action at a scope (002: environment
//! admins manage everyone's tokens; 003: organization admins create keys for their organization only).

use super::{Decision, Deny, Engine, Identity, PolicyState, Reason};
use crate::store::{Actor, ImportError, KeyId, KeyRecord, NewKey, PrincipalId, StoreError};
use crate::token::Secret;

/// A key-management operation on a target principal's keys.
#[derive(Clone, Debug)]
pub enum KeyCommand {
    /// Create a key. `read_only: None` takes the policy's default (`keys { read_only; }`).
    Create {
        /// The key to create (its `owner` is replaced by the target).
        new: NewKey,
        /// Read-only, writable, or the policy's default.
        read_only: Option<bool>,
    },
    /// Import an existing secret as a key, with the same restrictions as [`KeyCommand::Create`].
    /// The secret is hashed and dropped; it is never stored or echoed.
    Import {
        /// The key to create (its `owner` is replaced by the target).
        new: NewKey,
        /// Read-only, writable, or the policy's default.
        read_only: Option<bool>,
        /// The secret to import.
        secret: Secret,
    },
    /// List the target's keys (never their secrets).
    List,
    /// Rename a key.
    Rename(KeyId, String),
    /// Deactivate a key: refused from the very next decision on.
    Deactivate(KeyId),
    /// Re-activate a key.
    Activate(KeyId),
    /// Replace a key, the old one staying valid until `valid_until` (unix seconds).
    Rotate(KeyId, u64),
    /// Replace a key at once.
    Regenerate(KeyId),
    /// Delete a key.
    Delete(KeyId),
}

/// What a [`KeyCommand`] produced.
#[derive(Debug)]
pub enum KeyCommandResult {
    /// A new key and its secret, to show once.
    Created(KeyRecord, Secret),
    /// The target's keys.
    Listed(Vec<KeyRecord>),
    /// The key after the change, or the imported key.
    Updated(KeyRecord),
    /// The deleted key.
    Deleted(KeyRecord),
}

/// Why a key-management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The policy does not let the caller do this.
    #[error("{}", .0.reason)]
    Forbidden(Deny),
    /// The key table refused it (unknown key, duplicate name, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One key of [`Engine::import_keys`]: what [`KeyCommand::Import`] takes.
#[derive(Clone, Debug)]
pub struct ImportItem {
    /// The key to create (its `owner` is replaced by the target).
    pub new: NewKey,
    /// Read-only, writable, or the policy's default.
    pub read_only: Option<bool>,
    /// The secret to import; hashed and dropped, never stored or echoed.
    pub secret: Secret,
}

/// Why [`Engine::import_keys`] or [`Engine::check_import_keys`] refused a batch (nothing of it was
/// written), and which key.
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", index.map_or(String::new(), |i| format!("item {i}: ")))]
pub struct ImportKeysError {
    /// The refused key's 0-based position in the batch; `None` when no single key is at fault (the
    /// caller may not manage the target's keys at all, the write failed).
    pub index: Option<usize>,
    /// Why.
    pub error: ManageError,
}

impl From<ManageError> for ImportKeysError {
    fn from(error: ManageError) -> Self {
        ImportKeysError { index: None, error }
    }
}

impl From<ImportError> for ImportKeysError {
    fn from(e: ImportError) -> Self {
        ImportKeysError {
            index: e.index,
            error: ManageError::Store(e.error),
        }
    }
}

/// The right to manage a target's keys, as [`Engine::manage_keys`] checked it: who, whose keys, and
/// where the policy's manage action was allowed.
struct Grant<'s> {
    state: &'s PolicyState,
    /// The actor, refreshed.
    actor: Identity,
    target: PrincipalId,
    /// Where the manage action was checked and allowed.
    scope: String,
    /// Whether that is the actor's own account (a self rule), where new keys are not confined.
    own_account: bool,
}

impl Grant<'_> {
    fn forbid(&self, reason: Reason) -> ManageError {
        forbid(&self.actor, reason)
    }

    /// A new key belongs to the target, takes the policy's read-only default, and is confined to the
    /// scope the action was checked at unless it is the actor's own account.
    fn restrict(&self, new: &mut NewKey, read_only: Option<bool>) -> Result<(), ManageError> {
        let model = &self.state.policy.model;
        let scope = &self.scope;
        new.owner = self.target;
        new.read_only = read_only.unwrap_or(model.keys.read_only_by_default);
        if !self.own_account {
            match &new.scope {
                None => new.scope = Some(scope.clone()),
                Some(s) => {
                    let inside = s == scope
                        || s.strip_prefix(scope.as_str())
                            .is_some_and(|r| r.starts_with('/'));
                    if !inside {
                        return Err(self.forbid(Reason::OutsideKeyScope));
                    }
                }
            }
        }
        if let (Some(kind), Some(s)) = (model.keys.scope_kind, &new.scope) {
            let kind_name = &model.kinds[kind as usize].name;
            let leaf_kind = s
                .rsplit('/')
                .next()
                .and_then(|seg| seg.split_once(':'))
                .map(|(k, _)| k);
            if leaf_kind != Some(kind_name.as_str()) {
                return Err(self.forbid(Reason::OutsideKeyScope));
            }
        }
        Ok(())
    }

    fn actor(&self) -> Actor {
        Actor::Principal(self.actor.principal())
    }
}

fn forbid(actor: &Identity, reason: Reason) -> ManageError {
    ManageError::Forbidden(Deny {
        reason,
        principal: Some(actor.principal()),
        key: Some(actor.key()),
    })
}

impl Engine {
    /// Checks that `actor` may manage the keys of `target`, at `at` or on its own account; see
    /// [`Engine::manage_keys`].
    fn grant<'s>(
        &self,
        state: &'s PolicyState,
        actor: &Identity,
        target: PrincipalId,
        at: Option<&str>,
    ) -> Result<Grant<'s>, ManageError> {
        // The identity may have been obtained a while ago: its key may be revoked since.
        let actor = self.refresh(state, actor).map_err(ManageError::Forbidden)?;
        let model = &state.policy.model;
        let Some(manage) = model.keys.manage_action else {
            return Err(forbid(&actor, Reason::KeyManagementDisabled));
        };
        let manage_name = &model.actions[manage as usize].name;
        // Where the action is checked: the given scope, or the actor's own account.
        let own_account = model
            .self_rules
            .iter()
            .find(|r| r.actions.contains(&manage))
            .map(|r| {
                format!(
                    "{}:{}",
                    model.kinds[r.kind as usize].name,
                    actor.principal()
                )
            });
        let scope = match (at, actor.principal() == target) {
            (Some(s), _) => s.to_string(),
            (None, true) => match own_account.clone() {
                Some(s) => s,
                None => return Err(forbid(&actor, Reason::NoRole)),
            },
            (None, false) => return Err(forbid(&actor, Reason::NoRole)),
        };
        match self.decide_in(state, &actor.who(), manage_name, &scope, None) {
            Decision::Allow(_) => {}
            Decision::Deny(d) => return Err(ManageError::Forbidden(d)),
        }
        Ok(Grant {
            state,
            own_account: own_account.as_deref() == Some(scope.as_str()),
            actor,
            target,
            scope,
        })
    }

    /// Runs `command` on the keys of `target` on behalf of the authenticated `actor`.
    ///
    /// `at` is the scope instance where the policy's manage action is checked (e.g. `organization:6`);
    /// when the actor manages its own keys it may be `None`, and the self rules decide. Keys created by
    /// someone else are restricted to `at` (or beneath it), and must be when the policy says
    /// `keys { scope KIND; }`.
    pub fn manage_keys(
        &self,
        actor: &Identity,
        target: PrincipalId,
        at: Option<&str>,
        command: KeyCommand,
    ) -> Result<KeyCommandResult, ManageError> {
        let state = self.state.load();
        let grant = self.grant(&state, actor, target, at)?;
        let who = grant.actor();
        let owned = |id: KeyId| -> Result<KeyRecord, ManageError> {
            match self.table.key(id)? {
                Some(k) if k.owner == target => Ok(k),
                _ => Err(ManageError::Store(StoreError::NotFound {
                    what: "key",
                    id: id.to_string(),
                })),
            }
        };
        let table = &self.table;
        Ok(match command {
            KeyCommand::Create { mut new, read_only } => {
                grant.restrict(&mut new, read_only)?;
                let (rec, secret) = table.create_key(who, new)?;
                KeyCommandResult::Created(rec, secret)
            }
            KeyCommand::Import {
                mut new,
                read_only,
                secret,
            } => {
                grant.restrict(&mut new, read_only)?;
                KeyCommandResult::Updated(table.import_key(who, new, secret.expose())?)
            }
            KeyCommand::List => KeyCommandResult::Listed(table.keys_of(target)?),
            KeyCommand::Rename(id, name) => {
                owned(id)?;
                KeyCommandResult::Updated(table.rename_key(who, id, &name)?)
            }
            KeyCommand::Deactivate(id) => {
                owned(id)?;
                KeyCommandResult::Updated(table.set_key_active(who, id, false)?)
            }
            KeyCommand::Activate(id) => {
                owned(id)?;
                KeyCommandResult::Updated(table.set_key_active(who, id, true)?)
            }
            KeyCommand::Rotate(id, until) => {
                owned(id)?;
                let (rec, secret) = table.rotate_key(who, id, until)?;
                KeyCommandResult::Created(rec, secret)
            }
            KeyCommand::Regenerate(id) => {
                owned(id)?;
                let (rec, secret) = table.regenerate_key(who, id)?;
                KeyCommandResult::Created(rec, secret)
            }
            KeyCommand::Delete(id) => {
                owned(id)?;
                KeyCommandResult::Deleted(table.delete_key(who, id)?)
            }
        })
    }

    /// Imports many existing secrets as keys of `target`, as ONE mutation: authorized once as
    /// [`KeyCommand::Import`] is (the manage action at `at`, or on the actor's own account), each key
    /// restricted as an imported key is, then written by
    /// [`KeyTable::import_keys_indexed`](crate::store::KeyTable::import_keys_indexed): one atomic batch,
    /// one `keys_imported` audit entry with the actor. All or nothing: a key refused is the error,
    /// with its index, and nothing is written. Every key's scope is checked first (the first outside
    /// the actor's is [`ManageError::Forbidden`]), then the table checks them in order (a bad secret
    /// or name, a secret repeated or already stored, a name in use). Returns the records in input
    /// order.
    pub fn import_keys(
        &self,
        actor: &Identity,
        target: PrincipalId,
        at: Option<&str>,
        keys: Vec<ImportItem>,
    ) -> Result<Vec<KeyRecord>, ImportKeysError> {
        let state = self.state.load();
        let grant = self.grant(&state, actor, target, at)?;
        let keys = restrict_all(&grant, keys)?;
        Ok(self.table.import_keys_indexed(grant.actor(), keys)?)
    }

    /// Checks `keys` exactly as [`Engine::import_keys`] would, and writes nothing.
    pub fn check_import_keys(
        &self,
        actor: &Identity,
        target: PrincipalId,
        at: Option<&str>,
        keys: Vec<ImportItem>,
    ) -> Result<(), ImportKeysError> {
        let state = self.state.load();
        let grant = self.grant(&state, actor, target, at)?;
        let keys = restrict_all(&grant, keys)?;
        Ok(self.table.check_import_keys(keys)?)
    }
}

/// A secret handed to the key table to hash (the table takes `AsRef<str>`; [`Secret`] itself does
/// not expose its text that easily).
struct ToHash(Secret);

impl AsRef<str> for ToHash {
    fn as_ref(&self) -> &str {
        self.0.expose()
    }
}

/// Restricts every key of an import as [`Grant::restrict`] does; the first refused is the error.
fn restrict_all(
    grant: &Grant<'_>,
    keys: Vec<ImportItem>,
) -> Result<Vec<(NewKey, ToHash)>, ImportKeysError> {
    keys.into_iter()
        .enumerate()
        .map(|(i, mut k)| match grant.restrict(&mut k.new, k.read_only) {
            Ok(()) => Ok((k.new, ToHash(k.secret))),
            Err(error) => Err(ImportKeysError {
                index: Some(i),
                error,
            }),
        })
        .collect()
}
