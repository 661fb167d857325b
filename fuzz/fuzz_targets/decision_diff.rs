//! Structure-aware differential test: an arbitrary small policy, bindings, key limits and request; the
//! compiled evaluator (`CompiledPolicy::decide`) must give the same decision as the reference evaluator
//! (`policy::reference::decide`), reason included (binding index, deny rule name).
//!
//! Names come from small pools so that most generated policies check and most paths resolve; a few
//! free-form strings keep the odd cases (unknown roles, malformed paths) in play.
#![no_main]

use arbitrary::Arbitrary;
use keyward::decision::{CompiledPolicy, Forbidden, Outcome, Via};
use keyward::policy::reference::{self, RefBinding, RefDecision, RefKey};
use keyward::policy::Policy;
use libfuzzer_sys::fuzz_target;

const KINDS: [&str; 5] = ["domain", "org", "project", "scene", "user"];
const ACTIONS: [&str; 6] = ["view", "list", "create", "update", "delete", "manage"];
const ROLES: [&str; 5] = ["admin", "member", "observer", "editor", "guest"];
const IDS: [&str; 3] = ["1", "2", "me"];

#[derive(Arbitrary, Debug)]
struct Input {
    /// Parent of kind `i`: an index below `i` (taken modulo `i`), or none.
    parents: [Option<u8>; 5],
    n_kinds: u8,
    /// One bit per action: write.
    writes: u8,
    n_actions: u8,
    groups: Vec<Vec<u8>>,
    roles: Vec<RoleIn>,
    selfs: Vec<(ActionsIn, u8)>,
    denies: Vec<(ActionsIn, Vec<u8>)>,
    principal: u8,
    bindings: Vec<(Name, PathIn)>,
    key: KeyIn,
    action: Name,
    resource: PathIn,
}

