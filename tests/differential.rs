//! Differential test: the compiled evaluator ([`CompiledPolicy::decide`]) must give exactly the same
//! decision and reason as the reference evaluator ([`reference::decide`]) on random checked policies,
//! random bindings, random key limits and random requests, malformed ones included.
//!
//! Inputs are drawn from a stream of random numbers (`Vec<u16>`, read past its end as zeros), so
//! proptest shrinks a failure to a short stream, that is to a small policy and a small request.
//! `PROPTEST_CASES` changes the number of policies; each policy is asked [`REQUESTS_PER_POLICY`] questions.

use std::collections::BTreeMap;
use std::sync::Mutex;

mod bridge;

use keyward::decision::CompiledPolicy;
use keyward::policy::reference::{self, RefBinding, RefDecision, RefKey};
use keyward::policy::Policy;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const REQUESTS_PER_POLICY: usize = 48;
/// Ids of several lengths, some equal but for one byte at either end of an 8-byte word.
const IDS: &[&str] = &[
    "1",
    "2",
    "alice",
    "id-000000001",
    "id-000000002",
    "jd-000000001",
    "id-00000000001234",
    "id-00000000001235",
];
const PRINCIPALS: &[&str] = &["alice", "1", "bob", "id-000000001"];

/// A stream of choices; past its end every choice is 0.
struct Choices<'a> {
    data: &'a [u16],
    pos: usize,
}

impl Choices<'_> {
    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        if n == 0 {
            0
        } else {
            v as usize % n
        }
    }

    /// True with probability 1/n.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == n - 1
    }

    fn pick<'s>(&mut self, items: &'s [String]) -> &'s str {
        &items[self.below(items.len())]
    }
}

/// The shape of a generated policy, kept alongside its text to generate matching requests.
struct Shape {
    text: String,
    kinds: Vec<String>,
    parent: Vec<Option<usize>>,
    actions: Vec<String>,
    roles: Vec<(String, usize)>,
}

impl Shape {
    fn at_or_beneath(&self, kind: usize, ancestor: usize) -> bool {
        let mut cur = Some(kind);
        while let Some(k) = cur {
            if k == ancestor {
                return true;
            }
            cur = self.parent[k];
        }
        false
    }

    fn children(&self, kind: usize) -> Vec<usize> {
        (0..self.kinds.len())
            .filter(|&k| self.parent[k] == Some(kind))
            .collect()
    }

