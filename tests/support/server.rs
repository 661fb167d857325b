//! A loopback server for the admin API tests and a minimal blocking HTTP/1.1 client, so the tests
//! can send anything (bad JSON, huge bodies, odd methods) and read exactly what came back.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use keyward::policy::Policy;
use keyward::store::{Actor, KeyTable, NewKey, NewPrincipal, PrincipalKind};
use keyward::token::Secret;
use keyward::{Engine, EngineOptions};

/// An engine over a policy text and a temporary key table.
pub fn engine_from(name: &str, text: &str) -> Arc<Engine> {
    let policy = Policy::parse(name, text).expect("policy checks");
    Arc::new(Engine::temporary(policy, EngineOptions::default()).expect("engine"))
}

/// An engine over `policies/NAME.policy`.
pub fn bundled(name: &str) -> Arc<Engine> {
    let path = format!("{}/policies/{name}.policy", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("bundled policy");
    engine_from(&path, &text)
}

/// Serves `app` on 127.0.0.1:0 from a background runtime; returns the address. The server lives
/// until the test process ends.
pub fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

/// The admin API over `engine`, mounted under `/keyward/v1` as `keyward serve` does.
pub fn serve_admin(engine: Arc<Engine>) -> SocketAddr {
    serve(axum::Router::new().nest("/keyward/v1", keyward::http::admin::router(engine)))
}

/// The caller of the CLI's `--server` runs: `root@example.com` (principal 1), `env_admin` at
/// `environment:1` under policies/api-token.policy, with key 1 `root`. The CLI's tests seed their
/// `--db` tables the same way, so ids and listings agree between the two modes. Returns the secret.
pub fn seed_cli_caller(t: &KeyTable) -> Secret {
    let p = t
        .add_principal(
            Actor::System,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "root@example.com".into(),
                default_workspace: None,
            },
        )
        .expect("root");
    t.bind(Actor::System, p.id, "env_admin", "environment:1")
        .expect("bind");
    t.create_key(Actor::System, NewKey::new(p.id, "root"))
        .expect("key")
        .1
}

/// `keyward serve`'s admin API over a new table in `dir` (policies/api-token.policy), seeded by
/// [`seed_cli_caller`]. Returns the `--server` URL and the caller's `Authorization` value, which
/// the CLI takes from `KEYWARD_AUTHORIZATION` (never from its arguments).
pub fn serve_cli_table(dir: &std::path::Path) -> (String, String) {
    let policy = format!("{}/policies/api-token.policy", env!("CARGO_MANIFEST_DIR"));
    let engine =
        Arc::new(Engine::open_files(dir, policy, EngineOptions::default()).expect("engine"));
    let secret = seed_cli_caller(engine.table());
    let addr = serve_admin(engine);
    (
        format!("http://{addr}/keyward/v1"),
        format!("apiToken {}", secret.expose()),
    )
}

/// A response: status, headers (lowercased names), body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error answer: status, `status: error`, the code, and JSON content type.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["status"], "error", "{}", self.body);
        assert_eq!(v["code"], code, "{}", self.body);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(self.header("content-type"), Some("application/json"));
        self
    }
}

/// Sends one request on a fresh connection. `headers` are `(name, value)`.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write head");
    if let Some(b) = body {
        // The server may answer 413 and close before reading everything.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A client with one credential header.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub prefix: String,
    pub auth: Option<(String, String)>,
}

impl Client {
    pub fn new(addr: SocketAddr, auth: Option<(&str, &str)>) -> Client {
        Client {
            addr,
            prefix: "/keyward/v1".into(),
            auth: auth.map(|(k, v)| (k.to_owned(), v.to_owned())),
        }
    }

    /// A client whose key goes as `Authorization: apiToken KEY` (the api-token policy's style).
    pub fn api_token(addr: SocketAddr, key: &str) -> Client {
        Client::new(addr, Some(("Authorization", &format!("apiToken {key}"))))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Resp {
        let b = body.map(|v| v.to_string());
        self.raw(method, path, b.as_deref().map(str::as_bytes))
    }

    pub fn raw(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        let headers: Vec<(&str, &str)> = self
            .auth
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(
            self.addr,
            method,
            &format!("{}{path}", self.prefix),
            &headers,
            body,
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> Resp {
        self.call("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None)
    }
}
