//! Policy benchmarks: the decision hot path (`parse_resource` + `decide`) on the bundled Cognitive3D
//! policy and on a generated policy with 10,000 roles over the same hierarchy, and the time to load
//! the large one (parse + check + compile).
//!
//! Targets: median decision <= 100 ns; the 10,000-role figure within 1.5x of the small one;
//! loading 10,000 roles <= 200 ms. Run with `cargo bench --bench policy -- --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keyward::decision::{Binding, CompiledPolicy, KeyLimits, Outcome};
use keyward::policy::Policy;

const COGNITIVE3D: &str = include_str!("../policies/cognitive3d.policy");
const ROLES: usize = 10_000;

/// The Cognitive3D hierarchy and actions with `n` roles spread over organization, project and scene,
/// some observers, some including a role beneath them.
fn many_roles(n: usize) -> String {
    let mut text = String::from(
        "scope domain;\nscope organization under domain;\nscope project under organization;\n\
         scope scene under project;\nscope session under scene;\nscope user;\n\
         action view, list, download: read;\naction create, update, delete, upload: write;\n\
         action manage_members, manage_keys, configure: write;\n\
         group read = view, list, download;\ngroup edit = create, update, delete, upload;\n",
    );
    let kinds = ["organization", "project", "scene"];
    for i in 0..n {
        let kind = kinds[i % 3];
        text.push_str(&format!("role r{i} at {kind}"));
        if i % 7 == 0 {
            text.push_str(" observer");
        }
        // Include a role bound beneath (or at) this one's kind, declared earlier.
        if i >= 3 && i % 5 == 0 && i % 3 != 2 {
            text.push_str(&format!(" includes r{}", i - 2 - (i % 3)));
        }
        match i % 4 {
            0 => text.push_str(" {\n    grant read;\n}\n"),
            1 => text.push_str(" {\n    grant read, edit;\n}\n"),
            2 => text.push_str(" {\n    grant read;\n    grant update on scene;\n}\n"),
            _ => text.push_str(" {\n    grant *;\n}\n"),
        }
    }
    text.push_str(
        "self view, update on user;\ndeny immutable_sessions: update, delete, upload on session;\n\
         credentials {\n    apikey_organization;\n}\n",
    );
    text
}

fn load(name: &str, text: &str) -> CompiledPolicy {
    match Policy::parse(name, text) {
        Ok(p) => CompiledPolicy::compile(&p.model),
        Err(r) => panic!("{}", r.render()),
    }
}

fn bindings(c: &CompiledPolicy, list: &[(&str, &str)]) -> Vec<Binding> {
    list.iter()
        .map(|(role, scope)| {
            c.resolve_binding(role, scope)
                .unwrap_or_else(|| panic!("binding {role} at {scope} does not resolve"))
        })
        .collect()
}

/// Benchmarks the requests of the shared workload: a project member updating a scene below its
/// project (allow), deleting a session (deny rule) and viewing another project (no role).
fn decisions(c: &mut Criterion, label: &str, policy: &CompiledPolicy, held: &[Binding]) {
    let key = KeyLimits::default();
    let update = policy.action("update").unwrap_or_default();
    let delete = policy.action("delete").unwrap_or_default();
    let view = policy.action("view").unwrap_or_default();
    let cases = [
        ("allow", update, "organization:acme/project:p7/scene:s3"),
        (
            "deny_rule",
            delete,
            "organization:acme/project:p7/scene:s3/session:x9",
        ),
        ("no_role", view, "organization:acme/project:p8"),
    ];
    let mut group = c.benchmark_group(format!("decide/{label}"));
    for (name, action, resource) in cases {
        // The expected outcome, so the benchmark cannot measure a path that errors out early.
        let outcome = policy
            .parse_resource(resource)
            .map(|r| policy.decide("u1", held, &key, action, &r));
        assert!(
            matches!(
                (name, &outcome),
                ("allow", Ok(Outcome::Allow(_))) | ("deny_rule" | "no_role", Ok(Outcome::Deny(_)))
            ),
            "{label}/{name}: {outcome:?}"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = policy.parse_resource(black_box(resource));
                r.map(|r| policy.decide(black_box("u1"), black_box(held), &key, action, &r))
            })
        });
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let small = load("cognitive3d.policy", COGNITIVE3D);
    let held = bindings(
        &small,
        &[
            ("org_observer", "organization:other"),
            ("scene_editor", "organization:acme/project:p1/scene:s1"),
            ("project_member", "organization:acme/project:p7"),
        ],
    );
    decisions(c, "cognitive3d", &small, &held);

    let text = many_roles(ROLES);
    let large = load("many-roles.policy", &text);
    // Same shape as above: an unrelated observer binding, an unrelated scene binding, then the one
    // that allows (`r1` is a project role granting read and edit).
    let held = bindings(
        &large,
        &[
            ("r0", "organization:other"),
            ("r2", "organization:acme/project:p1/scene:s1"),
            ("r9997", "organization:acme/project:p7"),
        ],
    );
    decisions(c, "10k_roles", &large, &held);

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("10k_roles_parse_check_compile", |b| {
        b.iter(|| load("many-roles.policy", black_box(&text)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
