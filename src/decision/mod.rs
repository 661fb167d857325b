//! The compiled policy and its evaluator: the hot path of every authorization.
//!
//! [`CompiledPolicy::compile`] turns a checked [`Model`] into flat tables indexed by interned ids:
//! per (role, resource kind) a bitset of allowed actions with observer roles and role inclusion already
//! folded in, per (resource kind, action) the first deny rule that matches, per account kind the
//! self-access actions. A decision is then a handful of array lookups per binding the principal holds:
//! its cost does not depend on how many roles, grants or deny rules the policy has.
//!
//! **Invariant:** shares no code with [`crate::policy::reference`]; `tests/differential.rs` checks that
//! both agree on decision and reason.

mod compile;
mod resource;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

pub use resource::{OwnedPath, Resource, ResourceError, MAX_RESOURCE_BYTES, MAX_RESOURCE_DEPTH};

use crate::policy::model::{ActionId, KindId, Model, RoleId};

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A set of actions, one bit per action id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionSet(Box<[u64]>);

impl ActionSet {
    /// An empty set sized for `n_actions`.
    pub fn empty(n_actions: usize) -> Self {
        ActionSet(vec![0; n_actions.div_ceil(64).max(1)].into_boxed_slice())
    }

    /// Adds an action.
    pub fn insert(&mut self, a: ActionId) {
        if let Some(w) = self.0.get_mut(a as usize / 64) {
            *w |= 1 << (a % 64);
        }
    }

    /// True if the set holds `a`.
    #[inline]
    pub fn contains(&self, a: ActionId) -> bool {
        self.0
            .get(a as usize / 64)
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }
}

/// A role binding resolved against a compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The role.
    pub role: RoleId,
    /// The scope instance it is bound at.
    pub scope: OwnedPath,
}

/// Where a key may reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KeyScope {
    /// Anywhere its owner's roles reach.
    #[default]
    Any,
    /// Only at or beneath this scope instance.
    Within(OwnedPath),
    /// Nowhere: the key's scope does not fit the current policy.
    Nowhere,
}

/// What a key limits on top of its owner's roles, resolved against a compiled policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Writes are refused.
    pub read_only: bool,
    /// Only these actions, if set.
    pub permissions: Option<ActionSet>,
    /// Where it may reach.
    pub scope: KeyScope,
}

impl KeyLimits {
    /// No limit beyond the owner's roles (the default).
    pub const NONE: KeyLimits = KeyLimits {
        read_only: false,
        permissions: None,
        scope: KeyScope::Any,
    };
}

/// Why the compiled evaluator allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The binding at this index of the slice given to [`CompiledPolicy::decide`].
    Binding(usize),
    /// A self-access rule: the resource is the principal's own account.
    SelfAccess,
}

/// Why the compiled evaluator denied (authorization only; authentication is decided before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// The action is not declared in the policy.
    UnknownAction,
    /// The resource path is malformed or does not follow the scope hierarchy.
    InvalidResource(ResourceError),
    /// The deny rule with this index matched.
    DenyRule(u32),
    /// The resource is outside the key's scope.
    OutsideKeyScope,
    /// The action is outside the key's permissions.
    OutsideKeyPermissions,
    /// A read-only key asked to write.
    ReadOnlyKey,
    /// A covering role would grant it but is an observer role and the action writes.
    ObserverCannotWrite,
    /// No binding at or above the resource grants it.
    NoRole,
}

/// The outcome of [`CompiledPolicy::decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Allow(Via),
    /// Denied.
    Deny(Forbidden),
}

const NO_RULE: u32 = u32::MAX;

/// A policy compiled to lookup tables. Cheap to share; immutable.
#[derive(Debug)]
pub struct CompiledPolicy {
    model: Model,
    kind_index: FastMap<Box<str>, KindId>,
    action_index: FastMap<Box<str>, ActionId>,
    role_index: FastMap<Box<str>, RoleId>,
    /// `[role]`: its name, shared, so a decision names its role without an allocation.
    role_names: Box<[std::sync::Arc<str>]>,
    /// `[kind]`: the kinds directly beneath it, so a path segment after the first is looked up among
    /// one or two names instead of hashed.
    kind_children: Vec<Box<[KindId]>>,
    /// `[kind]`: its name's bytes, for those comparisons.
    kind_names: Vec<Box<[u8]>>,
    n_kinds: usize,
    n_actions: usize,
    words: usize,
    write_actions: ActionSet,
    /// `[kind * n_actions + action]`: the first deny rule that forbids it, or `NO_RULE`.
    deny_first: Vec<u32>,
    /// `[(role * n_kinds + kind) * words ..]`: actions the role allows on a resource of that kind.
    allow: Vec<u64>,
    /// Same layout: actions granted but dropped because an observer role is on the way.
    blocked: Vec<u64>,
    /// `[kind * words ..]`: self-access actions on an account of that kind.
    self_allow: Vec<u64>,
}

