//! The engine remembers credentials it has read (their headers' keyed hash → the key's hash), so a
//! credential sent again skips decoding and hashing. These tests send the same headers again and
//! again around every change that must be seen by the very next decision.

mod common;
use common::*;
use keyward::policy::Policy;
use keyward::store::{Actor, KeyKind, NewKey, Workspace};
use keyward::{Engine, EngineOptions};

const POLICY: &str = r#"
scope org;
scope user;
action view: read;
action edit, manage_keys: write;
role admin at org { grant *; }
role reader at org { grant view; }
self view on user;
credentials {
    basic email_key;
    bearer;
    query "api_token";
    workspace_header "X-Workspace-Key";
}
keys { manage manage_keys; }
"#;

/// A fresh engine on a temporary key table under `POLICY`.
fn engine() -> Engine {
    let policy = Policy::parse("memo.policy", POLICY).expect("policy");
    Engine::temporary(policy, EngineOptions::default()).expect("engine")
}

/// The outcome of the same request three times over (the first reads the credential, the others
/// find it remembered): all three must agree.
fn thrice(e: &Engine, h: &http::HeaderMap, action: &str, resource: &str) -> String {
    let first = outcome(&decide(e, h, action, resource));
    for _ in 0..2 {
        assert_eq!(
            outcome(&decide(e, h, action, resource)),
            first,
            "{action} {resource}"
        );
    }
    first
}

#[test]
fn a_remembered_credential_sees_every_change_at_once() {
    let e = engine();
    let t = e.table();
    let alice = user(&e, "alice@example.com");
    bind(&e, &alice, "admin", "org:1");
    let (rec, good) = key(&e, &alice);
    let bearer = authorization(&format!("Bearer {}", good.expose()));
    let email = basic("alice@example.com", good.expose());
    let other_email = basic("mallory@example.com", good.expose());

    assert_eq!(thrice(&e, &bearer, "edit", "org:1"), "allow admin@org:1");
    assert_eq!(thrice(&e, &email, "edit", "org:1"), "allow admin@org:1");
    // The same key under another email: other headers, read afresh, refused every time.
    assert_eq!(
        thrice(&e, &other_email, "view", "org:1"),
        "deny email_mismatch"
    );
    assert_eq!(thrice(&e, &email, "view", "org:1"), "allow admin@org:1");
    // The email is compared with the owner's login when the credential is first read (ignoring
    // case): the remembered comparison must agree with a fresh one, either way, interleaved.
    let upper = basic("ALICE@Example.com", good.expose());
    let near = basic("alice@example.co", good.expose());
    for _ in 0..2 {
        assert_eq!(thrice(&e, &upper, "view", "org:1"), "allow admin@org:1");
        assert_eq!(thrice(&e, &near, "view", "org:1"), "deny email_mismatch");
        assert_eq!(
            thrice(&e, &other_email, "view", "org:1"),
            "deny email_mismatch"
        );
    }

    // Role changes.
    t.unbind(Actor::Cli, alice.id, "admin", "org:1")
        .expect("unbind");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "deny no_role");
    bind(&e, &alice, "reader", "org:1");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "allow reader@org:1");
    assert_eq!(thrice(&e, &bearer, "edit", "org:1"), "deny no_role");

    // A key and the same key in the query as well: ambiguous, whether remembered or not.
    let q = format!("api_token={}", good.expose());
    let ambiguous = keyward::Request::new(&bearer, "view", "org:1").with_query(Some(&q));
    for _ in 0..3 {
        let d = e.authorize(&ambiguous);
        assert_eq!(outcome(&d), "deny malformed_credential", "{d:?}");
    }

    // Deactivation, reactivation, expiry, deletion: each seen by the next decision.
    t.set_key_active(Actor::Cli, rec.id, false)
        .expect("deactivate");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "deny inactive_key");
    assert_eq!(thrice(&e, &email, "view", "org:1"), "deny inactive_key");
    t.set_key_active(Actor::Cli, rec.id, true)
        .expect("activate");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "allow reader@org:1");
    t.set_key_expiry(Actor::Cli, rec.id, Some(1))
        .expect("expire");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "deny expired_key");
    t.set_key_expiry(Actor::Cli, rec.id, None)
        .expect("unexpire");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "allow reader@org:1");
    t.delete_key(Actor::Cli, rec.id).expect("delete");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "deny unknown_key");
    assert_eq!(thrice(&e, &email, "view", "org:1"), "deny unknown_key");
}

