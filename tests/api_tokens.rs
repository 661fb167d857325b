//! Fine-grained API tokens (seed 002): `Authorization: apiToken <token>` or the `apiToken` query
//! parameter, several named tokens per user each with its own permissions, deactivate / activate /
//! delete taking effect on the next request, and environment admins managing other users' tokens.

mod common;
use common::*;
use keyward::engine::{KeyCommand, KeyCommandResult, ManageError};
use keyward::store::NewKey;
use keyward::Request;

#[test]
fn tokens_with_their_own_permissions() {
    let e = engine("api-token");
    let dev = user(&e, "dev@env.example");
    bind(&e, &dev, "developer", "environment:prod/project:web");
    let mut reports_only = NewKey::new(dev.id, "reporting");
    reports_only.permissions = Some(vec!["read_reports".into()]);
    let (_, reports) = key_with(&e, reports_only);
    let (_, full) = key_with(&e, NewKey::new(dev.id, "deploy bot"));
    let r = authorization(&format!("apiToken {}", reports.expose()));
    let f = authorization(&format!("ApiToken {}", full.expose()));
    let rows = [
        (
            &r,
            "read_reports",
            "allow developer@environment:prod/project:web",
        ),
        (&r, "read_data", "deny outside_key_permissions"),
        (&r, "run_jobs", "deny outside_key_permissions"),
        (
            &f,
            "read_data",
            "allow developer@environment:prod/project:web",
        ),
        (
            &f,
            "run_jobs",
            "allow developer@environment:prod/project:web",
        ),
        (&f, "manage_tokens", "deny no_role"),
    ];
    for (h, action, want) in rows {
        assert_eq!(
            outcome(&decide(&e, h, action, "environment:prod/project:web")),
            want,
            "{action}"
        );
    }
}

#[test]
fn query_parameter_form_is_flagged() {
    let e = engine("api-token");
    let a = user(&e, "analyst@env.example");
    bind(&e, &a, "analyst", "environment:prod");
    let (_, k) = key(&e, &a);
    let none = http::HeaderMap::new();
    let query = format!("apiToken={}&page=2", k.expose());
    let d = e.authorize(
        &Request::new(&none, "read_data", "environment:prod/project:x").with_query(Some(&query)),
    );
    let keyward::Decision::Allow(allow) = &d else {
        panic!("query token: {d:?}")
    };
    assert!(
        allow.via_query(),
        "the host is told the key came in the URL"
    );
    // Analysts are observers: no writes even though `analyst` is bound at the top.
    let d =
        e.authorize(&Request::new(&none, "run_jobs", "environment:prod").with_query(Some(&query)));
    assert_eq!(outcome(&d), "deny no_role");
    // Header and query together are ambiguous.
    let both = authorization(&format!("apiToken {}", k.expose()));
    let d =
        e.authorize(&Request::new(&both, "read_data", "environment:prod").with_query(Some(&query)));
    assert_eq!(outcome(&d), "deny malformed_credential");
}

#[test]
fn deactivate_activate_delete_take_effect_at_once() {
    let e = engine("api-token");
    let dev = user(&e, "dev@env.example");
    bind(&e, &dev, "developer", "environment:prod/project:web");
    let (rec, k) = key(&e, &dev);
    let h = authorization(&format!("apiToken {}", k.expose()));
    let go = || outcome(&decide(&e, &h, "read_data", "environment:prod/project:web"));
    assert_eq!(go(), "allow developer@environment:prod/project:web");
    let me = e.authenticate(&h, None).expect("authenticated");
    // "My API Token": users manage their own tokens (self rule).
    assert!(e
        .manage_keys(&me, dev.id, None, KeyCommand::Deactivate(rec.id))
        .is_ok());
    assert_eq!(go(), "deny inactive_key");
    e.table()
        .set_key_active(keyward::store::Actor::Cli, rec.id, true)
        .expect("activate");
    assert_eq!(go(), "allow developer@environment:prod/project:web");
    e.table()
        .delete_key(keyward::store::Actor::Cli, rec.id)
        .expect("delete");
    assert_eq!(go(), "deny unknown_key");
}

#[test]
fn environment_admins_manage_other_users_tokens() {
    let e = engine("api-token");
    let admin = user(&e, "admin@env.example");
    bind(&e, &admin, "env_admin", "environment:prod");
    let dev = user(&e, "dev@env.example");
    bind(&e, &dev, "developer", "environment:prod/project:web");
    let other = user(&e, "other@env.example");
    let (_, ak) = key(&e, &admin);
    let (dev_rec, dk) = key(&e, &dev);
    let (_, ok) = key(&e, &other);
    let admin_id = e
        .authenticate(&authorization(&format!("apiToken {}", ak.expose())), None)
        .expect("admin");
    let dev_id = e
        .authenticate(&authorization(&format!("apiToken {}", dk.expose())), None)
        .expect("dev");
    let other_id = e
        .authenticate(&authorization(&format!("apiToken {}", ok.expose())), None)
        .expect("other");

    let Ok(KeyCommandResult::Listed(keys)) = e.manage_keys(
        &admin_id,
        dev.id,
        Some("environment:prod"),
        KeyCommand::List,
    ) else {
        panic!("admin lists the developer's tokens")
    };
    assert_eq!(keys.len(), 1);
    assert!(e
        .manage_keys(
            &admin_id,
            dev.id,
            Some("environment:prod"),
            KeyCommand::Deactivate(dev_rec.id)
        )
        .is_ok());
    assert_eq!(
        outcome(&decide(
            &e,
            &authorization(&format!("apiToken {}", dk.expose())),
            "read_data",
            "environment:prod/project:web"
        )),
        "deny inactive_key"
    );
    // A user without the manage action cannot touch someone else's tokens, with or without a scope.
    for at in [None, Some("environment:prod")] {
        let r = e.manage_keys(&other_id, dev.id, at, KeyCommand::Delete(dev_rec.id));
        assert!(matches!(r, Err(ManageError::Forbidden(_))), "{at:?}");
    }
    // Nor can the developer (key active again) act on a key that is not theirs by naming its id.
    e.table()
        .set_key_active(keyward::store::Actor::Cli, dev_rec.id, true)
        .expect("activate");
    let (admin_key_rec, _) = (e.table().keys_of(admin.id).expect("keys")[0].clone(), ());
    let r = e.manage_keys(&dev_id, dev.id, None, KeyCommand::Delete(admin_key_rec.id));
    assert!(matches!(r, Err(ManageError::Store(_))), "{r:?}");
}

#[test]
fn an_identity_whose_key_was_revoked_since_cannot_manage_keys() {
    let e = engine("api-token");
    let admin = user(&e, "admin@env.example");
    bind(&e, &admin, "env_admin", "environment:prod");
    let dev = user(&e, "dev@env.example");
    let (admin_rec, ak) = key(&e, &admin);
    let (dev_rec, _) = key(&e, &dev);
    let admin_id = e
        .authenticate(&authorization(&format!("apiToken {}", ak.expose())), None)
        .expect("admin");
    e.table()
        .set_key_active(keyward::store::Actor::Cli, admin_rec.id, false)
        .expect("deactivate the admin's key");
    let r = e.manage_keys(
        &admin_id,
        dev.id,
        Some("environment:prod"),
        KeyCommand::Delete(dev_rec.id),
    );
    assert!(
        matches!(&r, Err(ManageError::Forbidden(d)) if d.reason.code() == "inactive_key"),
        "{r:?}"
    );
    assert!(
        e.table().key(dev_rec.id).expect("read").is_some(),
        "nothing was deleted"
    );
}
