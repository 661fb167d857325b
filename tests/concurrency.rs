//! Revocations, binding removals and policy reloads race with readers: no request is ever allowed
//! with a key (or binding) whose revocation had returned before the request began.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keyward::store::Actor;

const POLICY_A: &str = r#"
scope org;
action view: read;
action edit: write;
role admin at org { grant *; }
credentials { bearer; }
"#;

// The same meaning, written differently, so a reload really swaps the compiled tables.
const POLICY_B: &str = r#"
scope org;
action view: read;
action edit: write;
group all = view, edit;
role admin at org { grant all; }
credentials { bearer; }
"#;

#[test]
fn no_request_is_allowed_after_its_revocation_returned() {
    let policy = keyward::policy::Policy::parse("a.policy", POLICY_A).expect("policy");
    let e = keyward::Engine::temporary(policy, keyward::EngineOptions::default()).expect("engine");
    let n = 200;
    let mut users = Vec::new();
    for i in 0..n {
        let u = user(&e, &format!("u{i}@example.com"));
        bind(&e, &u, "admin", "org:1");
        let (rec, secret) = key(&e, &u);
        users.push((
            u,
            rec,
            authorization(&format!("Bearer {}", secret.expose())),
        ));
    }
    let revoked: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let done = AtomicBool::new(false);
    let checked_after_revoke = AtomicUsize::new(0);
    let decisions = AtomicUsize::new(0);

    std::thread::scope(|s| {
        for r in 0..3 {
            let (e, users, revoked, done) = (&e, &users, &revoked, &done);
            let (checked, decisions) = (&checked_after_revoke, &decisions);
            s.spawn(move || {
                let mut i = r * 37;
                while !done.load(Ordering::SeqCst) {
                    i = (i + 7) % users.len();
                    let was_revoked = revoked[i].load(Ordering::SeqCst);
                    let d = decide(e, &users[i].2, "edit", "org:1");
                    decisions.fetch_add(1, Ordering::Relaxed);
                    if was_revoked {
                        checked.fetch_add(1, Ordering::Relaxed);
                        assert!(!d.is_allowed(), "user {i} allowed after revocation: {d:?}");
                    }
                }
            });
        }
        // Policy reloads, racing with everything.
        let (e2, done2) = (&e, &done);
        s.spawn(move || {
            let mut flip = false;
            while !done2.load(Ordering::SeqCst) {
                let text = if flip { POLICY_A } else { POLICY_B };
                e2.reload_text("reload.policy", text).expect("reload");
                // A broken policy is refused and the old one keeps serving.
                assert!(e2
                    .reload_text("broken.policy", "role x at nowhere {")
                    .is_err());
                flip = !flip;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        // The revoker: a different kind of revocation for each user, one after the other.
        let started = Instant::now();
        for (i, (u, rec, _)) in users.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(5));
            let t = e.table();
            match i % 4 {
                0 => drop(
                    t.set_key_active(Actor::Cli, rec.id, false)
                        .expect("deactivate"),
                ),
                1 => drop(t.delete_key(Actor::Cli, rec.id).expect("delete")),
                2 => drop(
                    t.set_key_expiry(Actor::Cli, rec.id, Some(1))
                        .expect("expire"),
                ),
                _ => drop(
                    t.unbind(Actor::Cli, u.id, "admin", "org:1")
                        .expect("unbind"),
                ),
            }
            revoked[i].store(true, Ordering::SeqCst);
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        done.store(true, Ordering::SeqCst);
    });
    assert!(decisions.load(Ordering::Relaxed) > 1000, "the readers ran");
    assert!(
        checked_after_revoke.load(Ordering::Relaxed) > 100,
        "revoked keys were tried"
    );
    for (_, _, h) in &users {
        assert!(!decide(&e, h, "edit", "org:1").is_allowed());
    }
}
