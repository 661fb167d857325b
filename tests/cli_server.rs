//! The table commands run twice, row by row: once with `--db DIR` and once with `--server URL`
//! against the admin API over a table seeded the same way. Both runs must give the same exit code,
//! the expected substrings, and (unless a row says otherwise) the same stdout once secrets, key
//! prefixes and times are masked. The server's caller is `root@example.com`, env_admin at
//! `environment:1` under policies/api-token.policy; its key comes from `KEYWARD_AUTHORIZATION`.
#![cfg(feature = "admin")]

#[path = "support/server.rs"]
mod server;

use std::sync::Arc;

use assert_cmd::Command;
use keyward::store::{Actor, KeyTable, NewKey, NewPrincipal, PrincipalKind};
use keyward::token::Secret;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Row {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
    code: i32,
    out: Vec<&'static str>,
    err: Vec<&'static str>,
    /// Whether stdout must be identical in both modes (audit rows differ: `cli` vs the principal).
    same: bool,
}

fn r(args: &[&'static str], code: i32, out: &[&'static str], err: &[&'static str]) -> Row {
    Row {
        args: args.to_vec(),
        stdin: None,
        code,
        out: out.to_vec(),
        err: err.to_vec(),
        same: true,
    }
}

impl Row {
    fn stdin(mut self, s: &'static str) -> Self {
        self.stdin = Some(s);
        self
    }
    fn differs(mut self) -> Self {
        self.same = false;
        self
    }
}

/// root (principal 1) with key 1, env_admin at environment:1.
fn seed(t: &KeyTable) -> Secret {
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

/// Masks what differs between runs: secrets and display prefixes, unix times and UTC dates.
fn mask(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("kw_") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let n = rest
            .char_indices()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        out.push('*');
        rest = &rest[n..];
    }
    out.push_str(rest);
    // Ten-digit numbers (unix times) and `YYYY-MM-DD HH:MM:SSZ`.
    let chars: Vec<char> = out.chars().collect();
    let mut masked = String::new();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if run >= 10 {
            masked.push('T');
            i += run;
        } else if run == 4 && chars.get(i + 4) == Some(&'-') && i + 20 <= chars.len() {
            masked.push('D');
            i += 20;
        } else if run > 0 {
            masked.extend(&chars[i..i + run]);
            i += run;
        } else {
            masked.push(chars[i]);
            i += 1;
        }
    }
    masked
}

struct Mode {
    /// `--db DIR` or `--server URL`.
    target: Vec<String>,
    env: Vec<(String, String)>,
    tmp: tempfile::TempDir,
}

