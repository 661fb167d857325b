//! Cognitive3D (seed 003): `APIKEY:ORGANIZATION <key>` and raw `orgkey-` keys, keys limited to one
//! organization and read-only by default, roles at a hierarchy of scopes, observer roles, self access,
//! and the deny rule on recorded sessions.

mod common;
use common::*;
use keyward::engine::{KeyCommand, KeyCommandResult, ManageError};
use keyward::store::NewKey;

#[test]
fn org_scoped_keys_roles_and_observers() {
    let e = engine("cognitive3d");
    let admin = user(&e, "admin@c3d.example");
    bind(&e, &admin, "org_admin", "organization:6");
    let member = user(&e, "member@c3d.example");
    bind(&e, &member, "project_member", "organization:6/project:3");
    let observer = user(&e, "observer@c3d.example");
    bind(&e, &observer, "org_observer", "organization:6");
    let domain = user(&e, "domain@c3d.example");
    bind(&e, &domain, "domain_admin", "domain:1");

    // Keys are created by the organization admin through the engine, limited to the organization.
    let (_, admin_key) = key(&e, &admin);
    let admin_id = e
        .authenticate(
            &authorization(&format!("APIKEY:ORGANIZATION {}", admin_key.expose())),
            None,
        )
        .expect("admin authenticates");
    let create = |target: u64, read_only: Option<bool>| {
        e.manage_keys(
            &admin_id,
            target,
            Some("organization:6"),
            KeyCommand::Create {
                new: NewKey::new(target, "analytics export"),
                read_only,
            },
        )
    };
    let Ok(KeyCommandResult::Created(member_rec, member_key)) = create(member.id, Some(false))
    else {
        panic!("org admin creates a key for a member")
    };
    assert_eq!(member_rec.scope.as_deref(), Some("organization:6"));
    assert!(!member_rec.read_only);
    let Ok(KeyCommandResult::Created(obs_rec, observer_key)) = create(observer.id, None) else {
        panic!("org admin creates a key for an observer")
    };
    assert!(
        obs_rec.read_only,
        "the policy makes new keys read-only by default"
    );
    assert!(obs_rec.display_prefix.starts_with("orgkey-"));

    // A member cannot create keys (only organization admins can).
    let member_id = e
        .authenticate(&authorization(member_key.expose()), None)
        .expect("raw orgkey- key as the whole header");
    let denied = e.manage_keys(
        &member_id,
        member.id,
        Some("organization:6"),
        KeyCommand::Create {
            new: NewKey::new(member.id, "mine"),
            read_only: None,
        },
    );
    assert!(matches!(denied, Err(ManageError::Forbidden(d)) if d.reason.code() == "no_role"));

    let m_header = authorization(&format!("APIKEY:ORGANIZATION {}", member_key.expose()));
    let m_raw = authorization(member_key.expose());
    let o_header = authorization(observer_key.expose());
    let (_, domain_key) = key(&e, &domain);
    let d_header = authorization(domain_key.expose());

    let rows: &[(&http::HeaderMap, &str, &str, &str)] = &[
        (
            &m_header,
            "update",
            "organization:6/project:3/scene:9",
            "allow project_member@organization:6/project:3",
        ),
        (
            &m_raw,
            "view",
            "organization:6/project:3",
            "allow project_member@organization:6/project:3",
        ),
        (
            &m_header,
            "view",
            "organization:6/project:4",
            "deny no_role",
        ),
        (&m_header, "view", "organization:6", "deny no_role"),
        (
            &m_header,
            "view",
            "organization:7/project:3",
            "deny outside_key_scope",
        ),
        (
            &m_header,
            "update",
            "organization:6/project:3/scene:9/session:1",
            "deny deny_rule",
        ),
        (
            &m_header,
            "view",
            "organization:6/project:3/scene:9/session:1",
            "allow project_member@organization:6/project:3",
        ),
        (
            &o_header,
            "view",
            "organization:6/project:4/scene:1",
            "allow org_observer@organization:6",
        ),
        (
            &o_header,
            "update",
            "organization:6/project:4",
            "deny read_only_key",
        ),
        (&m_header, "fly", "organization:6", "deny unknown_action"),
        (
            &m_header,
            "view",
            "organization:6/scene:1",
            "deny invalid_resource",
        ),
        (
            &d_header,
            "configure",
            "domain:1/organization:6",
            "allow domain_admin@domain:1",
        ),
        (&d_header, "configure", "organization:6", "deny no_role"),
    ];
    for (h, action, resource, want) in rows {
        assert_eq!(
            &outcome(&decide(&e, h, action, resource)),
            want,
            "{action} {resource}"
        );
    }
    let d = decide(
        &e,
        &m_header,
        "update",
        "organization:6/project:3/scene:9/session:1",
    );
    assert_eq!(
        d.reason().map(|r| r.to_string()).as_deref(),
        Some("forbidden by deny rule `immutable_sessions`")
    );
}

#[test]
fn observer_role_is_read_only_even_with_a_writable_key() {
    let e = engine("cognitive3d");
    let o = user(&e, "o@c3d.example");
    bind(&e, &o, "org_observer", "organization:6");
    let (_, k) = key(&e, &o);
    let h = authorization(k.expose());
    assert_eq!(
        outcome(&decide(&e, &h, "view", "organization:6/project:1")),
        "allow org_observer@organization:6"
    );
    assert_eq!(
        outcome(&decide(&e, &h, "delete", "organization:6/project:1")),
        "deny observer_cannot_write"
    );
}

#[test]
fn self_access_to_own_account_only() {
    let e = engine("cognitive3d");
    let u = user(&e, "u@c3d.example");
    let (_, k) = key(&e, &u);
    let h = authorization(k.expose());
    let own = format!("user:{}", u.id);
    assert_eq!(
        outcome(&decide(&e, &h, "update", &own)),
        format!("allow self@{own}")
    );
    assert_eq!(outcome(&decide(&e, &h, "delete", &own)), "deny no_role");
    assert_eq!(
        outcome(&decide(&e, &h, "view", &format!("user:{}", u.id + 1))),
        "deny no_role"
    );
}

#[test]
fn forged_and_malformed_keys_are_refused_before_lookup() {
    let e = engine("cognitive3d");
    let u = user(&e, "u@c3d.example");
    let (_, k) = key(&e, &u);
    let mut forged = k.expose().to_string();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let rows = [
        (format!("APIKEY:ORGANIZATION {forged}"), "deny bad_checksum"),
        ("orgkey-short".to_string(), "deny malformed_key"),
        ("Digest abc".to_string(), "deny unknown_scheme"),
        ("Bearer abc".to_string(), "deny unknown_scheme"),
        (
            "APIKEY:ORGANIZATION".to_string(),
            "deny malformed_credential",
        ),
    ];
    for (value, want) in rows {
        assert_eq!(
            outcome(&decide(
                &e,
                &authorization(&value),
                "view",
                "organization:6"
            )),
            want,
            "{value}"
        );
    }
    assert_eq!(
        outcome(&decide(
            &e,
            &http::HeaderMap::new(),
            "view",
            "organization:6"
        )),
        "deny no_credential"
    );
}
