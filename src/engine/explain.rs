//! `explain()`: how a decision was reached, step by step, for operators and `keyward authorize`.

use std::fmt;

use super::{Decision, Engine, Request};
use crate::decision::{Outcome, Via};

/// A decision and the steps that led to it.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The decision, identical to what [`Engine::authorize`] returns.
    pub decision: Decision,
    /// One line per step: credential, key, principal, each binding considered, the verdict.
    pub steps: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        match &self.decision {
            Decision::Allow(a) => write!(
                f,
                "ALLOW: role `{}` at `{}` (principal {}, key {})",
                a.role, a.granted_at, a.principal, a.key
            ),
            Decision::Deny(d) => write!(f, "DENY ({}): {}", d.reason.code(), d.reason),
        }
    }
}

impl Engine {
    /// Authorizes `req` like [`Engine::authorize`] and lists how the decision was reached.
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        let decision = self.authorize(req);
        let mut steps = Vec::new();
        let state = self.state.load();
        steps.push(format!("policy `{}`", state.policy.source.name));
        let ident = match self.authenticate_in(&state, req.headers, req.query) {
            Ok(i) => i,
            Err(d) => {
                steps.push(format!("authentication failed: {}", d.reason));
                return Explanation { decision, steps };
            }
        };
        let rec = &ident.key.record;
        steps.push(format!("credential style `{}`", ident.style));
        steps.push(format!(
            "key {} `{}` ({}…){}{}{}",
            rec.id,
            rec.name,
            rec.display_prefix,
            if rec.read_only { ", read-only" } else { "" },
            rec.scope
                .as_ref()
                .map_or(String::new(), |s| format!(", limited to `{s}`")),
            rec.permissions
                .as_ref()
                .map_or(String::new(), |p| format!(", permissions {}", p.join(","))),
        ));
        steps.push(format!(
            "principal {} `{}`",
            ident.principal(),
            ident.login()
        ));
        if let Some((pk, scope)) = &ident.workspace {
            steps.push(format!("workspace `{pk}` = `{scope}`"));
        }
        steps.push(format!("action `{}` on `{}`", req.action, req.resource));
        let compiled = &state.compiled;
        let p = &ident.principal;
        if p.stored_bindings.is_empty() {
            steps.push("no role bindings".to_string());
        }
        // Each binding on its own, to say what it would have done.
        if let (Some(action), Ok(resource)) = (
            compiled.action(req.action),
            compiled.parse_resource(req.resource),
        ) {
            for b in &p.stored_bindings {
                let line = match compiled.resolve_binding(&b.role, &b.scope) {
                    None => "ignored: role unknown to this policy, or scope not of the role's kind"
                        .to_string(),
                    Some(resolved) => {
                        if !resource.starts_with(&resolved.scope) {
                            "does not cover the resource".to_string()
                        } else {
                            match compiled.decide(
                                p.id_text.as_str(),
                                std::slice::from_ref(&resolved),
                                ident.key.limits(),
                                action,
                                &resource,
                            ) {
                                Outcome::Allow(Via::Binding(_)) => {
                                    "covers it and grants the action".to_string()
                                }
                                Outcome::Allow(Via::SelfAccess) => {
                                    "self access applies".to_string()
                                }
                                Outcome::Deny(f) => {
                                    format!("covers it but: {}", forbidden_text(&f))
                                }
                            }
                        }
                    }
                };
                steps.push(format!("binding `{}` at `{}`: {line}", b.role, b.scope));
            }
        }
        Explanation { decision, steps }
    }
}

fn forbidden_text(f: &crate::decision::Forbidden) -> String {
    use crate::decision::Forbidden;
    match f {
        Forbidden::UnknownAction => "the action is not declared".into(),
        Forbidden::InvalidResource(e) => e.to_string(),
        Forbidden::DenyRule(_) => "a deny rule forbids it".into(),
        Forbidden::OutsideKeyScope => "the resource is outside the key's scope".into(),
        Forbidden::OutsideKeyPermissions => "the action is outside the key's permissions".into(),
        Forbidden::ReadOnlyKey => "the key is read-only and the action writes".into(),
        Forbidden::ObserverCannotWrite => {
            "the role is an observer role and the action writes".into()
        }
        Forbidden::NoRole => "the role does not grant this action here".into(),
    }
}
