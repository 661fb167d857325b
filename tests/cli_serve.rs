//! `keyward serve` as a process: it starts, answers forward-auth and admin requests, refuses a
//! broken policy or bad options with one clear line, and stops gracefully on SIGTERM.
#![cfg(all(unix, feature = "cli"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

fn policy(name: &str) -> String {
    format!("{}/policies/{name}.policy", env!("CARGO_MANIFEST_DIR"))
}

fn keyward(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run keyward")
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let db = db.to_str().expect("utf-8 path");
    let p = policy("api-token");
    assert!(
        keyward(&["principal", "add", "--db", db, "admin@env.example"])
            .status
            .success()
    );
    assert!(keyward(&[
        "bind",
        "--db",
        db,
        "admin@env.example",
        "env_admin",
        "environment:prod"
    ])
    .status
    .success());
    let out = keyward(&[
        "key",
        "create",
        "--db",
        db,
        "--owner",
        "admin@env.example",
        "--name",
        "t",
        "--policy",
        &p,
        "--json",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let secret = json["secret"].as_str().expect("secret").to_string();

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--db",
            db,
            "--policy",
            &p,
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("serve prints its address")
            .expect("line");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.trim().parse().expect("address");
        }
    };
    let token = format!("apiToken {secret}");
    let (status, _) = get(addr, "/healthz", &[]);
    assert_eq!(status, 200);
    let (status, body) = get(
        addr,
        "/auth",
        &[
            ("Authorization", &token),
            ("X-Forwarded-Method", "GET"),
            (
                "X-Forwarded-Uri",
                "/api/environments/prod/projects/web/data",
            ),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_lowercase().contains("x-keyward-role: env_admin"),
        "{body}"
    );
    assert!(!body.contains(&secret));
    let (status, body) = get(
        addr,
        "/auth",
        &[
            ("X-Forwarded-Method", "GET"),
            (
                "X-Forwarded-Uri",
                "/api/environments/prod/projects/web/data",
            ),
        ],
    );
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(addr, "/keyward/v1/whoami", &[("Authorization", &token)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("admin@env.example"));
    // Decision lines come out while the server runs, not only at shutdown: an idle worker hands
    // over the lines it staged.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut rest = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rest
        .iter()
        .any(|l: &String| l.contains("keyward::decision: outcome=deny "))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => rest.push(line),
            Err(e) => panic!("no decision line while serving ({e}): {rest:?}"),
        }
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    reader.join().expect("reader");
    rest.extend(rx.try_iter());
    let log = rest.join("\n");
    assert!(!log.contains(&secret), "the log never holds a key");
    assert!(!log.contains("apiToken"), "nor the Authorization header");
    // One logfmt line per decision, with who, what and why.
    let decision = |outcome: &str| {
        rest.iter()
            .find(|l| l.contains(&format!("keyward::decision: outcome={outcome} ")))
            .unwrap_or_else(|| panic!("no {outcome} line in\n{log}"))
    };
    let allow = decision("allow");
    for field in [
        "principal=1 ",
        "key=1 ",
        "role=env_admin ",
        "action=read_data ",
        "resource=environment:prod/project:web ",
        "method=GET ",
        "path=/api/environments/prod/projects/web/data ",
        "style=api_token ",
        "micros=",
    ] {
        assert!(allow.contains(field), "{field} in {allow}");
    }
    let deny = decision("deny");
    for field in ["reason=no_credential ", "status=401 ", "method=GET "] {
        assert!(deny.contains(field), "{field} in {deny}");
    }
}

#[test]
fn serve_refuses_bad_input_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let db = db.to_str().expect("utf-8 path");
    let broken = dir.path().join("broken.policy");
    std::fs::write(&broken, "scope a;\nrole x at nowhere { grant *; }\n").expect("write");
    let p = policy("api-token");
    let rows: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "serve",
                "--db",
                db,
                "--policy",
                broken.to_str().expect("utf-8"),
            ],
            "error: policy",
        ),
        (
            vec![
                "serve",
                "--db",
                db,
                "--policy",
                &p,
                "--admin-prefix",
                "auth",
            ],
            "admin API prefix",
        ),
        (
            vec!["serve", "--db", db, "--policy", &p, "--listen", "nonsense"],
            "invalid value",
        ),
        (
            vec![
                "serve",
                "--db",
                db,
                "--policy",
                &p,
                "--original-uri-header",
                "bad header",
            ],
            "is not a header name",
        ),
        (
            vec![
                "serve",
                "--db",
                db,
                "--policy",
                &p,
                "--request-timeout",
                "0",
            ],
            "--request-timeout",
        ),
    ];
    for (args, want) in rows {
        let out = keyward(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
