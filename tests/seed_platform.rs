//! SEED Platform (seed 000): `Authorization: Basic base64(email:key)` in the standard and URL-safe
//! alphabets, 40-hex keys imported as they are, case-insensitive email, one key per user replaced at
//! once by "Get a New API Key", organization roles viewer < member < owner selected with
//! `organization_id`, and a 302 to `/app/login` on failed authentication.

mod common;
use common::*;
use keyward::engine::{KeyCommand, KeyCommandResult};
use keyward::store::KeyKind;
use keyward::Request;

const SEED_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";

#[test]
fn the_documented_header_authenticates() {
    let e = engine("seed-platform");
    let u = user(&e, "user@seed-platform.org");
    bind(&e, &u, "member", "organization:6");
    import(&e, &u, "api key", SEED_KEY, KeyKind::Standard);

    // Exactly the header printed in the seed document (urlsafe_b64encode of email:key).
    let doc = authorization(
        "Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi",
    );
    assert_eq!(
        outcome(&decide(&e, &doc, "view", "organization:6")),
        "allow member@organization:6"
    );
    // Python requests' HTTPBasicAuth: standard alphabet, padded; and the email in another case.
    let requests = basic("User@Seed-Platform.org", SEED_KEY);
    assert_eq!(
        outcome(&decide(&e, &requests, "create", "organization:6/cycle:2")),
        "allow member@organization:6"
    );
}

#[test]
fn url_safe_alphabet_for_emails_with_tilde_and_question_mark() {
    let e = engine("seed-platform");
    let login = "~~~user??@seed.example";
    let u = user(&e, login);
    bind(&e, &u, "viewer", "organization:1");
    import(&e, &u, "api key", SEED_KEY, KeyKind::Standard);
    let std = basic(login, SEED_KEY);
    let url = basic_urlsafe(login, SEED_KEY);
    assert_ne!(std, url, "the two alphabets differ for this email");
    for h in [&std, &url] {
        assert_eq!(
            outcome(&decide(&e, h, "view", "organization:1")),
            "allow viewer@organization:1"
        );
    }
}

#[test]
fn roles_and_organization_context() {
    let e = engine("seed-platform");
    let viewer = user(&e, "viewer@seed.example");
    bind(&e, &viewer, "viewer", "organization:6");
    let member = user(&e, "member@seed.example");
    bind(&e, &member, "member", "organization:6");
    let owner = user(&e, "owner@seed.example");
    bind(&e, &owner, "owner", "organization:6");
    let (_, vk) = key(&e, &viewer);
    let (_, mk) = key(&e, &member);
    let (_, ok) = key(&e, &owner);
    let v = basic(&viewer.login, vk.expose());
    let m = basic(&member.login, mk.expose());
    let o = basic(&owner.login, ok.expose());

    // The host maps `?organization_id=6` to the context `organization:6`; resources are relative.
    let with_org = |h, action, resource| {
        outcome(
            &e.authorize(&Request::new(h, action, resource).with_context(Some("organization:6"))),
        )
    };
    let rows = [
        (
            &v,
            "view",
            "cycle:2/property:9",
            "allow viewer@organization:6",
        ),
        (&v, "update", "cycle:2/property:9", "deny no_role"),
        (
            &m,
            "update",
            "cycle:2/property:9",
            "allow member@organization:6",
        ),
        (&m, "manage_members", ".", "deny no_role"),
        (&o, "manage_members", ".", "allow owner@organization:6"),
        (&o, "view", "cycle:2", "allow owner@organization:6"),
    ];
    for (h, action, resource, want) in rows {
        assert_eq!(with_org(h, action, resource), want, "{action} {resource}");
    }
    // Another organization's data stays out of reach.
    let other =
        e.authorize(&Request::new(&o, "view", "cycle:2").with_context(Some("organization:7")));
    assert_eq!(outcome(&other), "deny no_role");
}

#[test]
fn wrong_email_and_failed_authentication_redirect_to_login() {
    let e = engine("seed-platform");
    let u = user(&e, "user@seed-platform.org");
    bind(&e, &u, "member", "organization:6");
    import(&e, &u, "api key", SEED_KEY, KeyKind::Standard);
    let other = user(&e, "other@seed-platform.org");
    let d = decide(&e, &basic(&other.login, SEED_KEY), "view", "organization:6");
    assert_eq!(outcome(&d), "deny email_mismatch");
    let keyward::Decision::Deny(deny) = d else {
        unreachable!()
    };
    let resp = e.deny_response(&deny);
    assert_eq!(resp.status, 302);
    assert_eq!(resp.location.as_deref(), Some("/app/login"));
    let body: serde_json::Value = serde_json::from_str(&resp.body).expect("json body");
    assert_eq!(body["status"], "error");
    assert_eq!(body["message"], "the key does not belong to this email");
    assert!(!resp.body.contains(SEED_KEY));

    // An authorization failure is a 403, not a redirect.
    let d = decide(
        &e,
        &basic(&u.login, SEED_KEY),
        "manage_members",
        "organization:6",
    );
    let keyward::Decision::Deny(deny) = d else {
        panic!("member cannot manage members")
    };
    assert_eq!(e.deny_response(&deny).status, 403);
}

#[test]
fn get_a_new_api_key_replaces_the_old_one_at_once() {
    let e = engine("seed-platform");
    let u = user(&e, "user@seed-platform.org");
    bind(&e, &u, "member", "organization:6");
    let old = import(&e, &u, "api key", SEED_KEY, KeyKind::Standard);
    let me = e
        .authenticate(&basic(&u.login, SEED_KEY), None)
        .expect("authenticates");
    // Users manage their own key through the self rule: no scope needed.
    let Ok(KeyCommandResult::Created(new, secret)) =
        e.manage_keys(&me, u.id, None, KeyCommand::Regenerate(old.id))
    else {
        panic!("a user regenerates their own key")
    };
    assert_ne!(new.id, old.id);
    assert_eq!(
        outcome(&decide(
            &e,
            &basic(&u.login, SEED_KEY),
            "view",
            "organization:6"
        )),
        "deny unknown_key"
    );
    assert_eq!(
        outcome(&decide(
            &e,
            &basic(&u.login, secret.expose()),
            "view",
            "organization:6"
        )),
        "allow member@organization:6"
    );
}