    /// A valid path ending at `kind`, starting at `kind` or one of its ancestors.
    fn path_to(&self, c: &mut Choices<'_>, kind: usize) -> String {
        let mut chain = vec![kind];
        while let Some(p) = self.parent[*chain.last().unwrap_or(&kind)] {
            if c.one_in(3) {
                break;
            }
            chain.push(p);
        }
        chain
            .iter()
            .rev()
            .map(|&k| format!("{}:{}", self.kinds[k], IDS[c.below(IDS.len())]))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `path` extended downward by zero or more random children.
    fn extend(&self, c: &mut Choices<'_>, mut path: String, mut kind: usize) -> String {
        loop {
            let ch = self.children(kind);
            if ch.is_empty() || c.one_in(3) {
                return path;
            }
            kind = ch[c.below(ch.len())];
            path.push_str(&format!(
                "/{}:{}",
                self.kinds[kind],
                IDS[c.below(IDS.len())]
            ));
        }
    }

    /// A resource or scope path: mostly valid, sometimes malformed in one of many ways.
    fn path(&self, c: &mut Choices<'_>) -> String {
        let kind = c.below(self.kinds.len());
        let valid = self.path_to(c, kind);
        if !c.one_in(6) {
            return valid;
        }
        let k = &self.kinds[kind];
        match c.below(11) {
            0 => String::new(),
            1 => format!("{valid}/"),
            2 => format!("ghost:1/{valid}"),
            3 => format!("{k}:"),
            4 => format!("{k}:a b"),
            5 => format!("{k}:x:y"),
            6 => k.to_string(),
            7 => format!("{k}:1/{k}:2"),
            8 => vec![format!("{k}:1"); 17].join("/"),
            9 => format!("{k}:{}", "x".repeat(1100)),
            _ => format!("{valid}//{k}:1"),
        }
    }
}

fn action_list(c: &mut Choices<'_>, names: &[String]) -> String {
    if c.one_in(6) {
        return "*".into();
    }
    let n = 1 + c.below(3);
    let mut out: Vec<&str> = Vec::new();
    for _ in 0..n {
        out.push(c.pick(names));
    }
    out.join(", ")
}

/// Kinds at or beneath `root` (all kinds when `root` is `None`), as an `on` clause or nothing.
fn on_clause(c: &mut Choices<'_>, s: &Shape, root: Option<usize>) -> String {
    if c.one_in(2) {
        return String::new();
    }
    let candidates: Vec<String> = (0..s.kinds.len())
        .filter(|&k| root.is_none_or(|r| s.at_or_beneath(k, r)))
        .map(|k| s.kinds[k].clone())
        .collect();
    let n = 1 + c.below(2);
    let picked: Vec<&str> = (0..n).map(|_| c.pick(&candidates)).collect();
    format!(" on {}", picked.join(", "))
}

/// A policy that the checker accepts: a kind tree, read and write actions, groups, roles with
/// observer, includes and grants with `on`, self rules and deny rules.
fn gen_policy(c: &mut Choices<'_>) -> Shape {
    let n_kinds = 1 + c.below(6);
    // Short and long kind names (the compiled parser compares names in 8-byte words).
    let kinds: Vec<String> = (0..n_kinds)
        .map(|i| {
            if i % 2 == 0 {
                format!("k{i}")
            } else {
                format!("kind_number_{i}")
            }
        })
        .collect();
    let parent: Vec<Option<usize>> = (0..n_kinds)
        .map(|i| {
            if i == 0 || c.one_in(3) {
                None
            } else {
                Some(c.below(i))
            }
        })
        .collect();
    let mut s = Shape {
        text: String::new(),
        kinds,
        parent,
        actions: Vec::new(),
        roles: Vec::new(),
    };
    let mut text = String::new();
    // Kinds, in a random order (a parent may be declared after its child).
    let mut order: Vec<usize> = (0..n_kinds).collect();
    if c.one_in(2) {
        order.reverse();
    }
    for &k in &order {
        match s.parent[k] {
            Some(p) => text.push_str(&format!("scope {} under {};\n", s.kinds[k], s.kinds[p])),
            None => text.push_str(&format!("scope {};\n", s.kinds[k])),
        }
    }
    // Actions, several to a declaration when the access matches.
    let n_actions = 1 + c.below(8);
    let mut decls: Vec<(Vec<String>, bool)> = Vec::new();
    for i in 0..n_actions {
        let name = format!("a{i}");
        let write = c.one_in(2);
        match decls.last_mut() {
            Some((names, w)) if *w == write && c.one_in(2) => names.push(name.clone()),
            _ => decls.push((vec![name.clone()], write)),
        }
        s.actions.push(name);
    }
    for (names, write) in &decls {
        let access = if *write { "write" } else { "read" };
        text.push_str(&format!("action {}: {access};\n", names.join(", ")));
    }
    // Groups over actions and earlier groups.
    let mut action_names = s.actions.clone();
    for g in 0..c.below(4) {
        let members = action_list(c, &action_names);
        let members = if members == "*" {
            s.actions[0].clone()
        } else {
            members
        };
        text.push_str(&format!("group g{g} = {members};\n"));
        action_names.push(format!("g{g}"));
    }
    // Roles: includes only earlier roles bound at or beneath the same kind (no cycles).
    let n_roles = 1 + c.below(6);
    let mut role_texts = Vec::new();
    for r in 0..n_roles {
        let kind = c.below(n_kinds);
        let observer = c.one_in(3);
        let includes: Vec<String> = (0..r)
            .filter(|&j| s.at_or_beneath(s.roles[j].1, kind))
            .filter(|_| c.one_in(3))
            .map(|j| s.roles[j].0.clone())
            .collect();
        let mut grants = Vec::new();
        let n_grants = c.below(3);
        for _ in 0..n_grants.max(usize::from(includes.is_empty())) {
            let actions = action_list(c, &action_names);
            let on = on_clause(c, &s, Some(kind));
            grants.push(format!("    grant {actions}{on};\n"));
        }
        let name = format!("r{r}");
        let mut t = format!("role {name} at {}", s.kinds[kind]);
        if observer {
            t.push_str(" observer");
        }
        if !includes.is_empty() {
            t.push_str(&format!(" includes {}", includes.join(", ")));
        }
        t.push_str(" {\n");
        for g in grants {
            t.push_str(&g);
        }
        t.push_str("}\n");
        role_texts.push(t);
        s.roles.push((name, kind));
    }
    if c.one_in(2) {
        role_texts.reverse();
    }
    for t in role_texts {
        text.push_str(&t);
    }
    for _ in 0..c.below(3) {
        let actions = action_list(c, &action_names);
        let kind = c.below(n_kinds);
        text.push_str(&format!("self {actions} on {};\n", s.kinds[kind]));
    }
    let n_denies = if c.one_in(2) { c.below(3) } else { 0 };
    for d in 0..n_denies {
        let actions = action_list(c, &action_names);
        let on = on_clause(c, &s, None);
        text.push_str(&format!("deny d{d}: {actions}{on};\n"));
    }
    text.push_str("credentials {\n    bearer;\n}\n");
    s.text = text;
    s
}

/// One question: bindings, key, principal, action, resource.
struct Request {
    bindings: Vec<RefBinding>,
    key: RefKey,
    principal: String,
    action: String,
    resource: String,
}

fn gen_request(c: &mut Choices<'_>, s: &Shape) -> Request {
    let mut bindings = Vec::new();
    let mut valid_scopes = Vec::new();
    for _ in 0..c.below(4) {
        let (role, kind) = if c.one_in(8) {
            ("ghost".to_string(), c.below(s.kinds.len()))
        } else {
            s.roles[c.below(s.roles.len())].clone()
        };
        let scope = if c.one_in(6) {
            s.path(c)
        } else {
            let p = s.path_to(c, kind);
            valid_scopes.push((p.clone(), kind));
            p
        };
        bindings.push(RefBinding { role, scope });
    }
    let resource = match valid_scopes.len() {
        n if n > 0 && !c.one_in(3) => {
            let (p, k) = valid_scopes[c.below(n)].clone();
            s.extend(c, p, k)
        }
        _ => s.path(c),
    };
    let permissions = c.one_in(3).then(|| {
        let mut names: Vec<String> = Vec::new();
        for _ in 0..c.below(4) {
            if c.one_in(6) {
                names.push("ghost".into());
            } else {
                names.push(c.pick(&s.actions).to_string());
            }
        }
        names
    });
    let scope = c.one_in(3).then(|| {
        if c.one_in(2) {
            let kind = c.below(s.kinds.len());
            let p = s.path_to(c, kind);
            if c.one_in(2) {
                // Often an ancestor of the resource, so the key's scope lets it through.
                resource
                    .split('/')
                    .take(1 + c.below(3))
                    .collect::<Vec<_>>()
                    .join("/")
            } else {
                p
            }
        } else {
            s.path(c)
        }
    });
    let key = RefKey {
        read_only: c.one_in(4),
        permissions,
        scope,
    };
    let action = if c.one_in(10) {
        "ghost".to_string()
    } else {
        c.pick(&s.actions).to_string()
    };
    Request {
        bindings,
        key,
        principal: PRINCIPALS[c.below(PRINCIPALS.len())].to_string(),
        action,
        resource,
    }
}

/// The compiled evaluator's answer to a request, in the reference's vocabulary.
fn compiled_decide(compiled: &CompiledPolicy, r: &Request) -> RefDecision {
    bridge::compiled_decide(
        compiled,
        &r.principal,
        &r.bindings,
        &r.key,
        &r.action,
        &r.resource,
    )
}

/// A label per reason, to show that every reason was reached.
fn reason(d: &RefDecision) -> &'static str {
    match d {
        RefDecision::AllowBinding(_) => "allow binding",
        RefDecision::AllowSelf => "allow self",
        RefDecision::UnknownAction => "unknown action",
        RefDecision::InvalidResource => "invalid resource",
        RefDecision::DenyRule(_) => "deny rule",
        RefDecision::OutsideKeyScope => "outside key scope",
        RefDecision::OutsideKeyPermissions => "outside key permissions",
        RefDecision::ReadOnlyKey => "read-only key",
        RefDecision::ObserverCannotWrite => "observer cannot write",
        RefDecision::NoRole => "no role",
    }
}

