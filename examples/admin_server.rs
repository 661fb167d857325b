//! Serves the admin API on a loopback port over a temporary key table, for the API fuzzer
//! (`.ci/schemathesis.sh`) and for trying the API by hand.
//!
//! ```text
//! cargo run --example admin_server --all-features -- OUT_DIR
//! ```
//!
//! Policy: `policies/api-token.policy`. Principals: `admin@example.com` (env_admin at
//! `environment:1`, its key in `OUT_DIR/key`), `alice@example.com` (developer at
//! `environment:1/project:3`). The bound address is written to `OUT_DIR/addr` once serving; the API
//! is mounted under `/keyward/v1`. Stops on Ctrl-C or when OUT_DIR/stop appears.

use std::sync::Arc;
use std::time::Duration;

use keyward::store::{Actor, NewKey, NewPrincipal, PrincipalKind};
use keyward::{Engine, EngineOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: admin_server OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let policy_path = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/api-token.policy");
    let policy = keyward::policy::load_file(std::path::Path::new(policy_path))?;
    let engine = Arc::new(Engine::temporary(policy, EngineOptions::default())?);
    let t = engine.table();
    let user = |login: &str, role: &str, scope: &str| -> Result<u64, Box<dyn std::error::Error>> {
        let p = t.add_principal(
            Actor::System,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: login.into(),
                default_workspace: None,
            },
        )?;
        t.bind(Actor::System, p.id, role, scope)?;
        Ok(p.id)
    };
    let admin = user("admin@example.com", "env_admin", "environment:1")?;
    let alice = user("alice@example.com", "developer", "environment:1/project:3")?;
    let (_, admin_key) = t.create_key(Actor::System, NewKey::new(admin, "fuzz"))?;
    t.create_key(Actor::System, NewKey::new(alice, "laptop"))?;
    std::fs::write(out.join("key"), admin_key.expose())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().nest(
            "/keyward/v1",
            keyward::http::admin::router(Arc::clone(&engine)),
        );
        std::fs::write(out.join("addr"), addr.to_string())?;
        eprintln!("admin API on http://{addr}/keyward/v1");
        let stop_file = out.join("stop");
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stop_file.exists() { break; }
                        }
                    }
                }
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
