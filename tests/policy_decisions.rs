//! Table-driven decisions for each bundled policy (`policies/*.policy`), one row per step of the
//! product's story in `REFERENCES.md`. Every row is asked of both evaluators: the compiled one and the
//! reference one must each give the expected decision and reason.

mod bridge;

use keyward::decision::CompiledPolicy;
use keyward::policy::model::Unauthenticated;
use keyward::policy::reference::{self, RefBinding, RefDecision, RefKey};
use keyward::policy::{self, Policy};
use RefDecision::*;

/// One question and its expected answer.
struct Row {
    bindings: &'static [(&'static str, &'static str)],
    key: RefKey,
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    want: RefDecision,
}

fn row(
    bindings: &'static [(&'static str, &'static str)],
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    want: RefDecision,
) -> Row {
    Row {
        bindings,
        key: RefKey::default(),
        principal,
        action,
        resource,
        want,
    }
}

impl Row {
    fn key(mut self, key: RefKey) -> Row {
        self.key = key;
        self
    }
}

fn read_only() -> RefKey {
    RefKey {
        read_only: true,
        ..RefKey::default()
    }
}

fn scoped(scope: &str) -> RefKey {
    RefKey {
        scope: Some(scope.into()),
        ..RefKey::default()
    }
}

fn only(perms: &[&str]) -> RefKey {
    RefKey {
        permissions: Some(perms.iter().map(|p| p.to_string()).collect()),
        ..RefKey::default()
    }
}

fn deny(rule: &str) -> RefDecision {
    DenyRule(rule.into())
}