#[derive(Arbitrary, Debug)]
struct RoleIn {
    kind: u8,
    observer: bool,
    includes: Vec<u8>,
    grants: Vec<(ActionsIn, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
enum ActionsIn {
    All,
    /// Indexes into actions, then groups (`g0`, `g1`, ...).
    Names(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Pool(u8),
    Free(String),
}

#[derive(Arbitrary, Debug)]
enum PathIn {
    /// (kind, id) pairs by pool index.
    Segs(Vec<(u8, u8)>),
    Free(String),
}

#[derive(Arbitrary, Debug)]
struct KeyIn {
    read_only: bool,
    permissions: Option<Vec<Name>>,
    scope: Option<PathIn>,
}

impl Name {
    fn get(&self, pool: &[&str]) -> String {
        match self {
            Name::Pool(i) => pool[*i as usize % pool.len()].to_owned(),
            Name::Free(s) => s.clone(),
        }
    }
}

impl PathIn {
    fn get(&self, n_kinds: usize) -> String {
        match self {
            PathIn::Segs(segs) => segs
                .iter()
                .take(6)
                .map(|&(k, id)| {
                    format!(
                        "{}:{}",
                        KINDS[k as usize % n_kinds],
                        IDS[id as usize % IDS.len()]
                    )
                })
                .collect::<Vec<_>>()
                .join("/"),
            PathIn::Free(s) => s.clone(),
        }
    }
}

fn actions(a: &ActionsIn, n_actions: usize, n_groups: usize) -> String {
    match a {
        ActionsIn::All => "*".to_owned(),
        ActionsIn::Names(ix) => {
            let mut names: Vec<String> = ix
                .iter()
                .take(6)
                .map(|&i| {
                    let i = i as usize % (n_actions + n_groups);
                    if i < n_actions {
                        ACTIONS[i].to_owned()
                    } else {
                        format!("g{}", i - n_actions)
                    }
                })
                .collect();
            names.dedup();
            if names.is_empty() {
                names.push(ACTIONS[0].to_owned());
            }
            names.join(", ")
        }
    }
}

fn on(kinds: &[u8], n_kinds: usize) -> String {
    let mut names: Vec<&str> = kinds
        .iter()
        .take(3)
        .map(|&k| KINDS[k as usize % n_kinds])
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        String::new()
    } else {
        format!(" on {}", names.join(", "))
    }
}

fn policy_text(inp: &Input) -> String {
    let n_kinds = 1 + inp.n_kinds as usize % KINDS.len();
    let n_actions = 1 + inp.n_actions as usize % ACTIONS.len();
    let n_groups = inp.groups.len().min(3);
    let mut t = String::new();
    for (i, kind) in KINDS.iter().enumerate().take(n_kinds) {
        match inp.parents[i] {
            Some(p) if i > 0 => t += &format!("scope {kind} under {};\n", KINDS[p as usize % i]),
            _ => t += &format!("scope {kind};\n"),
        }
    }
    for (i, action) in ACTIONS.iter().enumerate().take(n_actions) {
        let access = if inp.writes >> i & 1 == 1 {
            "write"
        } else {
            "read"
        };
        t += &format!("action {action}: {access};\n");
    }
    // Groups name actions and earlier groups only (no cycles).
    for (g, members) in inp.groups.iter().take(n_groups).enumerate() {
        let mut names: Vec<String> = members
            .iter()
            .take(4)
            .map(|&m| {
                let m = m as usize % (n_actions + g);
                if m < n_actions {
                    ACTIONS[m].to_owned()
                } else {
                    format!("g{}", m - n_actions)
                }
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            names.push(ACTIONS[0].to_owned());
        }
        t += &format!("group g{g} = {};\n", names.join(", "));
    }
    let n_roles = inp.roles.len().min(ROLES.len());
    for (r, role) in inp.roles.iter().take(n_roles).enumerate() {
        let kind = KINDS[role.kind as usize % n_kinds];
        let observer = if role.observer { " observer" } else { "" };
        // Roles include earlier roles only (no cycles).
        let mut inc: Vec<&str> = if r == 0 {
            vec![]
        } else {
            role.includes
                .iter()
                .take(2)
                .map(|&i| ROLES[i as usize % r])
                .collect()
        };
        inc.sort_unstable();
        inc.dedup();
        let includes = if inc.is_empty() {
            String::new()
        } else {
            format!(" includes {}", inc.join(", "))
        };
        t += &format!("role {} at {kind}{observer}{includes} {{\n", ROLES[r]);
        for (acts, kinds) in role.grants.iter().take(3) {
            t += &format!(
                "    grant {}{};\n",
                actions(acts, n_actions, n_groups),
                on(kinds, n_kinds)
            );
        }
        t += "}\n";
    }
    for (acts, kind) in inp.selfs.iter().take(2) {
        t += &format!(
            "self {} on {};\n",
            actions(acts, n_actions, n_groups),
            KINDS[*kind as usize % n_kinds]
        );
    }
    for (i, (acts, kinds)) in inp.denies.iter().take(2).enumerate() {
        t += &format!(
            "deny d{i}: {}{};\n",
            actions(acts, n_actions, n_groups),
            on(kinds, n_kinds)
        );
    }
    t
}

fn compiled_as_reference(c: &CompiledPolicy, out: Outcome, kept: &[usize]) -> RefDecision {
    match out {
        Outcome::Allow(Via::Binding(i)) => RefDecision::AllowBinding(kept[i]),
        Outcome::Allow(Via::SelfAccess) => RefDecision::AllowSelf,
        Outcome::Deny(f) => match f {
            Forbidden::UnknownAction => RefDecision::UnknownAction,
            Forbidden::InvalidResource(_) => RefDecision::InvalidResource,
            Forbidden::DenyRule(r) => {
                RefDecision::DenyRule(c.model().denies[r as usize].name.clone())
            }
            Forbidden::OutsideKeyScope => RefDecision::OutsideKeyScope,
            Forbidden::OutsideKeyPermissions => RefDecision::OutsideKeyPermissions,
            Forbidden::ReadOnlyKey => RefDecision::ReadOnlyKey,
            Forbidden::ObserverCannotWrite => RefDecision::ObserverCannotWrite,
            Forbidden::NoRole => RefDecision::NoRole,
        },
    }
}

fuzz_target!(|inp: Input| {
    let text = policy_text(&inp);
    let policy = match Policy::parse("<fuzz>", &text) {
        Ok(p) => p,
        Err(_) => return,
    };
    let n_kinds = policy.model.kinds.len();
    let compiled = CompiledPolicy::compile(&policy.model);

    let principal = IDS[inp.principal as usize % IDS.len()];
    let bindings: Vec<RefBinding> = inp
        .bindings
        .iter()
        .take(6)
        .map(|(role, scope)| RefBinding {
            role: role.get(&ROLES),
            scope: scope.get(n_kinds),
        })
        .collect();
    let key = RefKey {
        read_only: inp.key.read_only,
        permissions: inp
            .key
            .permissions
            .as_ref()
            .map(|p| p.iter().take(4).map(|n| n.get(&ACTIONS)).collect()),
        scope: inp.key.scope.as_ref().map(|s| s.get(n_kinds)),
    };
    let action = inp.action.get(&ACTIONS);
    let resource = inp.resource.get(n_kinds);

    let expected = reference::decide(
        &policy.model,
        principal,
        &bindings,
        &key,
        &action,
        &resource,
    );

    // The engine's path: resolve what is stored, drop what grants nothing, keep the original indexes.
    let mut resolved = Vec::new();
    let mut kept = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        if let Some(r) = compiled.resolve_binding(&b.role, &b.scope) {
            resolved.push(r);
            kept.push(i);
        }
    }
    let limits = compiled.resolve_key_limits(
        key.read_only,
        key.permissions.as_deref(),
        key.scope.as_deref(),
    );
    let got = match compiled.action(&action) {
        None => RefDecision::UnknownAction,
        Some(a) => match compiled.parse_resource(&resource) {
            Err(_) => RefDecision::InvalidResource,
            Ok(res) => {
                let out = compiled.decide(principal, &resolved, &limits, a, &res);
                compiled_as_reference(&compiled, out, &kept)
            }
        },
    };
    assert_eq!(
        got, expected,
        "compiled and reference disagree\n--- policy\n{text}--- bindings {bindings:?}\n--- key {key:?}\n--- {action} on {resource:?} by {principal}"
    );
});
