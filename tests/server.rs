//! `keyward serve` over real loopback sockets: every credential style of the four seed products, sent
//! as the bytes curl and Python `requests` send (and by curl and `requests` themselves when they are
//! installed); the nginx, Traefik and Envoy conventions; reloads; limits; `/healthz`, `/metrics`;
//! graceful shutdown.

#[path = "support/client.rs"]
mod client;
#[path = "../examples/common/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use client::{python_requests, raw, Reply};
use keyward::http::metrics::Outcome;
use keyward::http::server::{ServeOptions, Server};
use keyward::{Engine, EngineOptions};

struct TestServer {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    addr: SocketAddr,
    secrets: HashMap<String, String>,
    policy: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start(product: &str, tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join(format!("{product}.policy"));
        let src = format!("{}/policies/{product}.policy", env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(src, &policy).expect("copy policy");
        let engine = Engine::open_files(dir.path().join("db"), &policy, EngineOptions::default())
            .expect("engine");
        let secrets = fixtures::install(&engine, product)
            .expect("fixtures")
            .into_iter()
            .collect();
        let mut opts = ServeOptions::new(
            dir.path().join("db"),
            &policy,
            "127.0.0.1:0".parse().expect("addr"),
        );
        opts.watch_interval = None;
        opts.reload_on_sighup = false;
        tweak(&mut opts);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt
            .block_on(Server::bind_with_engine(Arc::new(engine), opts))
            .expect("server starts");
        let addr = server.local_addr();
        TestServer {
            rt,
            server: Some(server),
            addr,
            secrets,
            policy,
            _dir: dir,
        }
    }

    fn s(&self, name: &str) -> &str {
        &self.secrets[name]
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// `GET /auth` (or `endpoint`) about `method uri`, with extra header lines, as curl sends it.
    fn ask(&self, endpoint: &str, method: &str, uri: &str, extra: &[(&str, &str)]) -> Reply {
        let mut head = format!(
            "GET {endpoint} HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\
             X-Original-Method: {method}\r\nX-Original-URI: {uri}\r\n",
            self.addr
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        raw(self.addr, head.as_bytes())
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown()).expect("graceful shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn basic_urlsafe(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::URL_SAFE.encode(format!("{user}:{pass}"))
    )
}

#[test]
fn seed_platform_email_and_key_in_basic() {
    let t = TestServer::start("seed-platform", |_| {});
    let (email, key) = (t.s("SEED_EMAIL"), t.s("SEED_KEY"));
    let requests = basic(email, key); // HTTPBasicAuth(email, key)
    let doc = t.s("SEED_DOC_HEADER").to_string(); // urlsafe_b64encode, as the seed's own example
    let viewer = basic(t.s("SEED_VIEWER_EMAIL"), t.s("SEED_VIEWER_KEY"));
    let me = format!("/api/v3/users/{}/", t.s("SEED_USER_ID"));
    let rows: &[(&str, &str, &str, u16, &str)] = &[
        (&doc, "GET", "/api/v3/organizations/6/", 200, "member"),
        (
            &requests,
            "POST",
            "/api/v3/cycles/?organization_id=6",
            200,
            "member",
        ),
        (
            &requests,
            "GET",
            "/api/v3/properties/9/?organization_id=6&cycle_id=2",
            200,
            "member",
        ),
        (&requests, "GET", &me, 200, "self"),
        (
            &requests,
            "POST",
            "/api/v3/cycles/?organization_id=7",
            403,
            "no_role",
        ),
        (
            &requests,
            "PUT",
            "/api/v3/organizations/6/users/3/role/",
            403,
            "no_role",
        ),
        (
            &viewer,
            "GET",
            "/api/v3/cycles/?organization_id=6",
            200,
            "viewer",
        ),
        (
            &viewer,
            "POST",
            "/api/v3/cycles/?organization_id=6",
            403,
            "no_role",
        ),
        (
            &requests,
            "GET",
            "/api/v3/cycles/",
            400,
            "missing_parameter",
        ),
        (
            &requests,
            "GET",
            "/api/v3/organizations/6/../7/",
            400,
            "invalid_path",
        ),
        (&requests, "GET", "/api/v3/nothing/", 403, "no_route"),
    ];
    for (auth, method, uri, status, what) in rows {
        let r = t.ask("/auth", method, uri, &[("Authorization", auth)]);
        assert_eq!(r.status, *status, "{method} {uri}: {r:?}");
        if *status == 200 {
            assert_eq!(r.header("x-keyward-role"), Some(*what), "{method} {uri}");
            assert!(r
                .header("x-keyward-key")
                .is_some_and(|k| k.parse::<u64>().is_ok()));
            if *auth == requests.as_str() || *auth == doc.as_str() {
                assert_eq!(r.header("x-keyward-principal"), Some(t.s("SEED_USER_ID")));
            }
            // Scope, action and resource only with `detail_headers`.
            assert_eq!(r.header("x-keyward-action"), None);
            assert_eq!(r.header("x-keyward-scope"), None);
            // The answer is built in the request's header map: none of the request's headers
            // (the credential least of all) may come back with it.
            for asked in [
                "authorization",
                "x-original-method",
                "x-original-uri",
                "host",
            ] {
                assert_eq!(r.header(asked), None, "{asked} in the answer to {uri}");
            }
        } else {
            assert!(r.body.contains(&format!("\"code\":\"{what}\"")), "{r:?}");
        }
    }
    // A wrong key: the policy's redirect to the login page, with the JSON error body.
    let wrong = basic(email, "0000000000000000000000000000000000000000");
    let r = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6/",
        &[("Authorization", &wrong)],
    );
    assert_eq!((r.status, r.header("location")), (302, Some("/app/login")));
    assert!(r.body.contains("\"status\":\"error\""));
    // An email containing `~` or `?`: URL-safe alphabet accepted too (covered in the engine); here
    // the SEED document's own header and requests' standard alphabet both reached 200 above.
    let _ = basic_urlsafe;

    // Real clients, when installed.
    let url = format!("http://{}/auth", t.addr);
    let hdr = |m: &str, u: &str| {
        vec![
            ("X-Original-Method".to_string(), m.to_string()),
            ("X-Original-URI".to_string(), u.to_string()),
        ]
    };
    if let Some(r) = python_requests(
        &url,
        Some((email, key)),
        &hdr("POST", "/api/v3/cycles/?organization_id=6"),
    ) {
        assert_eq!(r.status, 200, "requests HTTPBasicAuth: {r:?}");
        assert_eq!(r.header("x-keyward-role"), Some("member"));
    }
    let mut plain = hdr("GET", "/api/v3/organizations/6/");
    plain.push(("Authorization".into(), doc.clone()));
    if let Some(r) = python_requests(&url, None, &plain) {
        assert_eq!(r.status, 200, "requests with the plain header: {r:?}");
    }
    if let Some(r) = client::curl(
        &url,
        Some(&format!("{email}:{key}")),
        &hdr("GET", "/api/v3/organizations/6/"),
    ) {
        assert_eq!(r.status, 200, "curl -u email:key: {r:?}");
    }
}

#[test]
fn seatsio_secret_key_as_basic_username() {
    let t = TestServer::start("seatsio", |o| o.detail_headers = true);
    let ws = t.s("WS_SECRET").to_string();
    let admin = t.s("ADMIN_SECRET").to_string();
    // The exact header from the seed document, and curl -u KEY: (the same bytes).
    let doc = "Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg==";
    assert_eq!(basic(&ws, ""), doc);
    let r = t.ask(
        "/auth",
        "POST",
        "/events/concert/actions/book",
        &[("Authorization", doc)],
    );
    assert_eq!(
        (r.status, r.header("x-keyward-role")),
        (200, Some("workspace_key")),
        "{r:?}"
    );
    assert_eq!(r.header("x-keyward-workspace"), Some("pub-ws-1"));
    assert_eq!(r.header("x-keyward-resource"), Some("event:concert"));
    // The company admin key on another workspace, chosen by its public key.
    let a = basic(&admin, "");
    let r = t.ask(
        "/auth",
        "DELETE",
        "/events/concert",
        &[("Authorization", &a), ("X-Workspace-Key", "pub-ws-2")],
    );
    assert_eq!(
        (r.status, r.header("x-keyward-workspace")),
        (200, Some("pub-ws-2")),
        "{r:?}"
    );
    assert_eq!(r.header("x-keyward-role"), Some("company_admin"));
    // A workspace key may not choose a workspace.
    let r = t.ask(
        "/auth",
        "GET",
        "/events/concert",
        &[("Authorization", doc), ("X-Workspace-Key", "pub-ws-2")],
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("workspace_header_needs_admin_key"), "{r:?}");
    let r = t.ask("/auth", "GET", "/events/concert", &[]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("no_credential"));

    let url = format!("http://{}/auth", t.addr);
    let hdr = vec![
        ("X-Original-Method".to_string(), "POST".to_string()),
        (
            "X-Original-URI".to_string(),
            "/events/concert/actions/release".to_string(),
        ),
    ];
    if let Some(r) = python_requests(&url, Some((&ws, "")), &hdr) {
        assert_eq!(r.status, 200, "requests auth=(secret, ''): {r:?}");
    }
    if let Some(r) = client::curl(&url, Some(&format!("{ws}:")), &hdr) {
        assert_eq!(r.status, 200, "curl -u KEY: {r:?}");
    }
}

#[test]
fn api_tokens_in_the_header_and_the_query() {
    let t = TestServer::start("api-token", |_| {});
    let reports = format!("apiToken {}", t.s("TOKEN_REPORTS"));
    let full = format!("apiToken {}", t.s("TOKEN_FULL"));
    let base = "/api/environments/prod/projects/web";
    let rows: &[(&str, &str, String, u16)] = &[
        (&reports, "GET", format!("{base}/reports"), 200),
        (&reports, "GET", format!("{base}/data"), 403),
        (&full, "POST", format!("{base}/jobs"), 200),
        (
            &full,
            "GET",
            format!("/api/users/{}/tokens", t.s("DEV_ID")),
            200,
        ),
        (&full, "GET", "/api/environments/prod/tokens".into(), 403),
    ];
    for (auth, method, uri, status) in rows {
        let r = t.ask("/auth", method, uri, &[("Authorization", auth)]);
        assert_eq!(r.status, *status, "{method} {uri}: {r:?}");
    }
    // The query form, which this policy enables: the key travels in the original URI.
    let uri = format!("{base}/reports?apiToken={}&page=2", t.s("TOKEN_REPORTS"));
    let r = t.ask("/auth", "GET", &uri, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    // A header the server has seen (and remembers) with a key in the query as well: two
    // credentials, refused every time, never answered from what the header alone gave.
    let uri = format!("{base}/reports?apiToken={}", t.s("TOKEN_FULL"));
    for _ in 0..3 {
        let r = t.ask("/auth", "GET", &uri, &[("Authorization", &reports)]);
        assert_eq!(r.status, 401, "{r:?}");
    }
    let url = format!("http://{}/auth", t.addr);
    let hdr = vec![
        ("X-Original-Method".to_string(), "GET".to_string()),
        ("X-Original-URI".to_string(), format!("{base}/reports")),
        ("Authorization".to_string(), reports.clone()),
    ];
    if let Some(r) = python_requests(&url, None, &hdr) {
        assert_eq!(r.status, 200, "requests with a plain header: {r:?}");
    }
}

#[test]
fn cognitive3d_apikey_organization_and_raw_keys() {
    let t = TestServer::start("cognitive3d", |_| {});
    let admin = format!("APIKEY:ORGANIZATION {}", t.s("C3D_ADMIN_KEY"));
    let member = t.s("C3D_MEMBER_KEY").to_string(); // the whole header, as the Python client sends it
    let observer = t.s("C3D_OBSERVER_KEY").to_string();
    let scene = "/v0/organizations/6/projects/3/scenes/1";
    let rows: &[(&str, &str, String, u16, &str)] = &[
        (
            &admin,
            "PUT",
            "/v0/organizations/6".into(),
            200,
            "org_admin",
        ),
        (
            &admin,
            "GET",
            "/v0/organizations/7".into(),
            403,
            "outside_key_scope",
        ),
        (&member, "PUT", scene.into(), 200, "project_member"),
        (
            &member,
            "POST",
            format!("{scene}/media"),
            200,
            "project_member",
        ),
        (
            &member,
            "GET",
            "/v0/organizations/6/projects/4".into(),
            403,
            "no_role",
        ),
        (
            &member,
            "DELETE",
            format!("{scene}/sessions/5"),
            403,
            "deny_rule",
        ),
        (
            &observer,
            "GET",
            format!("{scene}/sessions"),
            200,
            "org_observer",
        ),
        (&observer, "PUT", scene.into(), 403, "read_only_key"),
        // Keys reach one organization and beneath it: not even the owner's own account.
        (
            &admin,
            "GET",
            format!("/v0/users/{}", t.s("C3D_ADMIN_ID")),
            403,
            "outside_key_scope",
        ),
    ];
    for (auth, method, uri, status, what) in rows {
        let r = t.ask("/auth", method, uri, &[("Authorization", auth)]);
        assert_eq!(r.status, *status, "{method} {uri}: {r:?}");
        if *status == 200 {
            assert_eq!(r.header("x-keyward-role"), Some(*what));
        } else {
            assert!(r.body.contains(what), "{r:?}");
        }
    }
    let url = format!("http://{}/auth", t.addr);
    let hdr = vec![
        ("X-Original-Method".to_string(), "PUT".to_string()),
        ("X-Original-URI".to_string(), scene.to_string()),
        ("Authorization".to_string(), member.clone()),
    ];
    if let Some(r) = python_requests(&url, None, &hdr) {
        assert_eq!(
            r.status, 200,
            "requests with the raw key as the header: {r:?}"
        );
    }
}

#[test]
fn nginx_traefik_and_envoy_conventions() {
    let t = TestServer::start("seed-platform", |o| {
        o.envoy_prefix = Some("/ext_authz".into());
        o.detail_headers = true;
    });
    let good = basic(t.s("SEED_EMAIL"), t.s("SEED_KEY"));
    let wrong = basic(
        t.s("SEED_EMAIL"),
        "ffffffffffffffffffffffffffffffffffffffff",
    );
    // nginx auth_request: only 401 or 403, the policy's answer in X-Keyward-* for error_page ...
    let r = t.ask(
        "/auth/nginx",
        "GET",
        "/api/v3/organizations/6",
        &[("Authorization", &wrong)],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-keyward-status"), Some("302"));
    assert_eq!(r.header("x-keyward-location"), Some("/app/login"));
    let r = t.ask(
        "/auth/nginx",
        "GET",
        "/api/v3/organizations/6/../7",
        &[("Authorization", &good)],
    );
    assert_eq!((r.status, r.header("x-keyward-status")), (403, Some("400")));
    // ... which re-renders it in full, without counting the decision twice.
    let before = t.server().metrics().count(Outcome::Deny("unknown_key"));
    let r = t.ask(
        "/auth/nginx/deny",
        "GET",
        "/api/v3/organizations/6",
        &[("Authorization", &wrong)],
    );
    assert_eq!((r.status, r.header("location")), (302, Some("/app/login")));
    assert_eq!(
        t.server().metrics().count(Outcome::Deny("unknown_key")),
        before
    );
    // Traefik: GET with X-Forwarded-Method / X-Forwarded-Uri.
    let head = format!(
        "GET /auth HTTP/1.1\r\nHost: {}\r\nX-Forwarded-Method: POST\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: api.example\r\nX-Forwarded-Uri: /api/v3/cycles?organization_id=6\r\n\
         X-Forwarded-For: 127.0.0.1\r\nAuthorization: {good}\r\n\r\n",
        t.addr
    );
    let r = raw(t.addr, head.as_bytes());
    assert_eq!(
        (r.status, r.header("x-keyward-action")),
        (200, Some("create")),
        "{r:?}"
    );
    // A client-sent X-Original-URI that disagrees with the proxy's X-Forwarded-Uri is refused.
    let r = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6",
        &[
            ("Authorization", &good),
            ("X-Forwarded-Uri", "/api/v3/organizations/7"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("bad_original_request"));
    let r = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6",
        &[("Authorization", &good), ("X-Forwarded-Method", "DELETE")],
    );
    assert_eq!(r.status, 400);
    // Envoy ext_authz: the original method and path under the prefix.
    let head = format!(
        "PUT /ext_authz/api/v3/organizations/6/?x=1 HTTP/1.1\r\nHost: {}\r\nAuthorization: {good}\r\n\
         Content-Length: 0\r\n\r\n",
        t.addr
    );
    let r = raw(t.addr, head.as_bytes());
    assert_eq!(
        (r.status, r.header("x-keyward-action")),
        (200, Some("update")),
        "{r:?}"
    );
    let head = format!(
        "GET /ext_authz/api/v3/organizations/6 HTTP/1.1\r\nHost: {}\r\n\r\n",
        t.addr
    );
    assert_eq!(
        raw(t.addr, head.as_bytes()).header("location"),
        Some("/app/login")
    );
    // Without any original URI: a clear 400.
    let head = format!(
        "GET /auth HTTP/1.1\r\nHost: {}\r\nAuthorization: {good}\r\n\r\n",
        t.addr
    );
    assert_eq!(raw(t.addr, head.as_bytes()).status, 400);
}

#[test]
fn healthz_metrics_and_graceful_shutdown_flush() {
    let mut t = TestServer::start("seed-platform", |_| {});
    let good = basic(t.s("SEED_EMAIL"), t.s("SEED_KEY"));
    let h = raw(
        t.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", t.addr).as_bytes(),
    );
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    assert_eq!(
        t.ask(
            "/auth",
            "GET",
            "/api/v3/organizations/6",
            &[("Authorization", &good)]
        )
        .status,
        200
    );
    assert_eq!(
        t.ask(
            "/auth",
            "GET",
            "/api/v3/organizations/7",
            &[("Authorization", &good)]
        )
        .status,
        403
    );
    let m = raw(
        t.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", t.addr).as_bytes(),
    );
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "keyward_decisions_total{outcome=\"allow\",reason=\"\"} 1",
        "keyward_decisions_total{outcome=\"deny\",reason=\"no_role\"} 1",
        "keyward_decision_duration_seconds_count 2",
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line} in\n{}", m.body);
    }
    assert!(!m.body.contains(t.s("SEED_KEY")));
    let engine = Arc::clone(t.server().engine());
    t.shutdown();
    let keys = engine.table().list_keys().expect("keys");
    let used = keys
        .iter()
        .find(|k| k.owner.to_string() == t.s("SEED_USER_ID"))
        .expect("key");
    assert!(
        used.last_used.is_some(),
        "shutdown wrote the last-used time"
    );
    assert!(
        TcpStream::connect(t.addr).is_err() || raw_fails(t.addr),
        "no longer serving"
    );
}

fn raw_fails(addr: SocketAddr) -> bool {
    std::panic::catch_unwind(|| raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).is_err()
}

#[test]
fn reload_good_change_in_force_broken_one_refused() {
    let t = TestServer::start("seed-platform", |o| {
        o.watch_interval = Some(Duration::from_millis(50))
    });
    let good = basic(t.s("SEED_EMAIL"), t.s("SEED_KEY"));
    let ask = || {
        t.ask(
            "/auth",
            "DELETE",
            "/api/v3/cycles/2?organization_id=6",
            &[("Authorization", &good)],
        )
    };
    assert_eq!(ask().status, 200);
    let original = std::fs::read_to_string(&t.policy).expect("policy");
    // A good change: members may no longer delete (a deny rule). In force for the next request.
    let changed = format!("{original}\ndeny frozen_cycles: delete on cycle;\n");
    std::fs::write(&t.policy, &changed).expect("write");
    t.server().reload().expect("good policy accepted");
    let r = ask();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("deny_rule"));
    // A broken change: refused, and the last good policy keeps answering.
    std::fs::write(
        &t.policy,
        format!("{changed}\nrole broken at nowhere {{ grant view; }}\n"),
    )
    .expect("write");
    assert!(t.server().reload().is_err());
    assert_eq!(ask().status, 403, "the previous good policy still answers");
    let view = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6",
        &[("Authorization", &good)],
    );
    assert_eq!(view.status, 200);
    // The file watch: back to the original text, picked up without a signal.
    std::fs::write(&t.policy, &original).expect("write");
    let mut waited = 0;
    while ask().status != 200 {
        waited += 1;
        assert!(waited < 100, "the watch reloads the changed file");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = raw(
        t.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", t.addr).as_bytes(),
    );
    assert!(
        m.body
            .contains("keyward_policy_reloads_total{result=\"error\"} 1"),
        "{}",
        m.body
    );
}

#[test]
fn limits_answer_with_clear_statuses() {
    let t = TestServer::start("seed-platform", |o| {
        o.limits.max_header_bytes = 8192;
        o.limits.request_timeout = Duration::from_millis(400);
        o.limits.max_connections = 3;
    });
    // Header too large: 431.
    let big = "a".repeat(20_000);
    let r = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6",
        &[("X-Big", &big)],
    );
    assert_eq!(r.status, 431, "{r:?}");
    // A request head that never finishes: 408 after the request timeout, then closed.
    let mut s = TcpStream::connect(t.addr).expect("connect");
    s.write_all(b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /api")
        .expect("write");
    let r = client::read_reply(&mut s);
    assert_eq!(r.status, 408, "{r:?}");
    // An idle connection is closed silently after the same time (no stray 408 for a keep-alive).
    let mut idle = TcpStream::connect(t.addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert_eq!(
        std::io::Read::read(&mut idle, &mut buf).expect("closed, not timed out"),
        0
    );
    // Connections over the limit: 503 with Retry-After, the others still served.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(t.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = raw(t.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (r.status, r.header("retry-after")),
        (503, Some("1")),
        "{r:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        raw(t.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
}

/// The admin API's refused calls wait in memory; `keyward serve` writes them to the audit log in the
/// background (without anyone reading the log) and what is left at shutdown.
#[cfg(feature = "admin")]
#[test]
fn refused_admin_calls_are_written_in_the_background_and_at_shutdown() {
    use keyward::store::{AuditQuery, Op, PendingDenials};
    let refusals = |e: &Engine| {
        e.table()
            .audit(AuditQuery {
                principal: None,
                limit: 100,
                before: None,
            })
            .expect("audit")
            .into_iter()
            .filter(|e| matches!(e.op, Op::AccessDenied { .. }))
            .count()
    };
    let refuse = |addr| {
        raw(
            addr,
            b"GET /keyward/v1/principals HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .status
    };

    let t = TestServer::start("seed-platform", |o| {
        o.refusal_write_interval = Some(Duration::from_millis(50))
    });
    let e = Arc::clone(t.server().engine());
    assert_eq!(refuse(t.addr), 401);
    // The refusal may be queued just after the answer went out: wait for it in the log itself.
    let mut waited = 0;
    while refusals(&e) == 0 {
        waited += 1;
        assert!(waited < 100, "the background task writes the queue");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(refusals(&e), 1);
    assert_eq!(e.table().pending_denials(), PendingDenials::default());

    let mut t = TestServer::start("seed-platform", |o| o.refusal_write_interval = None);
    let e = Arc::clone(t.server().engine());
    assert_eq!(refuse(t.addr), 401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(e.table().pending_denials().queued, 1, "no background task");
    t.shutdown();
    assert_eq!(e.table().pending_denials(), PendingDenials::default());
    assert_eq!(refusals(&e), 1);
}

/// Last-used times are written in the background while serving, not only at shutdown.
#[test]
fn last_used_times_are_written_while_serving() {
    let t = TestServer::start("seed-platform", |o| {
        o.last_used_write_interval = Some(Duration::from_millis(50))
    });
    let good = basic(t.s("SEED_EMAIL"), t.s("SEED_KEY"));
    let r = t.ask(
        "/auth",
        "GET",
        "/api/v3/organizations/6",
        &[("Authorization", &good)],
    );
    assert_eq!(r.status, 200);
    let engine = Arc::clone(t.server().engine());
    let used = || {
        engine
            .table()
            .list_keys()
            .expect("keys")
            .iter()
            .find(|k| k.owner.to_string() == t.s("SEED_USER_ID"))
            .and_then(|k| k.last_used)
    };
    let mut waited = 0;
    while used().is_none() {
        waited += 1;
        assert!(waited < 100, "the background task writes last-used times");
        std::thread::sleep(Duration::from_millis(50));
    }
}