fn one_policy(
    data: &[u16],
    seen: &Mutex<BTreeMap<&'static str, usize>>,
) -> Result<(), TestCaseError> {
    let mut c = Choices { data, pos: 0 };
    let shape = gen_policy(&mut c);
    let policy = match Policy::parse("<generated>", &shape.text) {
        Ok(p) => p,
        Err(report) => {
            return Err(TestCaseError::fail(format!(
                "the generator wrote a policy the checker refuses:\n{}\n{}",
                shape.text,
                report.render()
            )))
        }
    };
    let compiled = CompiledPolicy::compile(&policy.model);
    for _ in 0..REQUESTS_PER_POLICY {
        let r = gen_request(&mut c, &shape);
        let want = reference::decide(
            &policy.model,
            &r.principal,
            &r.bindings,
            &r.key,
            &r.action,
            &r.resource,
        );
        let got = compiled_decide(&compiled, &r);
        prop_assert_eq!(
            &got,
            &want,
            "policy:\n{}\nbindings: {:?}\nkey: {:?}\nprincipal: {:?} action: {:?} resource: {:?}",
            shape.text,
            r.bindings,
            r.key,
            r.principal,
            r.action,
            r.resource
        );
        if let Ok(mut seen) = seen.lock() {
            *seen.entry(reason(&want)).or_default() += 1;
        }
    }
    Ok(())
}

