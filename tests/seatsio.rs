//! seats.io (seed 001): the workspace secret key as the Basic username with an empty password
//! (`curl -u KEY:`), several secret keys per workspace, and the company admin key acting on the
//! workspace named by `X-Workspace-Key` (its public key) or, without it, on the default workspace.

mod common;
use common::*;
use keyward::store::{Actor, KeyKind, NewPrincipal, PrincipalKind, Workspace};

const WORKSPACE_SECRET: &str = "550e8400-e29b-41d4-a716-446655440000";
const ADMIN_SECRET: &str = "7d2c5a1e-0f3b-4c8e-9a6d-2b1f0e9c8d7a";

fn setup() -> keyward::Engine {
    let e = engine("seatsio");
    let t = e.table();
    for (pk, n) in [("pub-ws-1", "1"), ("pub-ws-2", "2")] {
        t.add_workspace(
            Actor::Cli,
            Workspace {
                public_key: pk.into(),
                name: format!("workspace {n}"),
                scope: format!("company:acme/workspace:{n}"),
                company: None,
            },
        )
        .expect("workspace");
    }
    let ws1 = t
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::Workspace,
                login: "workspace-1".into(),
                default_workspace: Some("pub-ws-1".into()),
            },
        )
        .expect("workspace principal");
    bind(&e, &ws1, "workspace_key", "company:acme/workspace:1");
    import(&e, &ws1, "secret key", WORKSPACE_SECRET, KeyKind::Standard);
    let company = t
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::Company,
                login: "acme".into(),
                default_workspace: Some("pub-ws-1".into()),
            },
        )
        .expect("company principal");
    bind(&e, &company, "company_admin", "company:acme");
    import(&e, &company, "admin key", ADMIN_SECRET, KeyKind::Admin);
    e
}

#[test]
fn workspace_secret_key_as_basic_username() {
    let e = setup();
    // The exact header from the seed document.
    let doc = authorization("Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg==");
    let curl = basic(WORKSPACE_SECRET, ""); // curl -u KEY:
    let with_password = basic(WORKSPACE_SECRET, "ignored");
    for h in [&doc, &curl, &with_password] {
        assert_eq!(
            outcome(&decide(&e, h, "book", "event:5")),
            "allow workspace_key@company:acme/workspace:1"
        );
    }
    // The workspace key reaches only its own workspace, and not the company's settings.
    assert_eq!(
        outcome(&decide(
            &e,
            &doc,
            "view",
            "company:acme/workspace:2/event:5"
        )),
        "deny no_role"
    );
    assert_eq!(
        outcome(&decide(&e, &doc, "manage_workspaces", "company:acme")),
        "deny no_role"
    );
    // A workspace key cannot pick another workspace with the header.
    let picked = headers(&[
        (
            "authorization",
            "Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg==",
        ),
        ("x-workspace-key", "pub-ws-2"),
    ]);
    assert_eq!(
        outcome(&decide(&e, &picked, "view", "event:5")),
        "deny workspace_header_needs_admin_key"
    );
}

#[test]
fn company_admin_key_with_and_without_workspace_header() {
    let e = setup();
    let default = basic(ADMIN_SECRET, "");
    let ws2 = headers(&[
        (
            "authorization",
            &format!("Basic {}", b64(&format!("{ADMIN_SECRET}:"))),
        ),
        ("X-Workspace-Key", "pub-ws-2"),
    ]);
    let unknown = headers(&[
        (
            "authorization",
            &format!("Basic {}", b64(&format!("{ADMIN_SECRET}:"))),
        ),
        ("X-Workspace-Key", "pub-ws-9"),
    ]);
    let d = decide(&e, &default, "create", "chart:1");
    assert_eq!(outcome(&d), "allow company_admin@company:acme");
    let keyward::Decision::Allow(a) = &d else {
        unreachable!()
    };
    assert_eq!(
        a.workspace.as_deref(),
        Some("pub-ws-1"),
        "without the header: the default workspace"
    );
    let d = decide(&e, &ws2, "create", "chart:1");
    let keyward::Decision::Allow(a) = &d else {
        panic!("admin key on workspace 2: {d:?}")
    };
    assert_eq!(a.workspace.as_deref(), Some("pub-ws-2"));
    assert_eq!(
        outcome(&decide(&e, &unknown, "create", "chart:1")),
        "deny unknown_workspace"
    );
    // The admin key also manages the company itself.
    assert_eq!(
        outcome(&decide(&e, &default, "manage_workspaces", "company:acme")),
        "allow company_admin@company:acme"
    );
}

#[test]
fn several_secret_keys_then_remove_the_old_one() {
    let e = setup();
    let ws1 = e
        .table()
        .principal_by_login("workspace-1")
        .expect("read")
        .expect("exists");
    let (new_rec, new_secret) = key(&e, &ws1);
    let old = basic(WORKSPACE_SECRET, "");
    let new = basic(new_secret.expose(), "");
    assert!(decide(&e, &old, "view", "event:1").is_allowed());
    assert!(decide(&e, &new, "view", "event:1").is_allowed());
    let old_rec = e
        .table()
        .keys_of(ws1.id)
        .expect("keys")
        .into_iter()
        .find(|k| k.id != new_rec.id)
        .expect("old key");
    e.table()
        .delete_key(Actor::Cli, old_rec.id)
        .expect("delete");
    assert_eq!(
        outcome(&decide(&e, &old, "view", "event:1")),
        "deny unknown_key"
    );
    assert!(decide(&e, &new, "view", "event:1").is_allowed());
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Routes whose resource is `"."` act on the workspace the credential selects.
#[cfg(feature = "tower")]
#[test]
fn routes_on_the_selected_workspace() {
    use http::Method;
    use keyward::http::{HttpDecision, Unmatched};
    let e = setup();
    let http = |h: &http::HeaderMap, method: Method, path: &str| match e.authorize_http(
        &method,
        path,
        None,
        h,
        Unmatched::Deny,
    ) {
        HttpDecision::Allow(a, t) => format!("allow {}@{} {}", a.role, a.granted_at, t.resource),
        HttpDecision::Deny(d, r) => format!("deny {} {}", d.reason.code(), r.status),
        HttpDecision::PassThrough => "pass".to_string(),
    };
    let ws_key = basic(WORKSPACE_SECRET, "");
    let admin_ws2 = headers(&[
        (
            "authorization",
            &format!("Basic {}", b64(&format!("{ADMIN_SECRET}:"))),
        ),
        ("x-workspace-key", "pub-ws-2"),
    ]);
    assert_eq!(
        http(&ws_key, Method::POST, "/events"),
        "allow workspace_key@company:acme/workspace:1 ."
    );
    assert_eq!(
        http(&ws_key, Method::GET, "/events/concert"),
        "allow workspace_key@company:acme/workspace:1 event:concert"
    );
    assert_eq!(
        http(&admin_ws2, Method::POST, "/charts"),
        "allow company_admin@company:acme ."
    );
    assert_eq!(
        http(&ws_key, Method::GET, "/workspaces"),
        "deny no_route 403"
    );
    assert_eq!(
        http(&ws_key, Method::GET, "/events/../charts"),
        "deny invalid_path 400"
    );
}
