//! A deliberately simple evaluator that interprets the checked [`Model`] directly, by names and loops.
//!
//! It exists to be obviously right: the compiled evaluator in [`crate::decision`] must give the same
//! decision and reason for every input (see `tests/differential.rs`).
//!
//! **Invariant:** shares no code with `crate::decision`.

use super::model::{Access, Model, RoleId};

/// A role binding, by names: `role` at the scope instance path `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefBinding {
    /// The role's name.
    pub role: String,
    /// The scope instance path, e.g. `organization:6`.
    pub scope: String,
}

/// What a key allows on top of its owner's roles, by names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefKey {
    /// Writes are refused.
    pub read_only: bool,
    /// Only these actions, if set.
    pub permissions: Option<Vec<String>>,
    /// Only resources at or beneath this scope instance path, if set.
    pub scope: Option<String>,
}

/// The reference evaluator's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefDecision {
    /// Allowed through the binding at this index.
    AllowBinding(usize),
    /// Allowed by a self-access rule.
    AllowSelf,
    /// The action is not declared.
    UnknownAction,
    /// The resource path is malformed or does not follow the scope hierarchy.
    InvalidResource,
    /// This deny rule matched.
    DenyRule(String),
    /// The resource is outside the key's scope.
    OutsideKeyScope,
    /// The action is outside the key's permissions.
    OutsideKeyPermissions,
    /// A read-only key asked to write.
    ReadOnlyKey,
    /// A role would grant it but is an observer and the action writes.
    ObserverCannotWrite,
    /// No binding grants it.
    NoRole,
}

/// Decides whether `principal` (holding `bindings`, using `key`) may do `action` on `resource`.
pub fn decide(
    model: &Model,
    principal: &str,
    bindings: &[RefBinding],
    key: &RefKey,
    action: &str,
    resource: &str,
) -> RefDecision {
    let Some(action_id) = model.actions.iter().position(|a| a.name == action) else {
        return RefDecision::UnknownAction;
    };
    let is_write = model.actions[action_id].access == Access::Write;
    let Some(path) = parse_path(model, resource) else {
        return RefDecision::InvalidResource;
    };
    let leaf = path[path.len() - 1].0.clone();

    for rule in &model.denies {
        let names_action = rule.actions.iter().any(|&a| a as usize == action_id);
        let on_kind = rule.on.is_empty()
            || rule
                .on
                .iter()
                .any(|&k| kind_is_at_or_beneath(model, &leaf, &model.kinds[k as usize].name));
        if names_action && on_kind {
            return RefDecision::DenyRule(rule.name.clone());
        }
    }

    if let Some(scope) = &key.scope {
        let inside = match parse_path(model, scope) {
            Some(k) => is_prefix(&k, &path),
            None => false,
        };
        if !inside {
            return RefDecision::OutsideKeyScope;
        }
    }
    if let Some(perms) = &key.permissions {
        if !perms.iter().any(|p| p == action) {
            return RefDecision::OutsideKeyPermissions;
        }
    }
    if key.read_only && is_write {
        return RefDecision::ReadOnlyKey;
    }

    for rule in &model.self_rules {
        let kind = &model.kinds[rule.kind as usize].name;
        if path[0].0 == *kind
            && path[0].1 == principal
            && rule.actions.iter().any(|&a| a as usize == action_id)
        {
            return RefDecision::AllowSelf;
        }
    }

    let mut observer_blocked = false;
    for (i, b) in bindings.iter().enumerate() {
        let Some(role) = model.roles.iter().position(|r| r.name == b.role) else {
            continue;
        };
        let Some(scope) = parse_path(model, &b.scope) else {
            continue;
        };
        if scope[scope.len() - 1].0 != model.kinds[model.roles[role].kind as usize].name {
            continue;
        }
        if !is_prefix(&scope, &path) {
            continue;
        }
        if role_allows(model, role as RoleId, &leaf, action_id, true, 0) {
            return RefDecision::AllowBinding(i);
        }
        if role_allows(model, role as RoleId, &leaf, action_id, false, 0) {
            observer_blocked = true;
        }
    }
    if observer_blocked {
        RefDecision::ObserverCannotWrite
    } else {
        RefDecision::NoRole
    }
}

/// Does `role` grant `action` on a resource of kind `leaf`? With `honour_observer`, observer roles
/// (the role itself or any included one on the way) keep only read actions.
fn role_allows(
    model: &Model,
    role: RoleId,
    leaf: &str,
    action: usize,
    honour_observer: bool,
    depth: usize,
) -> bool {
    if depth > model.roles.len() {
        return false;
    }
    let r = &model.roles[role as usize];
    let blocked = honour_observer && r.observer && model.actions[action].access == Access::Write;
    if blocked {
        return false;
    }
    for g in &r.grants {
        let applies = g.on.is_empty()
            || g.on
                .iter()
                .any(|&k| kind_is_at_or_beneath(model, leaf, &model.kinds[k as usize].name));
        if applies && g.actions.iter().any(|&a| a as usize == action) {
            return true;
        }
    }
    r.includes
        .iter()
        .any(|&inc| role_allows(model, inc, leaf, action, honour_observer, depth + 1))
}

fn kind_is_at_or_beneath(model: &Model, kind: &str, ancestor: &str) -> bool {
    let mut cur = model.kinds.iter().find(|k| k.name == kind);
    let mut steps = 0;
    while let Some(k) = cur {
        if k.name == ancestor {
            return true;
        }
        steps += 1;
        if steps > model.kinds.len() {
            return false;
        }
        cur = k.parent.map(|p| &model.kinds[p as usize]);
    }
    false
}

fn is_prefix(prefix: &[(String, String)], path: &[(String, String)]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a == b)
}

/// `kind:id/kind:id/...`, every kind declared, each one the parent of the next, ids non-empty.
fn parse_path(model: &Model, s: &str) -> Option<Vec<(String, String)>> {
    if s.is_empty() || s.len() > 1024 {
        return None;
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for seg in s.split('/') {
        let (kind, id) = seg.split_once(':')?;
        if id.is_empty()
            || id.contains(':')
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return None;
        }
        let k = model.kinds.iter().position(|k| k.name == kind)?;
        if let Some((prev, _)) = out.last() {
            let parent = model.kinds[k].parent?;
            if model.kinds[parent as usize].name != *prev {
                return None;
            }
        }
        out.push((kind.to_string(), id.to_string()));
    }
    if out.len() > 16 {
        return None;
    }
    Some(out)
}
