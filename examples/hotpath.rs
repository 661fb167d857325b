//! Runs `Engine::authorize` on a warm cache N times (argument, default 100,000) for instruction
//! counting under `valgrind --tool=callgrind` or timing under `perf`; prints ns per call.
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use keyward::policy::Policy;
use keyward::store::{Actor, NewKey, NewPrincipal, PrincipalKind};
use keyward::{Engine, EngineOptions, Request};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let text = include_str!("../policies/cognitive3d.policy")
        .replace("credentials {", "credentials {\n    basic email_key;");
    let policy = Policy::parse("c3d.policy", &text).expect("policy");
    let e = Engine::temporary(policy, EngineOptions::default()).expect("engine");
    let p = e
        .table()
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "member@example.com".into(),
                default_workspace: None,
            },
        )
        .expect("principal");
    e.table()
        .bind(
            Actor::Cli,
            p.id,
            "project_member",
            "domain:1/organization:6/project:3",
        )
        .expect("bind");
    let (_, secret) = e
        .table()
        .create_key(Actor::Cli, NewKey::new(p.id, "k"))
        .expect("key");
    let mut h = HeaderMap::new();
    let v = base64::engine::general_purpose::STANDARD
        .encode(format!("member@example.com:{}", secret.expose()));
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
    );
    let req = Request::new(&h, "update", "domain:1/organization:6/project:3/scene:2");
    assert!(e.authorize(&req).is_allowed());
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(e.authorize(std::hint::black_box(&req)));
    }
    println!(
        "{:.0} ns per authorize",
        t.elapsed().as_nanos() as f64 / n.max(1) as f64
    );
}
