//! The admin API over loopback sockets: every endpoint, who may and who may not call it, and its
//! errors. Policies: api-token (002: users manage their own tokens, environment admins everyone's
//! in their environment), cognitive3d (003: organization admins create keys for their organization
//! only), seed-platform (Basic `email:key` credentials).
#![cfg(feature = "admin")]

#[path = "support/server.rs"]
mod server;

use std::sync::Arc;

use keyward::store::{Actor, NewKey, NewPrincipal, Principal, PrincipalKind};
use keyward::Engine;
use serde_json::json;
use server::{bundled, serve_admin, Client};

fn user(e: &Engine, login: &str, bindings: &[(&str, &str)]) -> (Principal, String) {
    let p = e
        .table()
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: login.into(),
                default_workspace: None,
            },
        )
        .expect("principal");
    for (role, scope) in bindings {
        e.table().bind(Actor::Cli, p.id, role, scope).expect("bind");
    }
    let (_, secret) = e
        .table()
        .create_key(Actor::Cli, NewKey::new(p.id, "own"))
        .expect("key");
    (p, secret.expose().to_owned())
}

/// api-token policy: `admin` is env_admin at environment:1, `alice` a developer in environment:1,
/// `bob` a developer in environment:2, `eve` an (observer) analyst at environment:1.
struct World {
    e: Arc<Engine>,
    admin: Client,
    alice: Client,
    bob: Client,
    eve: Client,
    anon: Client,
    alice_id: u64,
    bob_id: u64,
    admin_secret: String,
}

fn world() -> World {
    let e = bundled("api-token");
    let (_, admin_secret) = user(&e, "admin@example.com", &[("env_admin", "environment:1")]);
    let (alice, alice_key) = user(
        &e,
        "alice@example.com",
        &[("developer", "environment:1/project:3")],
    );
    let (bob, bob_key) = user(
        &e,
        "bob@example.com",
        &[("developer", "environment:2/project:1")],
    );
    let (_, eve_key) = user(&e, "eve@example.com", &[("analyst", "environment:1")]);
    let addr = serve_admin(Arc::clone(&e));
    World {
        admin: Client::api_token(addr, &admin_secret),
        alice: Client::api_token(addr, &alice_key),
        bob: Client::api_token(addr, &bob_key),
        eve: Client::api_token(addr, &eve_key),
        anon: Client::new(addr, None),
        alice_id: alice.id,
        bob_id: bob.id,
        e,
        admin_secret,
    }
}

