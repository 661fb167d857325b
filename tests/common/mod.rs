//! Helpers shared by the engine's integration tests: an engine over a bundled policy and a temporary
//! key table, principals with keys and bindings, and request headers as real clients send them.
#![allow(dead_code)]

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use keyward::engine::Reason;
use keyward::policy::Policy;
use keyward::store::{Actor, KeyKind, KeyRecord, NewKey, NewPrincipal, Principal, PrincipalKind};
use keyward::token::Secret;
use keyward::{Decision, Engine, EngineOptions, Request};

/// An engine over `policies/NAME.policy` and a temporary key table.
pub fn engine(name: &str) -> Engine {
    let path = format!("{}/policies/{name}.policy", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("bundled policy");
    let policy = Policy::parse(&path, &text).expect("bundled policy checks");
    Engine::temporary(policy, EngineOptions::default()).expect("temporary engine")
}

pub fn principal(e: &Engine, kind: PrincipalKind, login: &str) -> Principal {
    e.table()
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind,
                login: login.to_string(),
                default_workspace: None,
            },
        )
        .expect("add principal")
}

pub fn user(e: &Engine, login: &str) -> Principal {
    principal(e, PrincipalKind::User, login)
}

pub fn bind(e: &Engine, p: &Principal, role: &str, scope: &str) {
    e.table().bind(Actor::Cli, p.id, role, scope).expect("bind");
}

pub fn key(e: &Engine, p: &Principal) -> (KeyRecord, Secret) {
    e.table()
        .create_key(Actor::Cli, NewKey::new(p.id, "test key"))
        .expect("create key")
}

pub fn key_with(e: &Engine, new: NewKey) -> (KeyRecord, Secret) {
    e.table().create_key(Actor::Cli, new).expect("create key")
}

pub fn import(e: &Engine, p: &Principal, name: &str, secret: &str, kind: KeyKind) -> KeyRecord {
    let mut new = NewKey::new(p.id, name);
    new.kind = kind;
    e.table()
        .import_key(Actor::Cli, new, secret)
        .expect("import key")
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    h
}

pub fn authorization(value: &str) -> HeaderMap {
    headers(&[("authorization", value)])
}

/// `Basic base64(user:pass)`, standard alphabet, padded (Python requests' HTTPBasicAuth, curl -u).
pub fn basic(user: &str, pass: &str) -> HeaderMap {
    authorization(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    ))
}

/// `Basic base64(user:pass)` with Python's `urlsafe_b64encode` (URL-safe alphabet, padded).
pub fn basic_urlsafe(user: &str, pass: &str) -> HeaderMap {
    authorization(&format!(
        "Basic {}",
        base64::engine::general_purpose::URL_SAFE.encode(format!("{user}:{pass}"))
    ))
}

pub fn decide(e: &Engine, h: &HeaderMap, action: &str, resource: &str) -> Decision {
    e.authorize(&Request::new(h, action, resource))
}

/// The outcome as a short string: `allow ROLE@SCOPE` or `deny CODE`.
pub fn outcome(d: &Decision) -> String {
    match d {
        Decision::Allow(a) => format!("allow {}@{}", a.role, a.granted_at),
        Decision::Deny(d) => format!("deny {}", d.reason.code()),
    }
}

pub fn reason(d: &Decision) -> Option<&Reason> {
    d.reason()
}