#[test]
fn compiled_evaluator_agrees_with_reference() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = Mutex::new(BTreeMap::new());
    let result = runner.run(&prop::collection::vec(any::<u16>(), 0..4000), |data| {
        one_policy(&data, &seen)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner().unwrap_or_default();
    let total: usize = seen.values().sum();
    println!("{total} decisions compared: {seen:#?}");
    // Every reason must be reached, or the generator has gone blind to part of the evaluator.
    for r in [
        "allow binding",
        "allow self",
        "unknown action",
        "invalid resource",
        "deny rule",
        "outside key scope",
        "outside key permissions",
        "read-only key",
        "observer cannot write",
        "no role",
    ] {
        assert!(
            seen.get(r).copied().unwrap_or(0) > 0,
            "no generated request ended in `{r}`: {seen:?}"
        );
    }
}

/// A fixed policy where the order of the checks matters, so the sequence is pinned independently of
/// the random generator.
#[test]
fn evaluation_order_is_the_same_on_both_sides() {
    let text = "scope org;\nscope doc under org;\naction view: read;\naction edit: write;\n\
                role viewer at org observer { grant *; }\nrole editor at org { grant *; }\n\
                self view on org;\ndeny frozen: edit on doc;\ncredentials { bearer; }\n";
    let policy = Policy::parse("<order>", text).unwrap_or_else(|r| panic!("{}", r.render()));
    let compiled = CompiledPolicy::compile(&policy.model);
    let b = |role: &str, scope: &str| RefBinding {
        role: role.into(),
        scope: scope.into(),
    };
    type Row<'a> = (
        Vec<RefBinding>,
        RefKey,
        &'a str,
        &'a str,
        &'a str,
        RefDecision,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            vec![],
            RefKey::default(),
            "p",
            "nope",
            "org:1",
            RefDecision::UnknownAction,
        ),
        (
            vec![],
            RefKey::default(),
            "p",
            "view",
            "org:",
            RefDecision::InvalidResource,
        ),
        (
            vec![b("editor", "org:1")],
            RefKey::default(),
            "p",
            "edit",
            "org:1/doc:2",
            RefDecision::DenyRule("frozen".into()),
        ),
        (
            vec![b("editor", "org:1")],
            RefKey {
                scope: Some("org:2".into()),
                ..RefKey::default()
            },
            "p",
            "view",
            "org:1",
            RefDecision::OutsideKeyScope,
        ),
        (
            vec![b("viewer", "org:1"), b("editor", "org:1")],
            RefKey::default(),
            "p",
            "edit",
            "org:1",
            RefDecision::AllowBinding(1),
        ),
        (
            vec![b("viewer", "org:1")],
            RefKey::default(),
            "p",
            "edit",
            "org:1",
            RefDecision::ObserverCannotWrite,
        ),
        (
            vec![],
            RefKey::default(),
            "1",
            "view",
            "org:1",
            RefDecision::AllowSelf,
        ),
    ];
    for (bindings, key, principal, action, resource, want) in rows {
        let r = Request {
            bindings,
            key,
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
        };
        let got_ref = reference::decide(
            &policy.model,
            &r.principal,
            &r.bindings,
            &r.key,
            &r.action,
            &r.resource,
        );
        assert_eq!(got_ref, want, "reference, {action} on {resource}");
        assert_eq!(
            compiled_decide(&compiled, &r),
            want,
            "compiled, {action} on {resource}"
        );
    }
}
