//! What only `--server URL` has: the caller's credential (from the environment or `--key-file`,
//! never from the command line), a server that cannot be reached, loopback-only URLs, and a caller
//! the policy refuses. The table commands' rows themselves run with `--db` and with `--server` from
//! one table, in tests/cli.rs. The server is the admin API as `keyward serve` mounts it, over a
//! table seeded with `root@example.com`, env_admin at `environment:1` under
//! policies/api-token.policy.
#![cfg(feature = "cli")]

#[path = "support/server.rs"]
mod server;

use assert_cmd::Command;
use keyward::store::{Actor, KeyTable};

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// Runs `keyward ARGS --server URL` with only the given credential variables; returns the exit
/// code, stdout and stderr.
fn run(url: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).args(["--server", url]);
    cmd.env_remove("KEYWARD_KEY")
        .env_remove("KEYWARD_AUTHORIZATION");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run keyward");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn server_mode_credentials_and_refusals() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, root) = server::serve_cli_table(&tmp.path().join("db"));
    let run = |args: &[&str], env: &[(&str, &str)]| run(&url, args, env);

    let (code, _, err) = run(&["principal", "list"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("error: --server needs the caller's key"),
        "{err}"
    );
    // KEYWARD_KEY goes as a Bearer token, which api-token.policy does not accept.
    let (code, _, err) = run(&["principal", "list"], &[("KEYWARD_KEY", "kw_nope")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the server refused") && err.contains("unknown_scheme"),
        "{err}"
    );
    let (code, out, _) = run(&["principal", "list"], &[("KEYWARD_AUTHORIZATION", &root)]);
    assert_eq!(code, Some(0));
    assert!(out.contains("root@example.com"), "{out}");
    // --key-file: a file that cannot be read, and one that is empty.
    let missing = tmp.path().join("none").display().to_string();
    let (code, _, err) = run(&["principal", "list", "--key-file", &missing], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read key file"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let empty = empty.display().to_string();
    let (code, _, err) = run(&["principal", "list", "--key-file", &empty], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is empty"), "{err}");

    // Only loopback URLs get a credential.
    let o = Command::new(BIN)
        .args([
            "principal",
            "list",
            "--server",
            "http://192.0.2.1:8080/keyward/v1",
        ])
        .env("KEYWARD_KEY", "kw_x")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a loopback http:// URL"));
    // --db and --server exclude each other; `authorize` has no --server mode.
    let o = Command::new(BIN)
        .args(["principal", "list", "--db", "x", "--server", &url])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
}

/// Refused admin calls show in `keyward audit`: with `--server` (the API writes the queued refusals
/// before reading the log) and with `--db` (written when the table that queued them was closed).
#[test]
fn refused_calls_show_in_audit_with_db_and_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, root) = server::serve_cli_table(&tmp.path().join("db"));
    let as_root = [("KEYWARD_AUTHORIZATION", root.as_str())];
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("server address");
    server::send(
        addr,
        "GET",
        "/keyward/v1/principals?apiToken=kw_x",
        &[],
        None,
    )
    .error(401, "malformed_key");
    let (code, out, err) = run(&url, &["audit", "--limit", "5"], &as_root);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("denied"))
        .unwrap_or_else(|| panic!("no refusal in\n{out}"));
    assert!(line.contains("anonymous"), "{line}");
    assert!(
        line.contains("denied GET /keyward/v1/principals: 401 malformed_key"),
        "{line}"
    );
    let (_, out, _) = run(&url, &["audit", "--json"], &as_root);
    assert!(out.contains("\"op\": \"access_denied\""), "{out}");
    assert!(
        out.contains("\"path\": \"/keyward/v1/principals\""),
        "{out}"
    );
    assert!(!out.contains("kw_x"), "{out}");

    let db = tmp.path().join("local");
    {
        let t = KeyTable::open(&db, Default::default()).expect("open");
        server::seed_cli_caller(&t);
        t.record_denial(keyward::store::NewDenial {
            actor: Actor::Principal(1),
            status: 403,
            code: "no_role",
            method: "POST",
            path: "/keyward/v1/principals",
            key: Some(1),
        });
    }
    let audit = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("audit").arg("--db").arg(&db);
        if json {
            cmd.arg("--json");
        }
        let o = cmd.output().expect("run keyward");
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = audit(false);
    let line = out
        .lines()
        .find(|l| l.contains("denied"))
        .unwrap_or_else(|| panic!("no refusal in\n{out}"));
    assert!(line.contains("principal 1"), "{line}");
    assert!(
        line.contains("denied POST /keyward/v1/principals: 403 no_role (key 1)"),
        "{line}"
    );
    assert!(audit(true).contains("\"code\": \"no_role\""));
}

