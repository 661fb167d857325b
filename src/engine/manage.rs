//! Key management through the engine, authorized by the policy: users manage their own keys where a
//! self rule grants the policy's manage action; others need that action at a scope (002: environment
//! admins manage everyone's tokens; 003: organization admins create keys for their organization only).

use super::{Decision, Deny, Engine, Identity, Reason};
use crate::store::{Actor, KeyId, KeyRecord, NewKey, PrincipalId, StoreError};
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

impl Engine {
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
        // The identity may have been obtained a while ago: its key may be revoked since.
        let actor = &self
            .refresh(&state, actor)
            .map_err(ManageError::Forbidden)?;
        let model = &state.policy.model;
        let forbid = |reason| {
            ManageError::Forbidden(Deny {
                reason,
                principal: Some(actor.principal()),
                key: Some(actor.key()),
            })
        };
        let Some(manage) = model.keys.manage_action else {
            return Err(forbid(Reason::KeyManagementDisabled));
        };
        let manage_name = model.actions[manage as usize].name.clone();
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
                None => return Err(forbid(Reason::NoRole)),
            },
            (None, false) => return Err(forbid(Reason::NoRole)),
        };
        match self.decide_in(&state, actor, &manage_name, &scope, None) {
            Decision::Allow(_) => {}
            Decision::Deny(d) => return Err(ManageError::Forbidden(d)),
        }
        let who = Actor::Principal(actor.principal());
        let owned = |id: KeyId| -> Result<KeyRecord, ManageError> {
            match self.table.key(id)? {
                Some(k) if k.owner == target => Ok(k),
                _ => Err(ManageError::Store(StoreError::NotFound {
                    what: "key",
                    id: id.to_string(),
                })),
            }
        };
        // A new key belongs to the target, takes the policy's read-only default, and is confined
        // to the scope the action was checked at unless it is the actor's own account.
        let restrict = |new: &mut NewKey, read_only: Option<bool>| -> Result<(), ManageError> {
            new.owner = target;
            new.read_only = read_only.unwrap_or(model.keys.read_only_by_default);
            let is_own_account = own_account.as_deref() == Some(scope.as_str());
            if !is_own_account {
                match &new.scope {
                    None => new.scope = Some(scope.clone()),
                    Some(s) => {
                        let inside = s == &scope
                            || s.strip_prefix(scope.as_str())
                                .is_some_and(|r| r.starts_with('/'));
                        if !inside {
                            return Err(forbid(Reason::OutsideKeyScope));
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
                    return Err(forbid(Reason::OutsideKeyScope));
                }
            }
            Ok(())
        };
        let table = &self.table;
        Ok(match command {
            KeyCommand::Create { mut new, read_only } => {
                restrict(&mut new, read_only)?;
                let (rec, secret) = table.create_key(who, new)?;
                KeyCommandResult::Created(rec, secret)
            }
            KeyCommand::Import {
                mut new,
                read_only,
                secret,
            } => {
                restrict(&mut new, read_only)?;
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
}
