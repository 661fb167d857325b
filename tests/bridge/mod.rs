//! Shared by the decision tests: the compiled evaluator behind the reference evaluator's signature.

use keyward::decision::{CompiledPolicy, Forbidden, Outcome, Via};
use keyward::policy::reference::{RefBinding, RefDecision, RefKey};

/// Resolves the bindings and key limits as a host would (dropping bindings that do not resolve),
/// asks [`CompiledPolicy::decide`], and translates the answer into the reference's vocabulary:
/// `Via::Binding(i)` back to the index in `bindings`, a deny rule to its name, any resource error to
/// `InvalidResource`.
pub fn compiled_decide(
    c: &CompiledPolicy,
    principal: &str,
    bindings: &[RefBinding],
    key: &RefKey,
    action: &str,
    resource: &str,
) -> RefDecision {
    let mut resolved = Vec::new();
    let mut original_index = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        if let Some(r) = c.resolve_binding(&b.role, &b.scope) {
            resolved.push(r);
            original_index.push(i);
        }
    }
    let key = c.resolve_key_limits(
        key.read_only,
        key.permissions.as_deref(),
        key.scope.as_deref(),
    );
    let Some(action) = c.action(action) else {
        return RefDecision::UnknownAction;
    };
    let Ok(resource) = c.parse_resource(resource) else {
        return RefDecision::InvalidResource;
    };
    match c.decide(principal, &resolved, &key, action, &resource) {
        Outcome::Allow(Via::Binding(i)) => RefDecision::AllowBinding(original_index[i]),
        Outcome::Allow(Via::SelfAccess) => RefDecision::AllowSelf,
        Outcome::Deny(f) => match f {
            Forbidden::UnknownAction => RefDecision::UnknownAction,
            Forbidden::InvalidResource(_) => RefDecision::InvalidResource,
            Forbidden::DenyRule(i) => {
                RefDecision::DenyRule(c.model().denies[i as usize].name.clone())
            }
            Forbidden::OutsideKeyScope => RefDecision::OutsideKeyScope,
            Forbidden::OutsideKeyPermissions => RefDecision::OutsideKeyPermissions,
            Forbidden::ReadOnlyKey => RefDecision::ReadOnlyKey,
            Forbidden::ObserverCannotWrite => RefDecision::ObserverCannotWrite,
            Forbidden::NoRole => RefDecision::NoRole,
        },
    }
}