#[test]
fn an_unreachable_server_is_one_error_line() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/keyward/v1");
    let (code, out, err) = run(&url, &["key", "list"], &[("KEYWARD_KEY", "kw_x")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with(&format!("error: cannot reach `{url}`")) && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_caller_without_the_manage_action_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, root) = server::serve_cli_table(&tmp.path().join("db"));
    let as_root = [("KEYWARD_AUTHORIZATION", root.as_str())];
    // root makes a developer with a key of its own.
    for args in [
        &["principal", "add", "dev@example.com"][..],
        &[
            "bind",
            "dev@example.com",
            "developer",
            "environment:1/project:3",
        ],
    ] {
        let (code, _, err) = run(&url, args, &as_root);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    let (code, out, err) = run(
        &url,
        &[
            "key",
            "create",
            "--owner",
            "dev@example.com",
            "--name",
            "k",
            "--json",
        ],
        &as_root,
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let dev = format!("apiToken {}", v["secret"].as_str().expect("secret"));
    let as_dev = [("KEYWARD_AUTHORIZATION", dev.as_str())];

    // Administration is refused with the policy's reason, exit 2.
    for args in [
        &["principal", "add", "eve@example.com"][..],
        &["audit"],
        &["bind", "dev@example.com", "env_admin", "environment:1"],
    ] {
        let (code, out, err) = run(&url, args, &as_dev);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(
            err.starts_with("error: the server refused: ") && err.contains("(no_role)"),
            "{args:?}: {err}"
        );
    }
    // Others' keys are not found rather than refused, so their ids and logins do not leak.
    let (code, _, err) = run(&url, &["key", "rename", "1", "x"], &as_dev);
    assert_eq!(code, Some(2));
    assert!(err.contains("error: no key 1"), "{err}");
    // Its own keys fall under the policy's self rule, but a key root made for it is confined to
    // root's scope, `environment:1`, so it cannot act on its account (`user:2`) with it.
    let (code, _, err) = run(
        &url,
        &[
            "key",
            "create",
            "--owner",
            "dev@example.com",
            "--name",
            "mine",
        ],
        &as_dev,
    );
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("error: the server refused: ") && err.contains("(outside_key_scope)"),
        "{err}"
    );
}

/// Options only `--db` has a use for are refused with `--server`: one error line, exit 2, before
/// anything is sent (the URL is a loopback port nobody listens on, so sending would fail otherwise).
/// `--policy` on the commands that generate a key (the server's policy decides the prefix) and
/// `--pepper-file` on every table command (the server holds the pepper).
#[test]
fn options_without_use_with_server_are_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/keyward/v1");
    const POLICY: &str = "error: --policy cannot be used with --server: the server's policy decides the key prefix\n";
    const PEPPER: &str =
        "error: --pepper-file cannot be used with --server: the server holds the pepper\n";
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/api-token.policy");
    let rows: &[(&[&str], &str)] = &[
        (
            &[
                "key", "create", "--owner", "1", "--name", "k", "--policy", policy,
            ],
            POLICY,
        ),
        (&["key", "rotate", "1", "--policy", policy], POLICY),
        (
            &["key", "regenerate", "1", "--policy", policy, "--json"],
            POLICY,
        ),
        (
            &[
                "key",
                "create",
                "--owner",
                "1",
                "--name",
                "k",
                "--pepper-file",
                "p",
            ],
            PEPPER,
        ),
        (
            &["key", "import", "--owner", "1", "--pepper-file", "p"],
            PEPPER,
        ),
        (&["key", "list", "--pepper-file", "p"], PEPPER),
        (&["key", "delete", "1", "--pepper-file", "p"], PEPPER),
        (&["principal", "list", "--pepper-file", "p"], PEPPER),
        (
            &[
                "bind",
                "1",
                "developer",
                "environment:1/project:1",
                "--pepper-file",
                "p",
            ],
            PEPPER,
        ),
        (&["workspace", "list", "--pepper-file", "p"], PEPPER),
        (&["audit", "--pepper-file", "p"], PEPPER),
    ];
    for (args, want) in rows {
        let (code, out, err) = run(&url, args, &[("KEYWARD_KEY", "kw_x")]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(&err, want, "{args:?}");
    }
}