#[test]
fn authentication_in_any_accepted_style_and_refusals() {
    let w = world();
    w.anon.get("/whoami").error(401, "no_credential");
    let r = w.anon.get("/whoami");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let forged = Client::api_token(w.admin.addr, "kw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = forged.get("/whoami");
    assert_eq!(r.status, 401, "{}", r.body);
    let unknown_scheme = Client::new(w.admin.addr, Some(("Authorization", "Digest abc")));
    unknown_scheme.get("/whoami").error(401, "unknown_scheme");

    let me = w.admin.get("/whoami");
    assert_eq!(me.status, 200, "{}", me.body);
    let v = me.json();
    assert_eq!(v["login"], "admin@example.com");
    assert_eq!(v["admin_scopes"], json!(["environment:1"]));
    assert_eq!(v["manage_action"], "manage_tokens");

    // The query parameter style the policy accepts works as well.
    let mut q = w.anon.clone();
    q.prefix = String::new();
    let r = q.get(&format!("/keyward/v1/whoami?apiToken={}", w.admin_secret));
    assert_eq!(r.status, 200, "{}", r.body);
    // Alice is no administrator: no admin scopes, but she manages her own tokens.
    let v = w.alice.get("/whoami").json();
    assert_eq!(v["admin_scopes"], json!([]));
    assert_eq!(v["self_manage"], true);
    // The observer role cannot write, so the manage action is not allowed to eve anywhere.
    assert_eq!(w.eve.get("/whoami").json()["admin_scopes"], json!([]));
}

#[test]
fn users_manage_their_own_keys() {
    let w = world();
    let me = "/principals/alice@example.com";
    let r = w.alice.get(&format!("{me}/keys"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));

    let r = w.alice.post(
        &format!("{me}/keys"),
        json!({ "name": "reports", "permissions": ["read_data"], "read_only": true }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("kw_"));
    assert_eq!(v["note"], "store it now, it will not be shown again");
    // Her own account: no scope is added to her key.
    assert_eq!(v["key"]["scope"], json!(null));
    assert_eq!(v["key"]["read_only"], true);
    let id = v["key"]["id"].as_u64().expect("id");

    // The secret is never shown again.
    let listed = w.alice.get(&format!("{me}/keys"));
    assert!(!listed.body.contains(&secret));
    assert!(!w.alice.get(&format!("/keys/{id}")).body.contains(&secret));

    w.alice
        .post(&format!("{me}/keys"), json!({ "name": "reports" }))
        .error(409, "conflict");
    let r = w.alice.post(
        &format!("/keys/{id}/rename"),
        json!({ "name": "reports-2" }),
    );
    assert_eq!(r.json()["name"], "reports-2", "{}", r.body);
    let r = w.alice.post(&format!("/keys/{id}/deactivate"), json!({}));
    assert_eq!(r.json()["status"], "inactive", "{}", r.body);
    let r = w.alice.call("POST", &format!("/keys/{id}/activate"), None);
    assert_eq!(r.json()["status"], "active", "{}", r.body);
    let r = w
        .alice
        .post(&format!("/keys/{id}/rotate"), json!({ "overlap": 3600 }));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["old"]["id"], id);
    assert!(v["old_valid_until"].as_u64().is_some());
    let new_id = v["key"]["id"].as_u64().expect("new id");
    assert_eq!(
        w.alice.get(&format!("/keys/{id}")).json()["status"],
        "rotated"
    );
    let r = w
        .alice
        .call("POST", &format!("/keys/{new_id}/regenerate"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let regen = r.json()["key"]["id"].as_u64().expect("id");
    let r = w.alice.delete(&format!("/keys/{regen}"));
    assert_eq!(r.json()["id"], regen, "{}", r.body);
    w.alice
        .delete(&format!("/keys/{regen}"))
        .error(404, "not_found");

    // Import: the secret is hashed, never echoed, not even in errors.
    let secret = "an-imported-secret-0123456789";
    let r = w.alice.post(
        &format!("{me}/keys/import"),
        json!({ "name": "legacy", "secret": secret }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.contains(secret));
    assert_eq!(r.json()["imported"], true);
    let r = w.alice.post(
        &format!("{me}/keys/import"),
        json!({ "name": "again", "secret": secret }),
    );
    r.error(409, "conflict");
    assert!(!r.body.contains(secret));
    let r = w.alice.raw(
        "POST",
        &format!("{me}/keys/import"),
        Some(format!("{{\"name\": \"x\", \"secret\": {secret}}}").as_bytes()),
    );
    r.error(400, "malformed_request");
    assert!(!r.body.contains(secret));
    w.alice
        .post(&format!("{me}/keys/import"), json!({ "name": "x" }))
        .error(400, "malformed_request");
    w.alice
        .post(
            &format!("{me}/keys/import"),
            json!({ "name": "x", "secret": "has space" }),
        )
        .error(400, "invalid_key");
}

#[test]
fn users_cannot_reach_other_principals() {
    let w = world();
    // Bob and the admin are not alice's to manage: reported as not found.
    w.alice
        .get("/principals/bob@example.com/keys")
        .error(404, "not_found");
    w.alice
        .post(
            &format!("/principals/{}/keys", w.bob_id),
            json!({ "name": "x" }),
        )
        .error(404, "not_found");
    w.alice
        .get("/principals/admin@example.com")
        .error(404, "not_found");
    let bob_key =
        w.e.table()
            .keys_of(w.bob_id)
            .expect("keys")
            .first()
            .expect("bob's key")
            .id;
    w.alice
        .post(&format!("/keys/{bob_key}/deactivate"), json!({}))
        .error(404, "not_found");
    w.alice
        .delete(&format!("/keys/{bob_key}"))
        .error(404, "not_found");
    // Administration needs an admin scope.
    w.alice
        .post("/principals", json!({ "login": "mallory@example.com" }))
        .error(403, "no_role");
    w.alice.get("/audit").error(403, "no_role");
    w.alice
        .post(
            "/principals/alice@example.com/bindings",
            json!({ "role": "env_admin", "scope": "environment:1" }),
        )
        .error(403, "no_role");
    w.eve
        .post(
            "/principals/alice@example.com/bindings",
            json!({ "role": "analyst", "scope": "environment:1" }),
        )
        .error(404, "not_found");
    w.bob
        .get("/principals/alice@example.com/keys")
        .error(404, "not_found");
    // The list shows only herself.
    let v = w.alice.get("/principals").json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["login"], "alice@example.com");
    let keys = w.alice.get("/keys").json();
    assert!(keys
        .as_array()
        .expect("array")
        .iter()
        .all(|k| k["owner"] == w.alice_id));
}

#[test]
fn environment_admins_manage_everyone_in_their_environment() {
    let w = world();
    let v = w.admin.get("/principals").json();
    let logins: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["login"].as_str())
        .collect();
    assert_eq!(
        logins,
        ["admin@example.com", "alice@example.com", "eve@example.com"]
    );
    let alice = w.admin.get("/principals/alice@example.com").json();
    assert_eq!(alice["bindings"][0]["role"], "developer");
    assert_eq!(alice["keys"], 1);
    // Bob is in environment 2: invisible.
    w.admin
        .get("/principals/bob@example.com")
        .error(404, "not_found");
    w.admin
        .get(&format!("/principals/{}/keys", w.bob_id))
        .error(404, "not_found");

    // The admin creates a key for alice: confined to the admin's environment.
    let r = w.admin.post(
        "/principals/alice@example.com/keys",
        json!({ "name": "ops" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["key"]["scope"], "environment:1");
    assert_eq!(v["key"]["owner"], w.alice_id);
    // A scope outside the admin's environment is refused.
    w.admin
        .post(
            "/principals/alice@example.com/keys",
            json!({ "name": "far", "scope": "environment:2" }),
        )
        .error(403, "outside_key_scope");
    // Deactivating alice's own key locks her out at once.
    let alice_key =
        w.e.table()
            .keys_of(w.alice_id)
            .expect("keys")
            .into_iter()
            .find(|k| k.name == "own")
            .expect("alice's key");
    let r = w
        .admin
        .post(&format!("/keys/{}/deactivate", alice_key.id), json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    w.alice.get("/whoami").error(401, "inactive_key");
    w.admin
        .post(&format!("/keys/{}/activate", alice_key.id), json!({}));
    assert_eq!(w.alice.get("/whoami").status, 200);
    // `?at=` names the scope explicitly; a scope where the admin has no role is refused.
    w.admin
        .get("/principals/alice@example.com/keys?at=environment:2")
        .error(403, "no_role");
    let r = w
        .admin
        .get("/principals/alice@example.com/keys?at=environment:1");
    assert_eq!(r.status, 200, "{}", r.body);

    // Principals.
    let r = w.admin.post(
        "/principals",
        json!({ "login": "carol@example.com", "kind": "service-account" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["kind"], "service-account");
    w.admin
        .post("/principals", json!({ "login": "CAROL@example.com" }))
        .error(409, "conflict");
    w.admin
        .post("/principals", json!({ "login": "bad login" }))
        .error(400, "invalid_name");
    w.admin
        .post(
            "/principals",
            json!({ "login": "x@example.com", "kind": "robot" }),
        )
        .error(400, "malformed_request");
    w.admin
        .post(
            "/principals",
            json!({ "login": "x@example.com", "extra": 1 }),
        )
        .error(400, "malformed_request");

    // Bindings: only inside the admin's environment, only valid roles and scopes.
    let r = w.admin.post(
        "/principals/carol@example.com/bindings",
        json!({ "role": "developer", "scope": "environment:1/project:7" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    w.admin
        .post(
            "/principals/carol@example.com/bindings",
            json!({ "role": "developer", "scope": "environment:1/project:7" }),
        )
        .error(409, "conflict");
    w.admin
        .post(
            "/principals/carol@example.com/bindings",
            json!({ "role": "developer", "scope": "environment:2/project:7" }),
        )
        .error(403, "no_role");
    w.admin
        .post(
            "/principals/carol@example.com/bindings",
            json!({ "role": "nosuch", "scope": "environment:1" }),
        )
        .error(400, "unknown_role");
    w.admin
        .post(
            "/principals/carol@example.com/bindings",
            json!({ "role": "developer", "scope": "environment:1" }),
        )
        .error(400, "invalid_scope");
    let r = w.admin.delete(
        "/principals/carol@example.com/bindings?role=developer&scope=environment:1/project:7",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    w.admin
        .delete(
            "/principals/carol@example.com/bindings?role=developer&scope=environment:1/project:7",
        )
        .error(404, "not_found");
    w.admin
        .delete("/principals/carol@example.com/bindings?role=developer")
        .error(400, "malformed_request");
    let r = w.admin.delete("/principals/carol@example.com");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["keys_removed"], 0);
    w.admin
        .delete("/principals/carol@example.com")
        .error(404, "not_found");

    // Workspaces: at a scope the admin manages.
    let ws = json!({ "public_key": "pk-1", "name": "One", "scope": "environment:1/project:9" });
    let r = w.admin.post("/workspaces", ws.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    w.admin.post("/workspaces", ws).error(409, "conflict");
    w.admin
        .post(
            "/workspaces",
            json!({ "public_key": "pk-2", "name": "Two", "scope": "environment:2" }),
        )
        .error(403, "no_role");
    w.admin
        .post(
            "/workspaces",
            json!({ "public_key": "pk-3", "name": "Three", "scope": "nope" }),
        )
        .error(403, "invalid_resource");
    assert_eq!(w.admin.get("/workspaces").json()[0]["public_key"], "pk-1");
    assert_eq!(w.admin.get("/workspaces/pk-1").json()["name"], "One");
    assert_eq!(w.alice.get("/workspaces").json(), json!([]));
    w.alice.get("/workspaces/pk-1").error(404, "not_found");
    w.alice.delete("/workspaces/pk-1").error(404, "not_found");
    assert_eq!(w.admin.delete("/workspaces/pk-1").status, 200);
    w.admin.delete("/workspaces/pk-1").error(404, "not_found");
}

#[test]
fn audit_is_paged_newest_first_and_filtered() {
    let w = world();
    for i in 0..5 {
        let r = w.alice.post(
            "/principals/alice@example.com/keys",
            json!({ "name": format!("k{i}") }),
        );
        assert_eq!(r.status, 201);
    }
    let v = w.admin.get("/audit?limit=3").json();
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["op"], "key_created");
    assert_eq!(entries[0]["actor"], json!({ "principal": w.alice_id }));
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|p| p[0] > p[1]), "{seqs:?}");
    let next = v["next_before"].as_u64().expect("next page");
    let page2 = w.admin.get(&format!("/audit?limit=3&before={next}")).json();
    assert!(page2["entries"][0]["seq"].as_u64() < Some(next));
    // Entries about bob (another environment) are not shown to this admin.
    let all = w.admin.get("/audit?limit=1000").json();
    assert!(all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| !e["principals"]
            .as_array()
            .expect("principals")
            .contains(&json!(w.bob_id))));
    // Alice reads her own entries only.
    let mine = w.alice.get("/audit?principal=alice@example.com").json();
    assert!(mine["entries"].as_array().is_some_and(|a| a.len() >= 5));
    w.alice
        .get("/audit?principal=bob@example.com")
        .error(404, "not_found");
    w.admin
        .get("/audit?limit=many")
        .error(400, "malformed_request");
    w.admin
        .get("/audit?limit=1&limit=2")
        .error(400, "malformed_request");
    assert!(!all.to_string().contains(&w.admin_secret));
}

#[test]
fn malformed_oversized_unknown_and_unsupported_requests() {
    let w = world();
    w.admin
        .raw("POST", "/principals", Some(b"{not json"))
        .error(400, "malformed_request");
    w.admin
        .raw("POST", "/principals", Some(b"[1, 2]"))
        .error(400, "malformed_request");
    let big = vec![b' '; server_limit() + 10];
    w.admin
        .raw("POST", "/principals", Some(&big))
        .error(413, "too_large");
    w.admin.get("/keys/abc").error(400, "malformed_request");
    w.admin
        .get("/keys/99999999999999999999999")
        .error(400, "malformed_request");
    w.admin.get("/keys/424242").error(404, "not_found");
    w.admin.get("/nothing/here").error(404, "no_such_endpoint");
    w.admin
        .call("PUT", "/keys", None)
        .error(405, "method_not_allowed");
    w.admin
        .get("/principals/nobody@example.com")
        .error(404, "not_found");
    // Authentication comes before anything else.
    w.anon
        .raw("POST", "/principals", Some(b"{not json"))
        .error(401, "no_credential");
}

fn server_limit() -> usize {
    keyward::http::admin::BODY_LIMIT
}

/// 003: organization admins create keys for their organization only; keys are read-only by default.
#[test]
fn organization_admins_create_keys_for_their_organization_only() {
    let e = bundled("cognitive3d");
    let (_, admin_key) = user(
        &e,
        "olga@example.com",
        &[("org_admin", "domain:1/organization:6")],
    );
    let (_, _) = user(
        &e,
        "uma@example.com",
        &[("project_member", "domain:1/organization:6/project:2")],
    );
    let (_, _) = user(
        &e,
        "otto@example.com",
        &[("project_member", "domain:1/organization:7/project:1")],
    );
    let addr = serve_admin(Arc::clone(&e));
    let olga = Client::new(
        addr,
        Some(("Authorization", &format!("APIKEY:ORGANIZATION {admin_key}"))),
    );
    let r = olga.post(
        "/principals/uma@example.com/keys",
        json!({ "name": "uma-ci" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["key"]["scope"], "domain:1/organization:6");
    assert_eq!(v["key"]["read_only"], true);
    assert!(v["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("orgkey-")));
    olga.post("/principals/otto@example.com/keys", json!({ "name": "x" }))
        .error(404, "not_found");
    olga.post(
        "/principals/uma@example.com/keys",
        json!({ "name": "y", "scope": "domain:1/organization:7" }),
    )
    .error(403, "outside_key_scope");
    olga.post(
        "/principals/uma@example.com/keys",
        json!({ "name": "z", "scope": "domain:1/organization:6/project:2" }),
    )
    .error(403, "outside_key_scope");
    // No self rule grants manage_keys here, and uma has no admin role: she cannot manage keys.
    let uma_key = v["secret"].as_str().expect("secret").to_owned();
    let uma = Client::new(
        addr,
        Some(("Authorization", &format!("APIKEY:ORGANIZATION {uma_key}"))),
    );
    uma.get("/principals/uma@example.com/keys")
        .error(403, "no_role");
    // Her key is read-only: even an admin binding would not let it manage anything.
    e.table()
        .bind(Actor::Cli, 2, "org_admin", "domain:1/organization:6")
        .expect("bind");
    assert_eq!(uma.get("/whoami").json()["admin_scopes"], json!([]));
}

/// SEED: Basic base64(email:key), users manage their own key, owners their organization's.
#[test]
fn basic_email_key_credentials_work() {
    use base64::Engine as _;
    let e = bundled("seed-platform");
    let (_, key) = user(&e, "sam@example.com", &[("member", "organization:6")]);
    let addr = serve_admin(Arc::clone(&e));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("sam@example.com:{key}"));
    let sam = Client::new(addr, Some(("Authorization", &format!("Basic {basic}"))));
    let r = sam.post(
        "/principals/sam@example.com/keys",
        json!({ "name": "second" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // A failed authentication is a 401 here, not the policy's redirect to its login page.
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("eve@example.com:{key}"));
    Client::new(addr, Some(("Authorization", &format!("Basic {wrong}"))))
        .get("/whoami")
        .error(401, "email_mismatch");
}

/// The router mounts under any prefix.
#[test]
fn mounts_under_any_prefix() {
    let e = bundled("api-token");
    let (_, key) = user(&e, "root@example.com", &[("env_admin", "environment:1")]);
    let addr = server::serve(
        axum::Router::new().nest("/ops/keys", keyward::http::admin::router(Arc::clone(&e))),
    );
    let mut c = Client::api_token(addr, &key);
    c.prefix = "/ops/keys".into();
    assert_eq!(c.get("/whoami").status, 200);
}

/// A policy without `keys { manage ...; }`: every management call is refused.
#[test]
fn key_management_disabled() {
    let e = server::engine_from(
        "plain.policy",
        "scope org;\naction view: read;\nrole admin at org { grant *; }\ncredentials { bearer; }\n",
    );
    let (_, key) = user(&e, "root@example.com", &[("admin", "org:1")]);
    let addr = serve_admin(Arc::clone(&e));
    let c = Client::new(addr, Some(("Authorization", &format!("Bearer {key}"))));
    assert_eq!(c.get("/whoami").status, 200);
    c.get("/principals/root@example.com/keys")
        .error(403, "key_management_disabled");
    c.post("/principals", json!({ "login": "x@example.com" }))
        .error(403, "key_management_disabled");
    c.get("/workspaces").error(403, "key_management_disabled");
}

/// The `access_denied` entries of the audit log as the admin API shows them to `admin`, newest first.
fn denials(admin: &Client) -> Vec<serde_json::Value> {
    let r = admin.get("/audit?limit=1000");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["op"] == "access_denied")
        .cloned()
        .collect()
}

/// Every 401 and 403 lands in the audit log once: status, code, method, path without the query,
/// the caller as actor when its key is known; never a secret nor the Authorization header.
#[test]
fn refused_calls_are_audited_without_secrets() {
    let w = world();
    let alice_auth = w.alice.auth.clone().expect("alice's header").1;
    let alice_key = alice_auth.trim_start_matches("apiToken ").to_owned();
    let alice_key_id =
        w.e.table()
            .keys_of(w.alice_id)
            .expect("keys")
            .first()
            .expect("alice's key")
            .id;
    let seq = w.e.table().seq();

    w.anon.get("/keys").error(401, "no_credential");
    w.alice
        .post("/principals", json!({ "login": "mallory@example.com" }))
        .error(403, "no_role");
    // A credential in the query string: the query is never recorded.
    let forged = "kw_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
    let r = w.anon.get(&format!("/whoami?apiToken={forged}"));
    assert_eq!(r.status, 401, "{}", r.body);
    let forged_code = r.json()["code"].as_str().expect("code").to_owned();
    // An allowed call is not a refusal; a 404 is not either.
    assert_eq!(w.alice.get("/whoami").status, 200);
    w.alice
        .get("/principals/bob@example.com")
        .error(404, "not_found");

    // Queued, not written: the log and its sequence number did not move.
    assert_eq!(w.e.table().seq(), seq);
    assert_eq!(w.e.table().pending_denials().queued, 3);

    let found = denials(&w.admin);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(w.e.table().pending_denials().queued, 0);
    let (query, forbidden, anon) = (&found[0], &found[1], &found[2]);
    assert_eq!(anon["actor"], "anonymous");
    assert_eq!(
        anon["denial"],
        json!({ "status": 401, "code": "no_credential", "method": "GET",
                "path": "/keyward/v1/keys", "key": null })
    );
    assert_eq!(
        anon["text"],
        "denied GET /keyward/v1/keys: 401 no_credential"
    );
    assert_eq!(anon["principals"], json!([]));
    assert_eq!(forbidden["actor"], json!({ "principal": w.alice_id }));
    assert_eq!(
        forbidden["denial"],
        json!({ "status": 403, "code": "no_role", "method": "POST",
                "path": "/keyward/v1/principals", "key": alice_key_id })
    );
    assert_eq!(forbidden["principals"], json!([w.alice_id]));
    assert_eq!(query["actor"], "anonymous");
    assert_eq!(query["denial"]["path"], "/keyward/v1/whoami");
    assert_eq!(query["denial"]["code"], forged_code.as_str());
    let seqs: Vec<u64> = found.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [seq + 3, seq + 2, seq + 1]);

    // The secret and the header appear nowhere in the log, through the API or the table.
    let all = w.admin.get("/audit?limit=1000").body;
    let entries = format!(
        "{:?}",
        w.e.table()
            .audit(keyward::store::AuditQuery {
                principal: None,
                limit: 1000,
                before: None
            })
            .expect("audit")
    );
    for text in [&all, &entries] {
        for secret in [alice_key.as_str(), alice_auth.as_str(), forged, "apiToken"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Alice reads her own refusal; the admin of environment 1 does not see bob's.
    let mine = w.alice.get("/audit?principal=alice@example.com").json();
    assert!(mine["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e["op"] == "access_denied"));
    w.bob
        .post("/principals", json!({ "login": "x@example.com" }))
        .error(403, "no_role");
    assert_eq!(denials(&w.admin).len(), 3);
    assert_eq!(w.e.table().pending_denials().queued, 0);
}

/// A refusal changes nothing: no cache entry is dropped, the sequence number does not move until the
/// queue is written (and then without telling the cache), and allowed calls go on as before.
#[test]
fn a_refusal_does_not_touch_the_engine_cache() {
    let w = world();
    assert_eq!(w.admin.get("/whoami").status, 200);
    assert_eq!(w.alice.get("/whoami").status, 200);
    let cached = w.e.cached();
    assert!(cached.0 >= 2 && cached.1 >= 2, "{cached:?}");
    let seq = w.e.table().seq();
    for _ in 0..20 {
        w.anon.get("/principals").error(401, "no_credential");
        w.alice
            .post("/principals", json!({ "login": "m@example.com" }))
            .error(403, "no_role");
    }
    assert_eq!(w.e.table().seq(), seq);
    assert_eq!(w.e.cached(), cached);
    w.e.table().flush().expect("flush");
    assert_eq!(w.e.table().seq(), seq + 40);
    assert_eq!(
        w.e.cached(),
        cached,
        "writing refusals invalidated the cache"
    );
    assert_eq!(w.alice.get("/whoami").status, 200);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("apiToken {}", w.admin_secret)
            .parse()
            .expect("header"),
    );
    assert!(w
        .e
        .authorize(&keyward::Request::new(
            &headers,
            "manage_tokens",
            "environment:1"
        ))
        .is_allowed());
    assert_eq!(w.e.cached(), cached);
}

/// Past `DENIAL_QUEUE_MAX` queued refusals, more are only counted, and one `denials_not_recorded`
/// entry says how many when the queue is written.
#[test]
fn a_flood_of_refusals_is_bounded_and_summarised() {
    use keyward::store::{PendingDenials, DENIAL_QUEUE_MAX};
    let w = world();
    let before = w.e.table().seq();
    for _ in 0..DENIAL_QUEUE_MAX + 25 {
        let r = server::send(w.anon.addr, "GET", "/keyward/v1/keys", &[], None);
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        w.e.table().pending_denials(),
        PendingDenials {
            queued: DENIAL_QUEUE_MAX,
            dropped: 25
        }
    );
    assert_eq!(w.e.table().seq(), before);
    let page = w.admin.get("/audit?limit=2").json();
    let newest = &page["entries"][0];
    assert_eq!(newest["op"], "denials_not_recorded", "{page:#}");
    assert_eq!(newest["actor"], "system");
    assert_eq!(newest["not_recorded"], 25);
    assert_eq!(page["entries"][1]["op"], "access_denied");
    assert_eq!(
        w.e.table().pending_denials(),
        PendingDenials::default(),
        "the queue drained"
    );
    assert_eq!(w.e.table().seq(), before + DENIAL_QUEUE_MAX as u64 + 1);
    // The next refusal is recorded again, with no summary.
    w.anon.get("/keys").error(401, "no_credential");
    let page = w.admin.get("/audit?limit=1").json();
    assert_eq!(page["entries"][0]["op"], "access_denied");
}

// ----- the batch import -----

const BATCH: &str = "/principals/alice@example.com/keys/import-batch";

/// The newest audit entry, as the admin sees it.
fn newest_entry(admin: &Client) -> serde_json::Value {
    let r = admin.get("/audit?limit=1");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["entries"][0].clone()
}

/// Whether `secret` authenticates through the engine as `login`, and is allowed `read_data` on
/// alice's project.
fn works_as(e: &Engine, secret: &str, login: &str) -> bool {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("apiToken {secret}").parse().expect("header"),
    );
    e.authenticate(&headers, None)
        .is_ok_and(|ident| ident.login() == login)
        && e.authorize(&keyward::Request::new(
            &headers,
            "read_data",
            "environment:1/project:3",
        ))
        .is_allowed()
}

/// One request answers many keys: one mutation, one `keys_imported` entry with the caller, the
/// records without their secrets, every key usable at once. An admin's keys are confined to its
/// scope; a user's own keys (self rule) are not.
#[test]
fn batch_import_is_one_audited_mutation() {
    let w = world();
    let secrets = [
        "batch-secret-0000000000000001",
        "batch-secret-0000000000000002",
        "batch-secret-0000000000000003",
    ];
    let seq = w.e.table().seq();
    let r = w.admin.post(
        BATCH,
        json!({ "keys": [
            { "name": "b1", "secret": secrets[0] },
            { "name": "b2", "secret": secrets[1], "read_only": true, "permissions": ["read_data"] },
            { "name": "b3", "secret": secrets[2], "scope": "environment:1/project:3" },
        ] }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for s in secrets {
        assert!(!r.body.contains(s), "a secret echoed: {}", r.body);
    }
    let v = r.json();
    let keys = v["keys"].as_array().expect("keys");
    let names: Vec<&str> = keys.iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["b1", "b2", "b3"]);
    assert!(keys
        .iter()
        .all(|k| k["imported"] == true && k["owner"] == w.alice_id));
    assert_eq!(keys[0]["scope"], "environment:1");
    assert_eq!(keys[1]["read_only"], true);
    assert_eq!(keys[1]["permissions"], json!(["read_data"]));
    assert_eq!(keys[2]["scope"], "environment:1/project:3");
    let first = keys[0]["id"].as_u64().expect("id");
    assert_eq!(keys[2]["id"].as_u64(), Some(first + 2));
    // One mutation, one audit entry naming the caller.
    assert_eq!(w.e.table().seq(), seq + 1);
    let entry = newest_entry(&w.admin);
    assert_eq!(entry["op"], "keys_imported", "{entry}");
    assert_eq!(entry["seq"], seq + 1);
    assert_eq!(
        entry["text"],
        format!(
            "keys {first} to {} (3 key(s)) imported for 1 principal(s)",
            first + 2
        )
    );
    let admin_id = w.admin.get("/whoami").json()["principal"].clone();
    assert_eq!(entry["actor"], json!({ "principal": admin_id }));
    for s in secrets {
        assert!(works_as(&w.e, s, "alice@example.com"), "{s}");
    }

    // Alice imports for herself: her own account, so her keys are not confined.
    let mine = "alices-own-batch-secret-000000001";
    let r = w.alice.post(
        BATCH,
        json!({ "keys": [{ "name": "mine", "secret": mine }] }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["keys"][0]["scope"], json!(null));
    assert!(works_as(&w.e, mine, "alice@example.com"));
    assert_eq!(
        newest_entry(&w.admin)["actor"],
        json!({ "principal": w.alice_id })
    );

    // A dry run checks and writes nothing.
    let seq = w.e.table().seq();
    let r = w.admin.post(
        &format!("{BATCH}?dry_run=true"),
        json!({ "keys": [{ "name": "d1", "secret": "dry-run-secret-000000000001" }] }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({ "checked": 1 }));
    assert_eq!(w.e.table().seq(), seq);
    assert!(!works_as(
        &w.e,
        "dry-run-secret-000000000001",
        "alice@example.com"
    ));
}

/// Every refused batch names the key at fault (`index`, and `item N: ` in the message), never
/// echoes a secret, and writes nothing: not one key of it, no audit entry.
#[test]
fn batch_import_is_all_or_nothing() {
    let w = world();
    let stored = "already-stored-secret-000000001";
    let r = w.admin.post(
        BATCH,
        json!({ "keys": [{ "name": "stored", "secret": stored }] }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let fresh = |i: u32| json!({ "name": format!("n{i}"), "secret": format!("fresh-batch-secret-{i:012}") });
    let with = |i: u32, field: &str, value: serde_json::Value| {
        let mut k = fresh(i);
        k[field] = value;
        k
    };
    // (what, body, status, code, index)
    let rows: Vec<(&str, serde_json::Value, u16, &str, Option<u64>)> = vec![
        (
            "a bad key name",
            json!([fresh(1), with(2, "name", json!(""))]),
            400,
            "invalid_name",
            Some(1),
        ),
        (
            "a secret that is no acceptable key",
            json!([fresh(1), fresh(2), with(3, "secret", json!("has space"))]),
            400,
            "invalid_key",
            Some(2),
        ),
        (
            "a generated-looking key with a bad checksum",
            json!([with(
                1,
                "secret",
                json!("kw_notAValidGeneratedKeyAtAll1234")
            )]),
            400,
            "invalid_key",
            Some(0),
        ),
        (
            "a secret repeated in the batch",
            json!([
                fresh(1),
                fresh(2),
                with(3, "secret", fresh(1)["secret"].clone())
            ]),
            409,
            "conflict",
            Some(2),
        ),
        (
            "a secret already stored",
            json!([fresh(1), with(2, "secret", json!(stored))]),
            409,
            "conflict",
            Some(1),
        ),
        (
            "a name in use",
            json!([with(1, "name", json!("own"))]),
            409,
            "conflict",
            Some(0),
        ),
        (
            "a name repeated in the batch",
            json!([fresh(1), with(2, "name", json!("n1"))]),
            409,
            "conflict",
            Some(1),
        ),
        (
            "an expiry in the past",
            json!([fresh(1), with(2, "expires_at", json!(1))]),
            400,
            "invalid_expiry",
            Some(1),
        ),
        (
            "an invalid scope",
            json!([fresh(1), with(2, "scope", json!("environment:1//x"))]),
            400,
            "invalid_scope",
            Some(1),
        ),
        (
            "a key without its secret",
            json!([fresh(1), { "name": "x" }]),
            400,
            "malformed_request",
            Some(1),
        ),
        (
            "a scope outside the admin's",
            json!([fresh(1), with(2, "scope", json!("environment:2"))]),
            403,
            "outside_key_scope",
            Some(1),
        ),
        (
            "an unknown field",
            json!([with(1, "owner", json!(3))]),
            400,
            "malformed_request",
            None,
        ),
        ("no key at all", json!([]), 400, "malformed_request", None),
    ];
    let keys = || w.e.table().keys_of(w.alice_id).expect("keys").len();
    let (seq, count) = (w.e.table().seq(), keys());
    for (what, batch, status, code, index) in rows {
        let body = json!({ "keys": batch });
        for query in ["", "?dry_run=true"] {
            let r = w.admin.post(&format!("{BATCH}{query}"), body.clone());
            assert_eq!(r.status, status, "{what}{query}: {}", r.body);
            r.error(status, code);
            let v = r.json();
            assert_eq!(v["index"].as_u64(), index, "{what}{query}: {}", r.body);
            if let Some(i) = index {
                let message = v["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with(&format!("item {i}: ")),
                    "{what}: {message}"
                );
            }
            for k in batch.as_array().into_iter().flatten() {
                if let Some(s) = k["secret"].as_str() {
                    assert!(!r.body.contains(s), "{what}: a secret echoed: {}", r.body);
                }
            }
            assert_eq!(
                w.e.table().seq(),
                seq,
                "{what}{query}: something was written"
            );
            assert_eq!(keys(), count, "{what}{query}: keys were written");
        }
    }
    // The repeated secret names the first key with it; the message never holds the secret.
    let r = w.admin.post(
        BATCH,
        json!({ "keys": [fresh(1), fresh(2), with(3, "secret", fresh(1)["secret"].clone())] }),
    );
    assert!(
        r.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("the same secret as item 0")),
        "{}",
        r.body
    );
    // The 403s above are the admin API's refusals: audited, with the batch's path.
    let refused: Vec<serde_json::Value> = denials(&w.admin);
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused
        .iter()
        .all(|d| d["denial"]["code"] == "outside_key_scope"
            && d["denial"]["path"] == format!("/keyward/v1{BATCH}")));
}

/// Who may call it: the same right as the single import, checked once for the whole batch (and
/// before a large body is read). Refusals are audited.
#[test]
fn batch_import_is_authorized_like_a_single_import() {
    let w = world();
    let batch = json!({ "keys": [{ "name": "x", "secret": "who-may-import-secret-00001" }] });
    // Not authenticated.
    w.anon
        .post(BATCH, batch.clone())
        .error(401, "no_credential");
    // Others' principals are not found: alice for bob, the environment-1 admin for bob.
    for (caller, target) in [(&w.alice, "bob@example.com"), (&w.admin, "bob@example.com")] {
        caller
            .post(
                &format!("/principals/{target}/keys/import-batch"),
                batch.clone(),
            )
            .error(404, "not_found");
    }
    // A scope where the admin has no role.
    w.admin
        .post(&format!("{BATCH}?at=environment:2"), batch.clone())
        .error(403, "no_role");
    // A user without the management right: alice's read-only key may not manage even her own keys.
    let mut ro = NewKey::new(w.alice_id, "read-only");
    ro.read_only = true;
    let (_, ro_secret) = w.e.table().create_key(Actor::Cli, ro).expect("key");
    let alice_ro = Client::api_token(w.admin.addr, ro_secret.expose());
    alice_ro
        .post(BATCH, batch.clone())
        .error(403, "read_only_key");
    // Without a self rule (003), a member cannot import her own keys.
    let e = bundled("cognitive3d");
    let (_, uma_key) = user(
        &e,
        "uma@example.com",
        &[("project_member", "domain:1/organization:6/project:2")],
    );
    let uma = Client::new(
        serve_admin(Arc::clone(&e)),
        Some(("Authorization", &format!("APIKEY:ORGANIZATION {uma_key}"))),
    );
    uma.post(
        "/principals/uma@example.com/keys/import-batch",
        json!({ "keys": [{ "name": "x", "secret": "orgkey-like-but-opaque-secret-01" }] }),
    )
    .error(403, "no_role");
    assert!(e.table().keys_of(1).expect("keys").len() == 1);
    // Nothing was written; every refusal is in the log with the batch's path.
    assert!(w
        .e
        .table()
        .key_by_hash(&w.e.table().hash("who-may-import-secret-00001"))
        .expect("read")
        .is_none());
    let refused = denials(&w.admin);
    let codes: Vec<&str> = refused
        .iter()
        .filter(|d| {
            d["denial"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/keys/import-batch"))
        })
        .filter_map(|d| d["denial"]["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        ["read_only_key", "no_role", "no_credential"],
        "{refused:#?}"
    );
}

/// At most `IMPORT_BATCH_MAX` keys and `IMPORT_BODY_LIMIT` bytes per call: 413 `too_large`, nothing
/// written; exactly the most keys is accepted.
#[test]
fn batch_import_is_bounded() {
    use keyward::http::admin::{IMPORT_BATCH_MAX, IMPORT_BODY_LIMIT};
    let w = world();
    let many = |n: usize| {
        let keys: Vec<serde_json::Value> = (0..n)
            .map(|i| json!({ "name": format!("k{i}"), "secret": format!("bounded-batch-secret-{i:08}") }))
            .collect();
        json!({ "keys": keys })
    };
    let seq = w.e.table().seq();
    let r = w.admin.post(BATCH, many(IMPORT_BATCH_MAX + 1));
    r.error(413, "too_large");
    assert!(r.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("more than the {IMPORT_BATCH_MAX} allowed"))));
    let mut big = br#"{"keys": ["#.to_vec();
    big.resize(IMPORT_BODY_LIMIT + 10, b' ');
    w.admin
        .raw("POST", BATCH, Some(&big))
        .error(413, "too_large");
    assert_eq!(w.e.table().seq(), seq);

    // The most keys, in a body larger than the other endpoints take.
    let body = many(IMPORT_BATCH_MAX);
    assert!(body.to_string().len() > keyward::http::admin::BODY_LIMIT);
    let r = w.admin.post(BATCH, body);
    assert_eq!(r.status, 201, "{}", &r.body[..r.body.len().min(300)]);
    assert_eq!(
        r.json()["keys"].as_array().map(Vec::len),
        Some(IMPORT_BATCH_MAX)
    );
    assert_eq!(w.e.table().seq(), seq + 1);
    assert!(works_as(
        &w.e,
        "bounded-batch-secret-00004999",
        "alice@example.com"
    ));
}