impl Mode {
    fn run(&self, row: &Row) -> (i32, String, String) {
        let mut args: Vec<String> = Vec::new();
        let d = format!("{ROOT}/tests/data/cli");
        let p = format!("{ROOT}/policies");
        for a in &row.args {
            args.push(a.replace("{d}", &d).replace("{p}", &p));
        }
        args.extend(self.target.iter().cloned());
        let mut cmd = Command::new(BIN);
        cmd.args(&args).current_dir(self.tmp.path());
        cmd.env_remove("KEYWARD_PEPPER")
            .env_remove("KEYWARD_KEY")
            .env_remove("KEYWARD_AUTHORIZATION");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.write_stdin(row.stdin.unwrap_or(""));
        let o = cmd.output().expect("run keyward");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

fn modes() -> (Mode, Mode) {
    // --db: a table seeded by the library, then closed.
    let db_tmp = tempfile::tempdir().expect("tmp");
    let dir = db_tmp.path().join("db");
    {
        let t = KeyTable::open(&dir, Default::default()).expect("open");
        seed(&t);
    }
    let db = Mode {
        target: vec!["--db".into(), dir.display().to_string()],
        env: Vec::new(),
        tmp: db_tmp,
    };
    // --server: the same seed behind the admin API.
    let srv_tmp = tempfile::tempdir().expect("tmp");
    let engine = Arc::new(
        keyward::Engine::open_files(
            srv_tmp.path().join("db"),
            format!("{ROOT}/policies/api-token.policy"),
            Default::default(),
        )
        .expect("engine"),
    );
    let secret = seed(engine.table());
    let addr = server::serve_admin(engine);
    let srv = Mode {
        target: vec!["--server".into(), format!("http://{addr}/keyward/v1")],
        env: vec![(
            "KEYWARD_AUTHORIZATION".into(),
            format!("apiToken {}", secret.expose()),
        )],
        tmp: srv_tmp,
    };
    (db, srv)
}

fn rows() -> Vec<Row> {
    vec![
        r(
            &["principal", "add", "alice@example.com"],
            0,
            &["added principal 2 `alice@example.com` (user)"],
            &[],
        ),
        r(
            &["principal", "add", "ALICE@example.com"],
            2,
            &[],
            &["error: conflict"],
        ),
        r(
            &["principal", "add", "bad login"],
            2,
            &[],
            &["error: invalid login `bad login`"],
        ),
        r(
            &["principal", "add", "acme", "--kind", "company", "--json"],
            0,
            &["\"id\": 3", "\"kind\": \"company\""],
            &[],
        ),
        r(
            &["principal", "add", "bob@example.com"],
            0,
            &["added principal 4"],
            &[],
        ),
        r(
            &["principal", "remove", "nobody"],
            2,
            &[],
            &["error: no principal `nobody` (by login or id)"],
        ),
        r(
            &["principal", "remove", "4"],
            0,
            &["removed principal 4 `bob@example.com` with 0 key(s)"],
            &[],
        ),
        r(
            &[
                "bind",
                "alice@example.com",
                "developer",
                "environment:1/project:3",
                "--policy",
                "{p}/api-token.policy",
            ],
            0,
            &["bound `developer` at `environment:1/project:3` to `alice@example.com`"],
            &[],
        ),
        r(
            &["bind", "2", "developer", "environment:1/project:3"],
            2,
            &[],
            &["error: conflict"],
        ),
        r(
            &[
                "bind",
                "2",
                "nosuch",
                "environment:1",
                "--policy",
                "{p}/api-token.policy",
            ],
            2,
            &[],
            &["has no role `nosuch`"],
        ),
        r(
            &["bind", "ghost", "analyst", "environment:1"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        r(
            &["bind", "2", "analyst", "environment:1"],
            0,
            &["bound `analyst`"],
            &[],
        ),
        r(
            &["unbind", "2", "analyst", "environment:1"],
            0,
            &["unbound `analyst` at `environment:1` from `alice@example.com`"],
            &[],
        ),
        r(
            &["unbind", "2", "analyst", "environment:1"],
            2,
            &[],
            &["error: binding"],
        ),
        r(
            &[
                "workspace",
                "add",
                "pk-main",
                "--name",
                "Main",
                "--scope",
                "environment:1/project:9",
                "--company",
                "acme",
            ],
            0,
            &["added workspace `pk-main` `Main` at `environment:1/project:9`"],
            &[],
        ),
        r(
            &[
                "workspace",
                "add",
                "pk-main",
                "--name",
                "Again",
                "--scope",
                "environment:1/project:8",
            ],
            2,
            &[],
            &["error: conflict"],
        ),
        r(
            &[
                "workspace",
                "add",
                "pk-x",
                "--name",
                "X",
                "--scope",
                "environment:1/project:7",
                "--company",
                "ghost",
            ],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        r(
            &[
                "workspace",
                "add",
                "pk-tmp",
                "--name",
                "Tmp",
                "--scope",
                "environment:1/project:6",
            ],
            0,
            &["added workspace `pk-tmp`"],
            &[],
        ),
        r(
            &["workspace", "remove", "pk-tmp"],
            0,
            &["removed workspace `pk-tmp`"],
            &[],
        ),
        r(
            &["workspace", "remove", "pk-tmp"],
            2,
            &[],
            &["error: workspace `pk-tmp` not found"],
        ),
        r(
            &["workspace", "list"],
            0,
            &["PUBLIC KEY", "pk-main", "environment:1/project:9"],
            &[],
        ),
        r(
            &["workspace", "list", "--json"],
            0,
            &["\"public_key\": \"pk-main\"", "\"company\": 3"],
            &[],
        ),
        r(
            &["principal", "list"],
            0,
            &[
                "ID",
                "LOGIN",
                "alice@example.com",
                "developer@environment:1/project:3",
                "acme",
            ],
            &[],
        ),
        r(
            &["principal", "list", "--json"],
            0,
            &[
                "\"login\": \"alice@example.com\"",
                "\"role\": \"developer\"",
            ],
            &[],
        ),
        // Keys: root's own (self rule), alice's within root's environment.
        r(
            &[
                "key",
                "create",
                "--owner",
                "root@example.com",
                "--name",
                "ci",
                "--json",
            ],
            0,
            &["\"secret\": \"kw_", "\"name\": \"ci\""],
            &["store it now, it will not be shown again"],
        ),
        r(
            &[
                "key",
                "create",
                "--owner",
                "2",
                "--name",
                "reports",
                "--permission",
                "read_data,read_reports",
                "--read-only",
                "--expires-in",
                "30d",
                "--scope",
                "environment:1",
            ],
            0,
            &[
                "created key 3 `reports` for `alice@example.com`",
                "secret: kw_",
                "store it now, it will not be shown again",
            ],
            &[],
        ),
        r(
            &["key", "create", "--owner", "1", "--name", "ci"],
            2,
            &[],
            &["error: conflict"],
        ),
        r(
            &["key", "create", "--owner", "ghost", "--name", "x"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        r(
            &[
                "key",
                "create",
                "--owner",
                "1",
                "--name",
                "x",
                "--expires-in",
                "5x",
            ],
            2,
            &[],
            &["error: invalid duration `5x`"],
        ),
        r(
            &["key", "list"],
            0,
            &[
                "ID",
                "PREFIX",
                "ci",
                "reports",
                "read-only, scope environment:1, permissions read_data,read_reports",
                "active",
            ],
            &[],
        ),
        r(
            &["key", "list", "--owner", "alice@example.com", "--json"],
            0,
            &["\"display_prefix\": \"kw_", "\"status\": \"active\""],
            &[],
        ),
        r(
            &["key", "list", "--owner", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        r(
            &[
                "key",
                "import",
                "--owner",
                "2",
                "--name",
                "legacy",
                "--scope",
                "environment:1",
            ],
            0,
            &["imported key 4 `legacy` for `alice@example.com`"],
            &[],
        )
        .stdin("an-old-secret-from-elsewhere-0001\n"),
        r(
            &[
                "key",
                "import",
                "--owner",
                "2",
                "--file",
                "{d}/keys.txt",
                "--name",
                "bulk",
                "--scope",
                "environment:1",
            ],
            0,
            &["imported 3 keys for `alice@example.com` (ids 5..=7)"],
            &["importing keys: 3/3"],
        ),
        r(
            &["key", "import", "--owner", "1", "--secret", "hunter2"],
            2,
            &[],
            &["error: secrets are never read from the command line"],
        ),
        r(
            &["key", "import", "--owner", "1"],
            2,
            &[],
            &["error: no secret in stdin"],
        )
        .stdin("\n\n"),
        r(
            &["key", "rename", "4", "legacy-renamed"],
            0,
            &["renamed key 4 `legacy` to `legacy-renamed`"],
            &[],
        ),
        r(&["key", "rename", "99", "x"], 2, &[], &["error: no key 99"]),
        r(
            &["key", "rename", "4", "reports"],
            2,
            &[],
            &["error: conflict"],
        ),
        r(
            &["key", "deactivate", "3"],
            0,
            &["deactivated key 3 `reports`"],
            &[],
        ),
        r(&["key", "deactivate", "99"], 2, &[], &["error: no key 99"]),
        r(&["key", "list", "--owner", "2"], 0, &["inactive"], &[]),
        r(
            &["key", "activate", "3"],
            0,
            &["activated key 3 `reports`"],
            &[],
        ),
        r(&["key", "activate", "99"], 2, &[], &["error: no key 99"]),
        r(
            &["key", "rotate", "4", "--overlap", "1h"],
            0,
            &[
                "rotated key 4 `legacy-renamed`: it keeps working until",
                "secret: kw_",
                "store it now",
            ],
            &[],
        ),
        r(
            &["key", "rotate", "4", "--overlap", "soon"],
            2,
            &[],
            &["error: invalid duration `soon`"],
        ),
        r(&["key", "rotate", "99"], 2, &[], &["error: no key 99"]),
        r(
            &["key", "regenerate", "5", "--json"],
            0,
            &[
                "\"secret\": \"kw_",
                "\"note\": \"store it now, it will not be shown again\"",
            ],
            &[],
        ),
        r(&["key", "regenerate", "99"], 2, &[], &["error: no key 99"]),
        r(&["key", "delete", "6"], 0, &["deleted key 6 `bulk-2`"], &[]),
        r(&["key", "delete", "6"], 2, &[], &["error: no key 6"]),
        r(
            &["key", "delete", "five"],
            2,
            &[],
            &["error: invalid value 'five'"],
        ),
        r(
            &["audit", "--limit", "3"],
            0,
            &[
                "SEQ",
                "TIME",
                "ACTOR",
                "key 6 `bulk-2` of principal 2 deleted",
            ],
            &[],
        )
        .differs(),
        r(
            &["audit", "--principal", "alice@example.com", "--json"],
            0,
            &["\"op\": \"key_created\"", "\"op\": \"bound\""],
            &[],
        )
        .differs(),
        r(
            &["audit", "--principal", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        r(
            &["audit", "--limit", "many"],
            2,
            &[],
            &["error: invalid value 'many'"],
        ),
    ]
}

#[test]
fn table_rows_give_the_same_answers_with_db_and_server() {
    let (db, srv) = modes();
    for (i, row) in rows().iter().enumerate() {
        let a = db.run(row);
        let b = srv.run(row);
        for (name, (code, out, err)) in [("--db", &a), ("--server", &b)] {
            let ctx = format!(
                "row {i} {name}: {:?}\n--- stdout:\n{out}--- stderr:\n{err}",
                row.args
            );
            assert_eq!(*code, row.code, "exit code, {ctx}");
            for s in &row.out {
                assert!(out.contains(s), "stdout lacks {s:?}, {ctx}");
            }
            for s in &row.err {
                assert!(err.contains(s), "stderr lacks {s:?}, {ctx}");
            }
            assert!(!err.contains("panicked"), "{ctx}");
        }
        if row.same {
            assert_eq!(
                mask(&a.1),
                mask(&b.1),
                "row {i} {:?}: stdout differs between --db and --server",
                row.args
            );
            assert_eq!(
                a.2.lines().last(),
                b.2.lines().last(),
                "row {i} {:?}: stderr",
                row.args
            );
        }
    }
}

#[test]
fn server_mode_credentials_and_refusals() {
    let (_, srv) = modes();
    let url = srv.target[1].clone();
    let run = |args: &[&str], env: &[(&str, &str)], key_file: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["--server", &url]);
        if let Some(f) = key_file {
            cmd.args(["--key-file", f]);
        }
        cmd.env_remove("KEYWARD_KEY")
            .env_remove("KEYWARD_AUTHORIZATION");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["principal", "list"], &[], None);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("error: --server needs the caller's key"),
        "{err}"
    );
    // KEYWARD_KEY goes as a Bearer token, which api-token.policy does not accept.
    let (code, _, err) = run(&["principal", "list"], &[("KEYWARD_KEY", "kw_nope")], None);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the server refused") && err.contains("unknown_scheme"),
        "{err}"
    );
    let (code, out, _) = run(
        &["principal", "list"],
        &[("KEYWARD_AUTHORIZATION", &srv.env[0].1)],
        None,
    );
    assert_eq!(code, Some(0));
    assert!(out.contains("root@example.com"), "{out}");
    let missing = srv.tmp.path().join("none");
    let (code, _, err) = run(
        &["principal", "list"],
        &[],
        Some(&missing.display().to_string()),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read key file"), "{err}");
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
    let (db, srv) = modes();
    let addr: std::net::SocketAddr = srv.target[1]
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
    let (code, out, err) = srv.run(&r(&["audit", "--limit", "5"], 0, &[], &[]));
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("denied"))
        .unwrap_or_else(|| panic!("no refusal in\n{out}"));
    assert!(line.contains("anonymous"), "{line}");
    assert!(
        line.contains("denied GET /keyward/v1/principals: 401 malformed_key"),
        "{line}"
    );
    let (_, out, _) = srv.run(&r(&["audit", "--json"], 0, &[], &[]));
    assert!(out.contains("\"op\": \"access_denied\""), "{out}");
    assert!(
        out.contains("\"path\": \"/keyward/v1/principals\""),
        "{out}"
    );
    assert!(!out.contains("kw_x"), "{out}");

    {
        let t = KeyTable::open(&db.target[1], Default::default()).expect("open");
        t.record_denial(keyward::store::NewDenial {
            actor: Actor::Principal(1),
            status: 403,
            code: "no_role",
            method: "POST",
            path: "/keyward/v1/principals",
            key: Some(1),
        });
    }
    let (code, out, err) = db.run(&r(&["audit"], 0, &[], &[]));
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("denied"))
        .unwrap_or_else(|| panic!("no refusal in\n{out}"));
    assert!(line.contains("principal 1"), "{line}");
    assert!(
        line.contains("denied POST /keyward/v1/principals: 403 no_role (key 1)"),
        "{line}"
    );
    let (_, out, _) = db.run(&r(&["audit", "--json"], 0, &[], &[]));
    assert!(out.contains("\"code\": \"no_role\""), "{out}");
}
