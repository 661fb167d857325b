//! `AuthLayer` in front of an axum API over a real loopback socket: every seed product's credential
//! style as curl and Python `requests` send it, the allowed handler seeing `Authorized`, denials
//! answered with the policy's status and JSON body before the handler runs.

#[path = "support/client.rs"]
mod client;
#[path = "../examples/common/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::any;
use axum::Router;
use base64::Engine as _;
use client::{python_requests, raw, Reply};
use keyward::http::{AuthLayer, Authorized};
use keyward::policy::Policy;
use keyward::{Engine, EngineOptions};

async fn echo(auth: Authorized) -> String {
    format!(
        "{} {} {}",
        auth.allow.role, auth.target.action, auth.target.resource
    )
}

struct Api {
    /// Keeps the server running until the test ends.
    _rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    secrets: HashMap<String, String>,
}

/// An axum app with one catch-all handler behind `AuthLayer`, under `product`'s policy.
fn api(product: &str, public: bool) -> Api {
    let path = format!("{}/policies/{product}.policy", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("policy");
    let engine = Engine::temporary(
        Policy::parse(&path, &text).expect("policy checks"),
        EngineOptions::default(),
    )
    .expect("engine");
    let secrets = fixtures::install(&engine, product)
        .expect("fixtures")
        .into_iter()
        .collect();
    let mut layer = AuthLayer::new(Arc::new(engine));
    if public {
        layer = layer.pass_unmatched();
    }
    let app = Router::new()
        .route("/public", any(|| async { "public" }))
        .route("/{*rest}", any(echo))
        .layer(layer);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move { axum::serve(listener, app).await });
    Api {
        _rt: rt,
        addr,
        secrets,
    }
}

impl Api {
    fn s(&self, k: &str) -> &str {
        &self.secrets[k]
    }

    /// The bytes curl sends for `curl [-X METHOD] http://ADDR/URI` plus headers.
    fn curl_bytes(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut head = format!(
            "{method} {uri} HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n",
            self.addr
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        raw(self.addr, head.as_bytes())
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[test]
fn seed_platform_behind_the_layer() {
    let a = api("seed-platform", true);
    let auth = basic(a.s("SEED_EMAIL"), a.s("SEED_KEY"));
    let r = a.curl_bytes(
        "POST",
        "/api/v3/cycles/?organization_id=6",
        &[("Authorization", &auth)],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "member create organization:6"),
        "{r:?}"
    );
    let r = a.curl_bytes(
        "GET",
        "/api/v3/organizations/6/",
        &[("Authorization", a.s("SEED_DOC_HEADER"))],
    );
    assert_eq!(r.status, 200, "the seed document's own header: {r:?}");
    let r = a.curl_bytes(
        "GET",
        "/api/v3/organizations/6/",
        &[("Authorization", &basic(a.s("SEED_EMAIL"), "nope"))],
    );
    assert_eq!((r.status, r.header("location")), (302, Some("/app/login")));
    assert!(r.body.contains("\"status\":\"error\""));
    let r = a.curl_bytes(
        "GET",
        "/api/v3/organizations/7/",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 403);
    // Unlisted paths pass through unchecked with `pass_unmatched`.
    assert_eq!(a.curl_bytes("GET", "/public", &[]).body, "public");
    let url = format!("http://{}/api/v3/organizations/6/", a.addr);
    if let Some(r) = python_requests(&url, Some((a.s("SEED_EMAIL"), a.s("SEED_KEY"))), &[]) {
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "member view organization:6"),
            "{r:?}"
        );
    }
    let plain = vec![(
        "Authorization".to_string(),
        a.s("SEED_DOC_HEADER").to_string(),
    )];
    if let Some(r) = python_requests(&url, None, &plain) {
        assert_eq!(r.status, 200, "requests with a plain header: {r:?}");
    }
}

#[test]
fn seatsio_behind_the_layer() {
    let a = api("seatsio", false);
    let url = format!("http://{}/events/concert", a.addr);
    if let Some(r) = client::curl(&url, Some(&format!("{}:", a.s("WS_SECRET"))), &[]) {
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "workspace_key view event:concert"),
            "curl -u KEY: {r:?}"
        );
    }
    if let Some(r) = python_requests(
        &url,
        Some((a.s("ADMIN_SECRET"), "")),
        &[("X-Workspace-Key".into(), a.s("WS2_PUBLIC").into())],
    ) {
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "company_admin view event:concert"),
            "{r:?}"
        );
    }
    let r = a.curl_bytes(
        "GET",
        "/events/concert",
        &[("Authorization", &basic(a.s("WS_SECRET"), ""))],
    );
    assert_eq!(r.status, 200);
    // Deny by default: no route, no handler.
    let r = a.curl_bytes(
        "GET",
        "/workspaces",
        &[("Authorization", &basic(a.s("WS_SECRET"), ""))],
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("no_route"));
}

#[test]
fn api_tokens_and_cognitive3d_behind_the_layer() {
    let a = api("api-token", false);
    let uri = "/api/environments/prod/projects/web/reports";
    let r = a.curl_bytes(
        "GET",
        uri,
        &[(
            "Authorization",
            &format!("apiToken {}", a.s("TOKEN_REPORTS")),
        )],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "developer read_reports environment:prod/project:web")
    );
    let r = a.curl_bytes(
        "GET",
        &format!("{uri}?apiToken={}", a.s("TOKEN_REPORTS")),
        &[],
    );
    assert_eq!(r.status, 200, "query form: {r:?}");
    let r = a.curl_bytes(
        "POST",
        "/api/environments/prod/projects/web/jobs",
        &[(
            "Authorization",
            &format!("apiToken {}", a.s("TOKEN_REPORTS")),
        )],
    );
    assert_eq!(r.status, 403);

    let c = api("cognitive3d", false);
    let scene = "/v0/organizations/6/projects/3/scenes/1";
    let r = c.curl_bytes(
        "GET",
        scene,
        &[(
            "Authorization",
            &format!("APIKEY:ORGANIZATION {}", c.s("C3D_OBSERVER_KEY")),
        )],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let url = format!("http://{}{scene}", c.addr);
    if let Some(r) = python_requests(
        &url,
        None,
        &[("Authorization".into(), c.s("C3D_MEMBER_KEY").into())],
    ) {
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "project_member view organization:6/project:3/scene:1"),
            "{r:?}"
        );
    }
    let r = c.curl_bytes("PUT", scene, &[("Authorization", c.s("C3D_OBSERVER_KEY"))]);
    assert_eq!(r.status, 403);
}