impl CompiledPolicy {
    /// The checked model this was compiled from (names for messages and explanations).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The id of the action `name`.
    #[inline]
    pub fn action(&self, name: &str) -> Option<ActionId> {
        self.action_index.get(name).copied()
    }

    /// The id of the role `name`.
    pub fn role(&self, name: &str) -> Option<RoleId> {
        self.role_index.get(name).copied()
    }

    /// The name of role `id`, shared (one allocation per policy, not per decision).
    pub fn role_name(&self, id: RoleId) -> Option<&std::sync::Arc<str>> {
        self.role_names.get(id as usize)
    }

    /// The id of the scope kind `name`.
    #[inline]
    pub fn kind(&self, name: &str) -> Option<KindId> {
        self.kind_index.get(name).copied()
    }

    /// True if `action` writes.
    pub fn is_write(&self, action: ActionId) -> bool {
        self.write_actions.contains(action)
    }

    /// An empty action set sized for this policy.
    pub fn empty_action_set(&self) -> ActionSet {
        ActionSet::empty(self.n_actions)
    }

    /// Resolves a stored binding (role name, scope path). `None` when the role is unknown, the scope does
    /// not parse under this policy, or the scope's kind is not the one the role is bound at: such a
    /// binding grants nothing.
    pub fn resolve_binding(&self, role: &str, scope: &str) -> Option<Binding> {
        let role = self.role(role)?;
        let path = self.parse_resource(scope).ok()?;
        if path.leaf_kind() != self.model.roles[role as usize].kind {
            return None;
        }
        Some(Binding {
            role,
            scope: path.to_owned_path(),
        })
    }

    /// Resolves a key's stored limits. Unknown action names in `permissions` grant nothing; a scope
    /// that does not parse under this policy reaches nowhere.
    pub fn resolve_key_limits(
        &self,
        read_only: bool,
        permissions: Option<&[String]>,
        scope: Option<&str>,
    ) -> KeyLimits {
        let permissions = permissions.map(|names| {
            let mut set = self.empty_action_set();
            for n in names {
                if let Some(a) = self.action(n) {
                    set.insert(a);
                }
            }
            set
        });
        let scope = match scope {
            None => KeyScope::Any,
            Some(s) => match self.parse_resource(s) {
                Ok(p) => KeyScope::Within(p.to_owned_path()),
                Err(_) => KeyScope::Nowhere,
            },
        };
        KeyLimits {
            read_only,
            permissions,
            scope,
        }
    }

    /// Decides whether `principal` (its id, for self access), holding `bindings` and using a key with
    /// `key` limits, may do `action` on `resource`.
    ///
    /// Order, identical to the reference evaluator: deny rules, then the key's scope, permissions and
    /// read-only flag, then self access, then the bindings in order (the first that allows wins).
    #[inline]
    pub fn decide(
        &self,
        principal: &str,
        bindings: &[Binding],
        key: &KeyLimits,
        action: ActionId,
        resource: &Resource<'_>,
    ) -> Outcome {
        let a = action as usize;
        if a >= self.n_actions {
            return Outcome::Deny(Forbidden::UnknownAction);
        }
        let leaf = resource.leaf_kind() as usize;
        let rule = self.deny_first[leaf * self.n_actions + a];
        if rule != NO_RULE {
            return Outcome::Deny(Forbidden::DenyRule(rule));
        }
        match &key.scope {
            KeyScope::Any => {}
            KeyScope::Within(scope) => {
                if !resource.starts_with(scope) {
                    return Outcome::Deny(Forbidden::OutsideKeyScope);
                }
            }
            KeyScope::Nowhere => return Outcome::Deny(Forbidden::OutsideKeyScope),
        }
        if let Some(perms) = &key.permissions {
            if !perms.contains(action) {
                return Outcome::Deny(Forbidden::OutsideKeyPermissions);
            }
        }
        if key.read_only && self.write_actions.contains(action) {
            return Outcome::Deny(Forbidden::ReadOnlyKey);
        }
        let (first_kind, first_id) = resource.first();
        if bit(&self.self_allow, first_kind as usize * self.words, action) && first_id == principal
        {
            return Outcome::Allow(Via::SelfAccess);
        }
        let mut observer_blocked = false;
        for (i, b) in bindings.iter().enumerate() {
            if !resource.starts_with(&b.scope) {
                continue;
            }
            let base = (b.role as usize * self.n_kinds + leaf) * self.words;
            if bit(&self.allow, base, action) {
                return Outcome::Allow(Via::Binding(i));
            }
            observer_blocked |= bit(&self.blocked, base, action);
        }
        Outcome::Deny(if observer_blocked {
            Forbidden::ObserverCannotWrite
        } else {
            Forbidden::NoRole
        })
    }
}

#[inline]
fn bit(table: &[u64], base: usize, action: ActionId) -> bool {
    table
        .get(base + action as usize / 64)
        .is_some_and(|w| w & (1 << (action % 64)) != 0)
}

/// rustc's Fx hash: fast for short keys. Inputs here are policy names, not attacker-chosen at scale,
/// and every lookup is bounded by the policy's own size.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}