#[test]
fn a_reload_that_drops_a_style_refuses_remembered_credentials_of_that_style() {
    let e = engine();
    let alice = user(&e, "alice@example.com");
    bind(&e, &alice, "admin", "org:1");
    let (_, good) = key(&e, &alice);
    let bearer = authorization(&format!("Bearer {}", good.expose()));
    let email = basic("alice@example.com", good.expose());
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "allow admin@org:1");
    let without_bearer = POLICY.replace("    bearer;\n", "");
    e.reload(Policy::parse("memo.policy", &without_bearer).expect("policy"))
        .expect("reload");
    // The key's cache entry is filled again under the new policy (by a style it still accepts)
    // before the bearer header comes back.
    assert_eq!(thrice(&e, &email, "view", "org:1"), "allow admin@org:1");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "deny unknown_scheme");
    e.reload(Policy::parse("memo.policy", POLICY).expect("policy"))
        .expect("reload");
    assert_eq!(thrice(&e, &bearer, "view", "org:1"), "allow admin@org:1");
}

#[test]
fn the_workspace_header_is_part_of_what_is_remembered() {
    let e = engine();
    let t = e.table();
    for (public_key, scope) in [("ws-1", "org:1"), ("ws-2", "org:2")] {
        t.add_workspace(
            Actor::Cli,
            Workspace {
                public_key: public_key.into(),
                name: public_key.into(),
                scope: scope.into(),
                company: None,
            },
        )
        .expect("workspace");
    }
    let owner = user(&e, "owner@example.com");
    bind(&e, &owner, "admin", "org:1");
    let mut admin = NewKey::new(owner.id, "admin");
    admin.kind = KeyKind::Admin;
    let (_, admin) = key_with(&e, admin);
    let with = |ws: &str| {
        headers(&[
            ("authorization", &format!("Bearer {}", admin.expose())),
            ("x-workspace-key", ws),
        ])
    };
    assert_eq!(thrice(&e, &with("ws-1"), "view", "user:9"), "deny no_role");
    assert_eq!(thrice(&e, &with("ws-1"), "view", "."), "allow admin@org:1");
    assert_eq!(thrice(&e, &with("ws-2"), "view", "."), "deny no_role");
    assert_eq!(
        thrice(&e, &with("nope"), "view", "."),
        "deny unknown_workspace"
    );
    t.remove_workspace(Actor::Cli, "ws-1").expect("remove");
    assert_eq!(
        thrice(&e, &with("ws-1"), "view", "."),
        "deny unknown_workspace"
    );
}

#[test]
fn a_remembered_email_is_refused_once_its_principal_is_gone() {
    let e = engine();
    let alice = user(&e, "alice@example.com");
    bind(&e, &alice, "admin", "org:1");
    let (_, good) = key(&e, &alice);
    let email = basic("alice@example.com", good.expose());
    assert_eq!(thrice(&e, &email, "view", "org:1"), "allow admin@org:1");
    e.table()
        .remove_principal(Actor::Cli, alice.id)
        .expect("remove");
    // A new principal with the same login owns no key: the old one's credential is refused.
    let again = user(&e, "alice@example.com");
    bind(&e, &again, "admin", "org:1");
    assert_eq!(thrice(&e, &email, "view", "org:1"), "deny unknown_key");
}

/// A principal's bindings are kept inline up to two and on the heap beyond: every count from none
/// to four, growing and shrinking, decides as its bindings say (remembered credential or not).
#[test]
fn every_number_of_bindings_decides_the_same() {
    let e = engine();
    let alice = user(&e, "alice@example.com");
    let (_, good) = key(&e, &alice);
    let bearer = authorization(&format!("Bearer {}", good.expose()));
    let expect = |bound: &[(&str, &str)]| {
        for org in 1..=5 {
            let scope = format!("org:{org}");
            let role = bound.iter().find(|(_, s)| *s == scope).map(|(r, _)| *r);
            let want = |action: &str| match role {
                Some("admin") => format!("allow admin@{scope}"),
                Some(_) if action == "view" => format!("allow reader@{scope}"),
                _ => "deny no_role".to_string(),
            };
            for action in ["view", "edit"] {
                assert_eq!(
                    thrice(&e, &bearer, action, &scope),
                    want(action),
                    "{bound:?}"
                );
            }
        }
    };
    let all = [
        ("admin", "org:1"),
        ("reader", "org:2"),
        ("admin", "org:3"),
        ("reader", "org:4"),
    ];
    expect(&[]);
    for n in 1..=all.len() {
        bind(&e, &alice, all[n - 1].0, all[n - 1].1);
        expect(&all[..n]);
    }
    for n in (0..all.len()).rev() {
        e.table()
            .unbind(Actor::Cli, alice.id, all[n].0, all[n].1)
            .expect("unbind");
        expect(&all[..n]);
    }
}
