//! Revocation through the admin API races clients that keep calling a protected endpoint with the
//! keys being revoked: once the revoke call has returned, no request with that key is allowed.
#![cfg(feature = "admin")]

#[path = "support/server.rs"]
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward::http::AuthLayer;
use keyward::store::{Actor, NewKey, NewPrincipal, PrincipalKind};
use serde_json::json;
use server::{send, Client};

const POLICY: &str = r#"
scope environment;
scope project under environment;
scope user;
action read_data: read;
action manage_tokens: write;
role env_admin at environment { grant *; }
role developer at project { grant read_data; }
self manage_tokens on user;
credentials { api_token; }
keys { manage manage_tokens; }
route GET "/data/{p}" => read_data on "environment:1/project:{p}";
"#;

const KEYS: usize = 6;

#[test]
fn no_request_is_allowed_after_the_revoke_call_returned() {
    let e = server::engine_from("race.policy", POLICY);
    let t = e.table();
    let admin = t
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "admin@example.com".into(),
                default_workspace: None,
            },
        )
        .expect("admin");
    t.bind(Actor::Cli, admin.id, "env_admin", "environment:1")
        .expect("bind");
    let (_, admin_key) = t
        .create_key(Actor::Cli, NewKey::new(admin.id, "admin"))
        .expect("key");
    let user = t
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "dev@example.com".into(),
                default_workspace: None,
            },
        )
        .expect("user");
    t.bind(Actor::Cli, user.id, "developer", "environment:1/project:3")
        .expect("bind");
    let keys: Vec<(u64, String)> = (0..KEYS)
        .map(|i| {
            let (rec, s) = t
                .create_key(Actor::Cli, NewKey::new(user.id, format!("k{i}")))
                .expect("key");
            (rec.id, s.expose().to_owned())
        })
        .collect();

    let protected = axum::Router::new()
        .route("/data/{p}", axum::routing::get(|| async { "data" }))
        .layer(AuthLayer::new(Arc::clone(&e)));
    let app = axum::Router::new()
        .nest("/keyward/v1", keyward::http::admin::router(Arc::clone(&e)))
        .merge(protected);
    let addr = server::serve(app);

    // Every key works before the race.
    for (_, secret) in &keys {
        let auth = format!("apiToken {secret}");
        let r = send(addr, "GET", "/data/3", &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // One client per key hammers the protected endpoint, recording when each request started and
    // whether it was allowed.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(usize, Instant, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, (_, secret))| {
            let auth = format!("apiToken {secret}");
            let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let r = send(addr, "GET", "/data/3", &[("Authorization", &auth)], None);
                    log.lock().expect("log").push((i, started, r.status));
                }
            })
        })
        .collect();

    // Revoke the keys one by one through the API (deactivate, delete, regenerate alternate).
    let api = Client::api_token(addr, admin_key.expose());
    let mut returned = Vec::new();
    for (i, (id, _)) in keys.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(60));
        let r = match i % 3 {
            0 => api.post(&format!("/keys/{id}/deactivate"), json!({})),
            1 => api.delete(&format!("/keys/{id}")),
            _ => api.call("POST", &format!("/keys/{id}/regenerate"), None),
        };
        assert_eq!(r.status, 200, "{}", r.body);
        returned.push(Instant::now());
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }

    let log = log.lock().expect("log");
    for (i, done) in returned.iter().enumerate() {
        let before = log
            .iter()
            .filter(|(k, at, s)| *k == i && at < done && *s == 200)
            .count();
        let after: Vec<u16> = log
            .iter()
            .filter(|(k, at, _)| *k == i && at > done)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            before > 0,
            "key {i} was never allowed before its revocation"
        );
        assert!(
            !after.is_empty(),
            "key {i}: no request after its revocation"
        );
        assert!(
            after.iter().all(|s| *s == 401),
            "key {i}: a request started after the revoke call returned was not refused: {after:?}"
        );
    }
}
