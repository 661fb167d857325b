//! A small API behind keyward's `AuthLayer`: the SEED endpoints of `policies/seed-platform.policy`,
//! each handler told who called by the `Authorized` extractor.
//!
//! ```text
//! cargo run --example axum_api --features server -- DB_DIR 127.0.0.1:3000
//! curl -u user@seed-platform.org:KEY 'http://127.0.0.1:3000/api/v3/cycles/?organization_id=6'
//! ```

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use keyward::http::{AuthLayer, Authorized};
use keyward::{Engine, EngineOptions};

/// Every handler: the route's action and resource, and who was allowed by which role.
async fn handler(auth: Authorized) -> String {
    let a = &auth.allow;
    format!(
        "{} {} as principal {} ({}@{})\n",
        auth.target.action, auth.target.resource, a.principal, a.role, a.granted_at
    )
}

/// The API: the routes the policy names, all behind the layer.
pub fn app(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/api/v3/organizations/{org}", get(handler).put(handler))
        .route("/api/v3/cycles", get(handler).post(handler))
        .route(
            "/api/v3/cycles/{cycle}",
            get(handler).put(handler).delete(handler),
        )
        .route(
            "/api/v3/properties/{property}",
            get(handler).put(handler).delete(handler),
        )
        .route("/api/v3/users/{user}", get(handler).put(handler))
        .layer(AuthLayer::new(engine))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db = args.next().unwrap_or_else(|| "keyward-db".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/seed-platform.policy");
    let engine = Arc::new(Engine::open_files(db, policy, EngineOptions::default())?);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app(engine)).await?;
    Ok(())
}