fn load(name: &str) -> Policy {
    let path = format!("{}/policies/{name}.policy", env!("CARGO_MANIFEST_DIR"));
    policy::load_file(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"))
}

/// Asks every row of both evaluators; reports every mismatch at once.
fn check(name: &str, rows: &[Row]) {
    let p = load(name);
    let c = CompiledPolicy::compile(&p.model);
    let mut failures = Vec::new();
    for (n, r) in rows.iter().enumerate() {
        let bindings: Vec<RefBinding> = r
            .bindings
            .iter()
            .map(|(role, scope)| RefBinding {
                role: role.to_string(),
                scope: scope.to_string(),
            })
            .collect();
        let by_reference = reference::decide(
            &p.model,
            r.principal,
            &bindings,
            &r.key,
            r.action,
            r.resource,
        );
        let by_compiled =
            bridge::compiled_decide(&c, r.principal, &bindings, &r.key, r.action, r.resource);
        if by_reference != r.want || by_compiled != r.want {
            failures.push(format!(
                "row {n}: {:?} with {:?} and {:?}: `{}` on `{}`: want {:?}, reference {:?}, compiled {:?}",
                r.principal, r.bindings, r.key, r.action, r.resource, r.want, by_reference, by_compiled
            ));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

// ---- 003 Cognitive3D: Domain > Organization > Project > Scene > Session, observers, org keys ------

const ORG: &str = "organization:acme";
const P1: &str = "organization:acme/project:p1";
const SCENE: &str = "organization:acme/project:p1/scene:s1";
const SESSION: &str = "organization:acme/project:p1/scene:s1/session:x";

#[test]
fn cognitive3d() {
    const DOMAIN_ADMIN: &[(&str, &str)] = &[("domain_admin", "domain:d")];
    const ORG_ADMIN: &[(&str, &str)] = &[("org_admin", ORG)];
    const ORG_OBSERVER: &[(&str, &str)] = &[("org_observer", ORG)];
    const MEMBER: &[(&str, &str)] = &[("project_member", P1)];
    const PROJECT_OBSERVER: &[(&str, &str)] = &[("project_observer", P1)];
    const SCENE_EDITOR: &[(&str, &str)] = &[("scene_editor", SCENE)];
    const OBSERVER_THEN_ADMIN: &[(&str, &str)] = &[("org_observer", ORG), ("org_admin", ORG)];
    const STALE: &[(&str, &str)] = &[
        ("retired_role", ORG),
        ("org_admin", "project:p1"),
        ("project_member", P1),
    ];
    let rows = [
        // Domain: the highest scope, for private-label domains.
        row(DOMAIN_ADMIN, "u", "configure", "domain:d", AllowBinding(0)),
        row(
            DOMAIN_ADMIN,
            "u",
            "delete",
            "domain:d/organization:acme/project:p1",
            AllowBinding(0),
        ),
        row(DOMAIN_ADMIN, "u", "configure", "domain:other", NoRole),
        // Organization admin: settings, members, keys, and everything beneath.
        row(ORG_ADMIN, "u", "manage_members", ORG, AllowBinding(0)),
        row(ORG_ADMIN, "u", "manage_keys", ORG, AllowBinding(0)),
        row(ORG_ADMIN, "u", "upload", SCENE, AllowBinding(0)),
        row(ORG_ADMIN, "u", "view", "organization:other", NoRole),
        row(
            ORG_ADMIN,
            "u",
            "view",
            "organization:other/project:p1",
            NoRole,
        ),
        // Observer roles are read-only whatever they list.
        row(ORG_OBSERVER, "u", "view", SCENE, AllowBinding(0)),
        row(ORG_OBSERVER, "u", "download", SESSION, AllowBinding(0)),
        row(ORG_OBSERVER, "u", "update", P1, ObserverCannotWrite),
        row(
            ORG_OBSERVER,
            "u",
            "manage_members",
            ORG,
            ObserverCannotWrite,
        ),
        row(OBSERVER_THEN_ADMIN, "u", "update", P1, AllowBinding(1)),
        row(OBSERVER_THEN_ADMIN, "u", "view", P1, AllowBinding(0)),
        // Project: project settings and all scenes, not the organization or other projects.
        row(MEMBER, "u", "update", SCENE, AllowBinding(0)),
        row(MEMBER, "u", "delete", SCENE, AllowBinding(0)),
        row(MEMBER, "u", "list", P1, AllowBinding(0)),
        row(MEMBER, "u", "view", "organization:acme/project:p2", NoRole),
        row(MEMBER, "u", "view", ORG, NoRole),
        row(MEMBER, "u", "configure", P1, NoRole),
        row(PROJECT_OBSERVER, "u", "download", SCENE, AllowBinding(0)),
        // It lists only reads: a write it never listed is simply not granted.
        row(PROJECT_OBSERVER, "u", "upload", SCENE, NoRole),
        // Scene: the scene and its contents.
        row(SCENE_EDITOR, "u", "update", SCENE, AllowBinding(0)),
        row(SCENE_EDITOR, "u", "upload", SCENE, AllowBinding(0)),
        row(SCENE_EDITOR, "u", "delete", SCENE, NoRole),
        row(SCENE_EDITOR, "u", "view", SESSION, AllowBinding(0)),
        row(
            SCENE_EDITOR,
            "u",
            "view",
            "organization:acme/project:p1/scene:s2",
            NoRole,
        ),
        // Sessions are immutable for everyone, before any key or role is looked at.
        row(
            ORG_ADMIN,
            "u",
            "update",
            SESSION,
            deny("immutable_sessions"),
        ),
        row(
            ORG_ADMIN,
            "u",
            "delete",
            SESSION,
            deny("immutable_sessions"),
        ),
        row(
            SCENE_EDITOR,
            "u",
            "upload",
            SESSION,
            deny("immutable_sessions"),
        ),
        row(&[], "u", "delete", SESSION, deny("immutable_sessions")),
        row(ORG_ADMIN, "u", "delete", SCENE, AllowBinding(0)),
        row(
            ORG_ADMIN,
            "u",
            "update",
            SESSION,
            deny("immutable_sessions"),
        )
        .key(read_only()),
        // Every user has their own account.
        row(&[], "u1", "view", "user:u1", AllowSelf),
        row(&[], "u1", "update", "user:u1", AllowSelf),
        row(&[], "u1", "delete", "user:u1", NoRole),
        row(&[], "u1", "view", "user:u2", NoRole),
        row(ORG_ADMIN, "u1", "view", "user:u2", NoRole),
        // Keys reach one organization and everything beneath it; read-only is recommended.
        row(ORG_ADMIN, "u", "view", SCENE, AllowBinding(0)).key(scoped(ORG)),
        row(ORG_ADMIN, "u", "view", ORG, AllowBinding(0)).key(scoped(ORG)),
        row(
            ORG_ADMIN,
            "u",
            "view",
            "organization:other",
            OutsideKeyScope,
        )
        .key(scoped(ORG)),
        row(ORG_ADMIN, "u", "view", "domain:d", OutsideKeyScope).key(scoped(ORG)),
        row(ORG_ADMIN, "u", "view", ORG, OutsideKeyScope).key(scoped("organization:")),
        row(ORG_ADMIN, "u", "view", ORG, OutsideKeyScope).key(scoped("galaxy:1")),
        row(ORG_ADMIN, "u", "view", SCENE, AllowBinding(0)).key(read_only()),
        row(ORG_ADMIN, "u", "update", SCENE, ReadOnlyKey).key(read_only()),
        row(&[], "u1", "update", "user:u1", ReadOnlyKey).key(read_only()),
        row(&[], "u1", "view", "user:u1", OutsideKeyScope).key(scoped(ORG)),
        row(ORG_ADMIN, "u", "list", P1, OutsideKeyPermissions).key(only(&["view"])),
        row(ORG_ADMIN, "u", "view", P1, AllowBinding(0)).key(only(&["view", "no_such_action"])),
        // Stale bindings (a removed role, a scope of the wrong kind) grant nothing but do not break others.
        row(STALE, "u", "update", SCENE, AllowBinding(2)),
        row(STALE, "u", "configure", ORG, NoRole),
        // Malformed requests.
        row(ORG_ADMIN, "u", "fly", ORG, UnknownAction),
        row(
            ORG_ADMIN,
            "u",
            "view",
            "project:p1/organization:acme",
            InvalidResource,
        ),
        row(ORG_ADMIN, "u", "view", "organization:", InvalidResource),
        row(
            ORG_ADMIN,
            "u",
            "view",
            "organization:acme/",
            InvalidResource,
        ),
        row(
            ORG_ADMIN,
            "u",
            "view",
            "organization:acme/scene:s1",
            InvalidResource,
        ),
        row(ORG_ADMIN, "u", "view", "", InvalidResource),
    ];
    check("cognitive3d", &rows);

    let p = load("cognitive3d");
    let keys = &p.model.keys;
    assert!(keys.read_only_by_default);
    assert_eq!(keys.scope_kind, p.model.kind("organization"));
    assert_eq!(keys.prefix.as_deref(), Some("orgkey-"));
    assert!(p.model.credentials.apikey_organization);
    assert_eq!(
        p.model.credentials.raw_key,
        Some(vec!["orgkey-".to_string()])
    );
}

// ---- 000 SEED Platform: organization roles viewer < member < owner, own profile and key ----------

#[test]
fn seed_platform() {
    const VIEWER: &[(&str, &str)] = &[("viewer", "organization:6")];
    const MEMBER: &[(&str, &str)] = &[("member", "organization:6")];
    const OWNER: &[(&str, &str)] = &[("owner", "organization:6")];
    const TWO_ORGS: &[(&str, &str)] = &[("viewer", "organization:6"), ("owner", "organization:7")];
    const PROPERTY: &str = "organization:6/cycle:2023/property:9";
    let rows = [
        row(VIEWER, "a@x.org", "view", "organization:6", AllowBinding(0)),
        row(VIEWER, "a@x.org", "export", PROPERTY, AllowBinding(0)),
        row(VIEWER, "a@x.org", "update", PROPERTY, NoRole),
        row(
            VIEWER,
            "a@x.org",
            "manage_members",
            "organization:6",
            NoRole,
        ),
        row(VIEWER, "a@x.org", "view", "organization:7", NoRole),
        row(MEMBER, "a@x.org", "view", PROPERTY, AllowBinding(0)),
        row(
            MEMBER,
            "a@x.org",
            "import",
            "organization:6/cycle:2023",
            AllowBinding(0),
        ),
        row(MEMBER, "a@x.org", "delete", PROPERTY, AllowBinding(0)),
        row(
            MEMBER,
            "a@x.org",
            "manage_members",
            "organization:6",
            NoRole,
        ),
        row(
            OWNER,
            "a@x.org",
            "manage_members",
            "organization:6",
            AllowBinding(0),
        ),
        row(
            OWNER,
            "a@x.org",
            "manage_keys",
            "organization:6",
            AllowBinding(0),
        ),
        row(OWNER, "a@x.org", "update", PROPERTY, AllowBinding(0)),
        row(OWNER, "a@x.org", "list", PROPERTY, AllowBinding(0)),
        row(OWNER, "a@x.org", "delete", "organization:7", NoRole),
        // `organization_id` selects the organization; roles differ per organization.
        row(TWO_ORGS, "a@x.org", "update", "organization:6", NoRole),
        row(
            TWO_ORGS,
            "a@x.org",
            "update",
            "organization:7",
            AllowBinding(1),
        ),
        row(
            TWO_ORGS,
            "a@x.org",
            "view",
            "organization:6",
            AllowBinding(0),
        ),
        // Every user manages their own profile and key ("Get a New API Key").
        row(&[], "a@x.org", "view", "user:a@x.org", AllowSelf),
        row(&[], "a@x.org", "manage_keys", "user:a@x.org", AllowSelf),
        row(&[], "a@x.org", "delete", "user:a@x.org", NoRole),
        row(&[], "a@x.org", "manage_keys", "user:b@x.org", NoRole),
        row(OWNER, "a@x.org", "manage_keys", "user:b@x.org", NoRole),
        row(OWNER, "a@x.org", "view", "cycle:2023", NoRole),
    ];
    check("seed-platform", &rows);

    let p = load("seed-platform");
    assert_eq!(
        p.model.unauthenticated,
        Unauthenticated::Redirect("/app/login".into())
    );
    assert!(p.model.credentials.basic_email_key);
    // The member role holds the viewer's read grants through `includes`, and writes of its own:
    // including an observer role does not make the includer read-only.
    let member = p.model.role("member").map(|r| &p.model.roles[r as usize]);
    assert!(member.is_some_and(|m| !m.observer && m.includes.len() == 1));
}

// ---- 001 seats.io: workspace secret keys, the company admin key ---------------------------------

#[test]
fn seatsio() {
    const W1: &str = "company:c1/workspace:w1";
    const WORKSPACE_KEY: &[(&str, &str)] = &[("workspace_key", W1)];
    const COMPANY_ADMIN: &[(&str, &str)] = &[("company_admin", "company:c1")];
    let rows = [
        // A workspace secret key: everything inside its workspace.
        row(
            WORKSPACE_KEY,
            "k",
            "book",
            "company:c1/workspace:w1/event:e1",
            AllowBinding(0),
        ),
        row(
            WORKSPACE_KEY,
            "k",
            "release",
            "company:c1/workspace:w1/event:e1",
            AllowBinding(0),
        ),
        row(
            WORKSPACE_KEY,
            "k",
            "update",
            "company:c1/workspace:w1/chart:ch",
            AllowBinding(0),
        ),
        row(WORKSPACE_KEY, "k", "list", W1, AllowBinding(0)),
        row(
            WORKSPACE_KEY,
            "k",
            "book",
            "company:c1/workspace:w2/event:e1",
            NoRole,
        ),
        row(WORKSPACE_KEY, "k", "manage_keys", W1, NoRole),
        row(
            WORKSPACE_KEY,
            "k",
            "manage_workspaces",
            "company:c1",
            NoRole,
        ),
        // The company admin key: every workspace of its company, and the company itself.
        row(
            COMPANY_ADMIN,
            "k",
            "book",
            "company:c1/workspace:w1/event:e1",
            AllowBinding(0),
        ),
        row(
            COMPANY_ADMIN,
            "k",
            "book",
            "company:c1/workspace:w9/event:e1",
            AllowBinding(0),
        ),
        row(
            COMPANY_ADMIN,
            "k",
            "manage_workspaces",
            "company:c1",
            AllowBinding(0),
        ),
        row(COMPANY_ADMIN, "k", "manage_keys", W1, AllowBinding(0)),
        row(
            COMPANY_ADMIN,
            "k",
            "view",
            "company:c2/workspace:w1",
            NoRole,
        ),
        // An admin key limited to one workspace (the one X-Workspace-Key names).
        row(
            COMPANY_ADMIN,
            "k",
            "book",
            "company:c1/workspace:w1/event:e1",
            AllowBinding(0),
        )
        .key(scoped(W1)),
        row(
            COMPANY_ADMIN,
            "k",
            "book",
            "company:c1/workspace:w2/event:e1",
            OutsideKeyScope,
        )
        .key(scoped(W1)),
        row(
            COMPANY_ADMIN,
            "k",
            "book",
            "company:c1/event:e1",
            InvalidResource,
        ),
        row(COMPANY_ADMIN, "k", "sell", W1, UnknownAction),
    ];
    check("seatsio", &rows);

    let p = load("seatsio");
    assert!(p.model.credentials.basic_key);
    assert_eq!(
        p.model.credentials.workspace_header.as_deref(),
        Some("X-Workspace-Key")
    );
}

// ---- 002 fine-grained API tokens: per-token permissions, observers, own tokens -------------------

#[test]
fn api_token() {
    const PROD: &str = "environment:prod";
    const P1: &str = "environment:prod/project:p1";
    const ANALYST: &[(&str, &str)] = &[("analyst", PROD)];
    const DEVELOPER: &[(&str, &str)] = &[("developer", P1)];
    const ADMIN: &[(&str, &str)] = &[("env_admin", PROD)];
    let rows = [
        row(ANALYST, "ann", "read_reports", P1, AllowBinding(0)),
        row(ANALYST, "ann", "read_data", PROD, AllowBinding(0)),
        row(ANALYST, "ann", "write_data", P1, NoRole),
        row(DEVELOPER, "dev", "write_data", P1, AllowBinding(0)),
        row(DEVELOPER, "dev", "run_jobs", P1, AllowBinding(0)),
        row(DEVELOPER, "dev", "read_data", P1, AllowBinding(0)),
        row(
            DEVELOPER,
            "dev",
            "run_jobs",
            "environment:prod/project:p2",
            NoRole,
        ),
        row(DEVELOPER, "dev", "read_data", PROD, NoRole),
        row(DEVELOPER, "dev", "manage_tokens", P1, NoRole),
        // Environment admins manage everything, other users' tokens included.
        row(ADMIN, "boss", "manage_tokens", PROD, AllowBinding(0)),
        row(ADMIN, "boss", "run_jobs", P1, AllowBinding(0)),
        row(ADMIN, "boss", "read_data", "environment:staging", NoRole),
        // "My API Token": every user manages their own tokens.
        row(&[], "dev", "manage_tokens", "user:dev", AllowSelf),
        row(&[], "dev", "manage_tokens", "user:ann", NoRole),
        row(&[], "dev", "read_data", "user:dev", NoRole),
        // Each token carries its own permissions, a subset of its owner's.
        row(DEVELOPER, "dev", "read_data", P1, AllowBinding(0)).key(only(&["read_data"])),
        row(DEVELOPER, "dev", "run_jobs", P1, OutsideKeyPermissions).key(only(&["read_data"])),
        row(DEVELOPER, "dev", "run_jobs", P1, OutsideKeyPermissions).key(only(&[])),
        row(ANALYST, "ann", "write_data", P1, NoRole).key(only(&["write_data"])),
        row(DEVELOPER, "dev", "write_data", P1, ReadOnlyKey).key(read_only()),
        row(
            &[],
            "dev",
            "manage_tokens",
            "user:dev",
            OutsideKeyPermissions,
        )
        .key(only(&["read_data"])),
    ];
    check("api-token", &rows);

    let p = load("api-token");
    assert!(p.model.credentials.api_token);
    assert_eq!(p.model.credentials.query_param.as_deref(), Some("apiToken"));
    assert_eq!(p.model.keys.manage_action, p.model.action("manage_tokens"));
}

/// `parse_resource` names what is wrong with a path (the host shows it in the error body).
#[test]
fn resource_errors_name_the_problem() {
    use keyward::decision::ResourceError::*;
    let c = CompiledPolicy::compile(&load("cognitive3d").model);
    let long = format!("organization:{}", "x".repeat(1100));
    let cases = [
        ("", Empty),
        (long.as_str(), TooLong),
        ("organization", NotKindId(1)),
        ("organization:acme/", NotKindId(2)),
        ("organization:acme//project:p", NotKindId(2)),
        ("organization:", BadId(1)),
        ("organization:a b", BadId(1)),
        ("organization:acme/project:p:1", BadId(2)),
        ("organization:acme/project:p\u{a0}1", BadId(2)),
        ("organization:acme/project:p\t", BadId(2)),
        ("galaxy:1", UnknownKind("galaxy".into())),
        ("organizations:1", UnknownKind("organizations".into())),
        ("organization:acme/galaxy:a b", BadId(2)),
        ("organization:acme/galaxy:1", UnknownKind("galaxy".into())),
        (
            "organization:acme/scene:s1",
            NotBeneath {
                kind: "scene".into(),
                parent: "organization".into(),
            },
        ),
    ];
    for (path, want) in cases {
        assert_eq!(c.parse_resource(path).err(), Some(want), "{path:?}");
    }
    let ok = c
        .parse_resource("project:p1/scene:s1/session:é-1")
        .map(|r| r.segments().map(|(_, id)| id).collect::<Vec<_>>());
    assert_eq!(ok, Ok(vec!["p1", "s1", "é-1"]));
}
