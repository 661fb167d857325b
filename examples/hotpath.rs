//! Runs `Engine::authorize` on a warm cache N times (first argument, default 100,000) over U users
//! (second argument, default 1) for instruction counting under `valgrind --tool=callgrind` or timing
//! under `perf`; prints ns per call.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use keyward::policy::Policy;
use keyward::store::{Actor, NewKey, NewPrincipal, PrincipalKind};
use keyward::{Engine, EngineOptions, Request};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let text = include_str!("../policies/cognitive3d.policy")
        .replace("credentials {", "credentials {\n    basic email_key;");
    let policy = Policy::parse("c3d.policy", &text).expect("policy");
    let e = Engine::temporary(policy, EngineOptions::default()).expect("engine");
    let mut headers = Vec::with_capacity(users);
    e.table()
        .bulk(|b| {
            for i in 0..users {
                let login = format!("member{i}@example.com");
                let p = b.add_principal(
                    Actor::Cli,
                    NewPrincipal {
                        kind: PrincipalKind::User,
                        login: login.clone(),
                        default_workspace: None,
                    },
                )?;
                b.bind(
                    Actor::Cli,
                    p.id,
                    "project_member",
                    "domain:1/organization:6/project:3",
                )?;
                let (_, secret) = b.create_key(Actor::Cli, NewKey::new(p.id, "k"))?;
                let v = base64::engine::general_purpose::STANDARD
                    .encode(format!("{login}:{}", secret.expose()));
                let mut h = HeaderMap::new();
                h.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
                );
                headers.push(h);
            }
            Ok(())
        })
        .expect("setup");
    let resource = "domain:1/organization:6/project:3/scene:2";
    for h in &headers {
        assert!(e
            .authorize(&Request::new(h, "update", resource))
            .is_allowed());
    }
    eprintln!(
        "cached after warm-up: {:?}, seq {}",
        e.cached(),
        e.table().seq()
    );
    let t = std::time::Instant::now();
    let mut i = 0usize;
    for _ in 0..n {
        i = (i + 7919) % users;
        std::hint::black_box(e.authorize(std::hint::black_box(&Request::new(
            &headers[i],
            "update",
            resource,
        ))));
    }
    eprintln!(
        "cached after the loop: {:?}, seq {}",
        e.cached(),
        e.table().seq()
    );
    println!(
        "{:.0} ns per authorize over {users} users",
        t.elapsed().as_nanos() as f64 / n.max(1) as f64
    );
}
