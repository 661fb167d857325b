//! Every deny reason the engine gives, each reached through the public API, with its code, its
//! HTTP status and a message that never contains the secret.

mod common;
use common::*;
use keyward::policy::Policy;
use keyward::store::{Actor, KeyKind, NewKey, Workspace};
use keyward::{Engine, EngineOptions};

const POLICY: &str = r#"
scope org;
scope project under org;
scope user;
action view: read;
action edit, manage_keys: write;
role admin at org { grant *; }
role watcher at org observer { grant *; }
self view on user;
deny frozen: edit on project;
credentials {
    basic email_key;
    bearer;
    workspace_header "X-Workspace-Key";
}
keys { manage manage_keys; }
"#;

#[test]
fn every_reason() {
    let policy = Policy::parse("reasons.policy", POLICY).expect("policy");
    let e = Engine::temporary(policy, EngineOptions::default()).expect("engine");
    let t = e.table();
    t.add_workspace(
        Actor::Cli,
        Workspace {
            public_key: "ws-pub".into(),
            name: "ws".into(),
            scope: "org:1".into(),
            company: None,
        },
    )
    .expect("workspace");
    let alice = user(&e, "alice@example.com");
    bind(&e, &alice, "admin", "org:1");
    let watcher = user(&e, "watch@example.com");
    bind(&e, &watcher, "watcher", "org:1");
    let (_, good) = key(&e, &alice);
    let (inactive_rec, inactive) = key_with(&e, NewKey::new(alice.id, "off"));
    t.set_key_active(Actor::Cli, inactive_rec.id, false)
        .expect("deactivate");
    let (expired_rec, expired) = key_with(&e, NewKey::new(alice.id, "old"));
    t.set_key_expiry(Actor::Cli, expired_rec.id, Some(1))
        .expect("expire");
    let mut ro = NewKey::new(alice.id, "ro");
    ro.read_only = true;
    let (_, read_only) = key_with(&e, ro);
    let mut perm = NewKey::new(alice.id, "perm");
    perm.permissions = Some(vec!["view".into()]);
    let (_, limited) = key_with(&e, perm);
    let mut scoped = NewKey::new(alice.id, "scoped");
    scoped.scope = Some("org:1/project:2".into());
    let (_, scoped) = key_with(&e, scoped);
    let mut admin = NewKey::new(alice.id, "admin");
    admin.kind = KeyKind::Admin;
    let (_, admin) = key_with(&e, admin);
    let (_, watch) = key(&e, &watcher);
    let mut forged = good.expose().to_string();
    let c = forged.pop().expect("non-empty");
    forged.push(if c == 'x' { 'y' } else { 'x' });

    let bearer = |k: &str| authorization(&format!("Bearer {k}"));
    let long = "a".repeat(9000);
    let mut two = bearer(good.expose());
    two.append(
        "authorization",
        http::HeaderValue::from_static("Bearer other"),
    );
    let mut bad_bytes = http::HeaderMap::new();
    bad_bytes.insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque bytes"),
    );

    // (headers, action, resource, code, status)
    let rows: Vec<(http::HeaderMap, &str, &str, &str, u16)> = vec![
        (
            http::HeaderMap::new(),
            "view",
            "org:1",
            "no_credential",
            401,
        ),
        (two, "view", "org:1", "malformed_credential", 401),
        (
            authorization(&format!("Bearer {long}")),
            "view",
            "org:1",
            "malformed_credential",
            401,
        ),
        (bad_bytes, "view", "org:1", "malformed_credential", 401),
        (
            authorization("Basic !!!"),
            "view",
            "org:1",
            "malformed_credential",
            401,
        ),
        (
            authorization("Negotiate abc"),
            "view",
            "org:1",
            "unknown_scheme",
            401,
        ),
        (bearer(&forged), "view", "org:1", "bad_checksum", 401),
        (bearer("kw_short"), "view", "org:1", "malformed_key", 401),
        (
            bearer("not-a-known-key"),
            "view",
            "org:1",
            "unknown_key",
            401,
        ),
        (
            bearer(inactive.expose()),
            "view",
            "org:1",
            "inactive_key",
            401,
        ),
        (
            bearer(expired.expose()),
            "view",
            "org:1",
            "expired_key",
            401,
        ),
        (
            basic("mallory@example.com", good.expose()),
            "view",
            "org:1",
            "email_mismatch",
            401,
        ),
        (
            headers(&[
                ("authorization", &format!("Bearer {}", admin.expose())),
                ("x-workspace-key", "nope"),
            ]),
            "view",
            "org:1",
            "unknown_workspace",
            401,
        ),
        (
            headers(&[
                ("authorization", &format!("Bearer {}", good.expose())),
                ("x-workspace-key", "ws-pub"),
            ]),
            "view",
            "org:1",
            "workspace_header_needs_admin_key",
            401,
        ),
        (bearer(good.expose()), "view", "org:2", "no_role", 403),
        (
            bearer(watch.expose()),
            "edit",
            "org:1",
            "observer_cannot_write",
            403,
        ),
        (
            bearer(read_only.expose()),
            "edit",
            "org:1",
            "read_only_key",
            403,
        ),
        (
            bearer(limited.expose()),
            "edit",
            "org:1",
            "outside_key_permissions",
            403,
        ),
        (
            bearer(scoped.expose()),
            "view",
            "org:1/project:3",
            "outside_key_scope",
            403,
        ),
        (
            bearer(good.expose()),
            "edit",
            "org:1/project:3",
            "deny_rule",
            403,
        ),
        (
            bearer(good.expose()),
            "launch",
            "org:1",
            "unknown_action",
            403,
        ),
        (
            bearer(good.expose()),
            "view",
            "org:1/user:3",
            "invalid_resource",
            403,
        ),
    ];
    // Twice over: the second time the engine has read each credential before (its memo).
    for (h, action, resource, code, status) in rows.iter().chain(&rows) {
        let (action, resource, code, status) = (*action, *resource, *code, *status);
        let d = decide(&e, h, action, resource);
        let keyward::Decision::Deny(deny) = &d else {
            panic!("{code}: expected a denial, got {d:?}")
        };
        assert_eq!(
            deny.reason.code(),
            code,
            "{action} {resource}: {}",
            deny.reason
        );
        assert_eq!(deny.reason.is_authentication(), status == 401, "{code}");
        let resp = e.deny_response(deny);
        assert_eq!(resp.status, status, "{code}");
        for secret in [
            &good, &inactive, &expired, &read_only, &limited, &admin, &watch,
        ] {
            assert!(
                !resp.body.contains(secret.expose()),
                "{code} leaks a secret"
            );
            assert!(
                !format!("{d:?}").contains(secret.expose()),
                "{code} leaks a secret in Debug"
            );
        }
    }
    // And the allowed cases next to them.
    for (h, action, resource) in [
        (bearer(good.expose()), "edit", "org:1"),
        (bearer(scoped.expose()), "view", "org:1/project:2"),
        (bearer(limited.expose()), "view", "org:1"),
        (
            headers(&[
                ("authorization", &format!("Bearer {}", admin.expose())),
                ("x-workspace-key", "ws-pub"),
            ]),
            "view",
            "project:4",
        ),
    ] {
        assert!(
            decide(&e, &h, action, resource).is_allowed(),
            "{action} {resource}"
        );
    }
}
