//! The `keyward` binary, run as a user would: table-driven rows of arguments (and stdin) → exit
//! code, stdout and stderr substrings. Rows of one table run in order on one key table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One invocation and what it must produce.
struct Case {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
    out: Vec<&'static str>,
    err: Vec<&'static str>,
    /// Substrings stdout must not contain (after variable substitution).
    not_out: Vec<&'static str>,
}

fn c(args: &[&'static str], code: i32, out: &[&'static str], err: &[&'static str]) -> Case {
    Case {
        args: args.to_vec(),
        stdin: None,
        env: Vec::new(),
        code,
        out: out.to_vec(),
        err: err.to_vec(),
        not_out: Vec::new(),
    }
}

impl Case {
    fn stdin(mut self, s: &'static str) -> Self {
        self.stdin = Some(s);
        self
    }
    fn env(mut self, k: &'static str, v: &'static str) -> Self {
        self.env.push((k, v));
        self
    }
    fn not_out(mut self, s: &'static str) -> Self {
        self.not_out.push(s);
        self
    }
}

/// A scratch directory with `{db}`, `{tmp}`, `{p}` (bundled policies), `{d}` (fixtures) and
/// variables captured from earlier output (e.g. `{secret}`).
struct Env {
    tmp: TempDir,
    vars: HashMap<String, String>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut vars = HashMap::new();
        vars.insert("db".into(), tmp.path().join("db").display().to_string());
        vars.insert("tmp".into(), tmp.path().display().to_string());
        vars.insert("p".into(), format!("{ROOT}/policies"));
        vars.insert("d".into(), format!("{ROOT}/tests/data/cli"));
        Env { tmp, vars }
    }

    fn subst(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// Runs one case; returns its stdout.
    fn run(&self, i: usize, case: &Case) -> String {
        let args: Vec<String> = case.args.iter().map(|a| self.subst(a)).collect();
        let mut cmd = Command::new(BIN);
        cmd.args(&args).current_dir(self.tmp.path());
        cmd.env_remove("KEYWARD_PEPPER");
        for (k, v) in &case.env {
            cmd.env(k, self.subst(v));
        }
        if let Some(s) = case.stdin {
            cmd.write_stdin(self.subst(s));
        } else {
            cmd.write_stdin("");
        }
        let o = cmd.output().expect("run keyward");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let ctx = format!("row {i}: keyward {args:?}\n--- stdout:\n{out}--- stderr:\n{err}");
        assert_eq!(o.status.code(), Some(case.code), "exit code, {ctx}");
        for s in &case.out {
            assert!(out.contains(&self.subst(s)), "stdout lacks {s:?}, {ctx}");
        }
        for s in &case.err {
            assert!(err.contains(&self.subst(s)), "stderr lacks {s:?}, {ctx}");
        }
        for s in &case.not_out {
            assert!(!out.contains(&self.subst(s)), "stdout has {s:?}, {ctx}");
        }
        // Never a Rust panic, backtrace or Debug dump.
        for bad in ["panicked", "RUST_BACKTRACE", "Error {", "Some("] {
            assert!(!err.contains(bad), "stderr has {bad:?}, {ctx}");
        }
        if case.code == 2 {
            assert!(
                err.starts_with("error: ") || err.contains("\nerror: "),
                "{ctx}"
            );
        }
        out
    }

    fn run_all(&self, cases: &[Case]) {
        for (i, case) in cases.iter().enumerate() {
            self.run(i, case);
        }
    }

    /// Runs a case and captures the value of `"field": "..."` from its JSON output as `{var}`.
    fn capture(&mut self, case: Case, field: &str, var: &str) {
        let out = self.run(0, &case);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json output");
        let found = v
            .pointer(field)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_else(|| panic!("no {field} in {out}"));
        self.vars.insert(var.to_owned(), found);
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

#[test]
fn check_and_fmt() {
    let env = Env::new();
    std::fs::copy(
        Path::new(ROOT).join("tests/data/cli/unformatted.policy"),
        env.path("u.policy"),
    )
    .expect("copy");
    env.run_all(&[
        c(
            &[
                "check",
                "{p}/seed-platform.policy",
                "{p}/seatsio.policy",
                "{p}/api-token.policy",
                "{p}/cognitive3d.policy",
            ],
            0,
            &[
                "seed-platform.policy: ok (4 scopes, 9 actions, 3 roles)",
                "cognitive3d.policy: ok",
            ],
            &[],
        ),
        c(
            &["check", "{d}/bad.policy"],
            1,
            &["bad.policy: 2 errors"],
            &[
                "error: unknown scope kind `nope`",
                "┌─ {d}/bad.policy:3:11",
                "role r at nope {",
                "^^^^",
                "unknown action or group `fly`",
                "help: ",
            ],
        ),
        c(
            &["check", "{p}/seatsio.policy", "{d}/bad.policy"],
            1,
            &["seatsio.policy: ok"],
            &["bad.policy:6:23"],
        ),
        c(
            &["check", "{tmp}/missing.policy"],
            2,
            &[],
            &["error: cannot read policy `{tmp}/missing.policy`"],
        ),
        c(
            &["check", "--json", "{d}/bad.policy"],
            1,
            &[
                "\"ok\": false",
                "\"severity\": \"error\"",
                "\"message\": \"unknown scope kind `nope`\"",
                "\"line\": 3",
                "\"column\": 11",
            ],
            &[],
        ),
        c(
            &["check", "--json", "{p}/seatsio.policy"],
            0,
            &["\"ok\": true", "\"errors\": 0"],
            &[],
        ),
        c(&["check"], 2, &[], &["error:", "FILE"]),
        c(
            &["fmt", "--check", "{tmp}/u.policy"],
            1,
            &["{tmp}/u.policy"],
            &["1 file is not formatted"],
        ),
        c(
            &["fmt", "{tmp}/u.policy"],
            0,
            &["formatted {tmp}/u.policy"],
            &[],
        ),
        c(&["fmt", "--check", "{tmp}/u.policy"], 0, &[], &[]),
        c(&["fmt", "{tmp}/u.policy"], 0, &[], &[]).not_out("formatted"),
        c(
            &["fmt", "{d}/bad.policy"],
            1,
            &[],
            &[
                "unknown scope kind",
                "error: `{d}/bad.policy` has errors; not formatted",
            ],
        ),
        c(
            &["fmt", "{tmp}/missing.policy"],
            2,
            &[],
            &["error: cannot read policy"],
        ),
        c(&["fmt", "--check"], 2, &[], &["error:"]),
    ]);
    let text = std::fs::read_to_string(env.path("u.policy")).expect("read");
    assert!(
        text.starts_with("# A policy written by hand"),
        "comment kept: {text}"
    );
    assert!(
        text.contains("role viewer at org {\n    grant view;\n}"),
        "{text}"
    );
}

#[test]
fn table_commands() {
    let mut env = Env::new();
    env.run_all(&[
        c(
            &["principal", "list", "--db", "{db}"],
            2,
            &[],
            &["error: database `{db}` does not exist"],
        ),
        c(
            &["principal", "add", "alice@example.com", "--db", "{db}"],
            0,
            &["added principal 1 `alice@example.com` (user)"],
            &[],
        ),
        c(
            &["principal", "add", "ALICE@example.com", "--db", "{db}"],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &["principal", "add", "bad login", "--db", "{db}"],
            2,
            &[],
            &["error: invalid login `bad login`"],
        ),
        c(
            &[
                "principal",
                "add",
                "acme",
                "--kind",
                "company",
                "--db",
                "{db}",
                "--json",
            ],
            0,
            &["\"id\": 2", "\"kind\": \"company\""],
            &[],
        ),
        c(
            &[
                "principal",
                "add",
                "robot",
                "--kind",
                "robot",
                "--db",
                "{db}",
            ],
            2,
            &[],
            &["error: invalid value 'robot'"],
        ),
        c(
            &["principal", "add", "bob@example.com", "--db", "{db}"],
            0,
            &["added principal 3"],
            &[],
        ),
        c(
            &["principal", "remove", "nobody", "--db", "{db}"],
            2,
            &[],
            &["error: no principal `nobody` (by login or id)"],
        ),
        c(
            &["principal", "remove", "3", "--db", "{db}"],
            0,
            &["removed principal 3 `bob@example.com`"],
            &[],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
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
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "developer",
                "environment:1/project:3",
            ],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "nosuch",
                "environment:1",
                "--policy",
                "{p}/api-token.policy",
            ],
            2,
            &[],
            &["error: policy `{p}/api-token.policy` has no role `nosuch`"],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "developer",
                "environment:1",
                "--policy",
                "{p}/api-token.policy",
            ],
            2,
            &[],
            &["error: role `developer` cannot be bound at `environment:1`"],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "analyst",
                "environment:1",
                "--policy",
                "{d}/bad.policy",
            ],
            2,
            &[],
            &[
                "unknown scope kind",
                "error: policy `{d}/bad.policy` has 2 errors",
            ],
        ),
        c(
            &["bind", "--db", "{db}", "ghost", "analyst", "environment:1"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["bind", "--db", "{db}", "1", "analyst", "environment:1"],
            0,
            &["bound `analyst`"],
            &[],
        ),
        c(
            &["unbind", "--db", "{db}", "1", "analyst", "environment:1"],
            0,
            &["unbound `analyst` at `environment:1` from `alice@example.com`"],
            &[],
        ),
        c(
            &["unbind", "--db", "{db}", "1", "analyst", "environment:1"],
            2,
            &[],
            &["error: binding"],
        ),
        c(
            &[
                "workspace",
                "add",
                "--db",
                "{db}",
                "pk-main",
                "--name",
                "Main",
                "--scope",
                "company:acme/workspace:main",
                "--company",
                "acme",
            ],
            0,
            &["added workspace `pk-main` `Main` at `company:acme/workspace:main`"],
            &[],
        ),
        c(
            &[
                "workspace",
                "add",
                "--db",
                "{db}",
                "pk-main",
                "--name",
                "Again",
                "--scope",
                "company:acme/workspace:2",
            ],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &[
                "workspace",
                "add",
                "--db",
                "{db}",
                "pk-x",
                "--name",
                "X",
                "--scope",
                "company:acme/workspace:3",
                "--company",
                "ghost",
            ],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &[
                "workspace",
                "add",
                "--db",
                "{db}",
                "pk-tmp",
                "--name",
                "Tmp",
                "--scope",
                "company:acme/workspace:9",
            ],
            0,
            &["added workspace `pk-tmp`"],
            &[],
        ),
        c(
            &["workspace", "remove", "--db", "{db}", "pk-tmp"],
            0,
            &["removed workspace `pk-tmp`"],
            &[],
        ),
        c(
            &["workspace", "remove", "--db", "{db}", "pk-tmp"],
            2,
            &[],
            &["error: workspace `pk-tmp` not found"],
        ),
        c(
            &["workspace", "list", "--db", "{db}"],
            0,
            &["PUBLIC KEY", "pk-main", "company:acme/workspace:main"],
            &[],
        )
        .not_out("pk-tmp"),
        c(
            &["workspace", "list", "--db", "{db}", "--json"],
            0,
            &["\"public_key\": \"pk-main\"", "\"company\": 2"],
            &[],
        ),
        c(
            &["workspace", "list", "--db", "{tmp}/nodb"],
            2,
            &[],
            &["does not exist"],
        ),
        c(
            &["principal", "list", "--db", "{db}"],
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
        c(
            &["principal", "list", "--db", "{db}", "--json"],
            0,
            &[
                "\"login\": \"alice@example.com\"",
                "\"role\": \"developer\"",
                "\"scope\": \"environment:1/project:3\"",
            ],
            &[],
        ),
    ]);

    // Keys.
    env.capture(
        c(
            &[
                "key",
                "create",
                "--db",
                "{db}",
                "--owner",
                "alice@example.com",
                "--name",
                "ci",
                "--policy",
                "{p}/api-token.policy",
                "--json",
            ],
            0,
            &["\"secret\": \"kw_", "\"name\": \"ci\""],
            &["store it now, it will not be shown again"],
        ),
        "/secret",
        "secret",
    );
    env.run_all(&[
        c(
            &[
                "key",
                "create",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--name",
                "reports",
                "--permission",
                "read_data,read_reports",
                "--read-only",
                "--expires-in",
                "30d",
            ],
            0,
            &[
                "created key 2 `reports` for `alice@example.com`",
                "secret: kw_",
                "store it now, it will not be shown again",
            ],
            &[],
        ),
        c(
            &[
                "key", "create", "--db", "{db}", "--owner", "1", "--name", "ci",
            ],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &[
                "key",
                "create",
                "--db",
                "{db}",
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
        c(
            &[
                "key", "create", "--db", "{db}", "--owner", "ghost", "--name", "x",
            ],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["key", "create", "--db", "{db}", "--owner", "1"],
            2,
            &[],
            &["error:", "--name"],
        ),
        c(
            &["key", "list", "--db", "{db}"],
            0,
            &[
                "ID",
                "PREFIX",
                "ci",
                "reports",
                "read-only, permissions read_data,read_reports",
                "active",
            ],
            &[],
        )
        .not_out("{secret}"),
        c(
            &[
                "key",
                "list",
                "--db",
                "{db}",
                "--owner",
                "alice@example.com",
                "--json",
            ],
            0,
            &["\"display_prefix\": \"kw_", "\"status\": \"active\""],
            &[],
        )
        .not_out("{secret}")
        .not_out("\"secret\""),
        c(
            &["key", "list", "--db", "{db}", "--owner", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        // Import: stdin, a file of many (bulk, with progress), and every refusal.
        c(
            &[
                "key", "import", "--db", "{db}", "--owner", "1", "--name", "legacy",
            ],
            0,
            &["imported key 3 `legacy` for `alice@example.com`"],
            &[],
        )
        .stdin("an-old-secret-from-elsewhere-0001\n"),
        c(
            &[
                "key",
                "import",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--file",
                "{d}/keys.txt",
                "--name",
                "bulk",
            ],
            0,
            &["imported 3 keys for `alice@example.com` (ids 4..=6)"],
            &["importing keys: 3/3"],
        ),
        c(
            &[
                "key",
                "import",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--file",
                "{d}/keys.txt",
                "--name",
                "again",
            ],
            2,
            &[],
            &["error: line 1 of `{d}/keys.txt`: this secret is already in the key table"],
        ),
        c(
            &[
                "key",
                "import",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--file",
                "{d}/keys-dup.txt",
            ],
            2,
            &[],
            &["error: line 2 of `{d}/keys-dup.txt`: the same secret as line 1"],
        ),
        c(
            &[
                "key", "import", "--db", "{db}", "--owner", "1", "--name", "bulk-1",
            ],
            2,
            &[],
            &["already has a key named `bulk-1`"],
        )
        .stdin("fresh-secret-00000000000000001\n"),
        c(
            &[
                "key",
                "import",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--policy",
                "{p}/api-token.policy",
            ],
            2,
            &[],
            &["error: line 1 of stdin:"],
        )
        .stdin("kw_notAValidGeneratedKeyAtAll1234\n"),
        c(
            &["key", "import", "--db", "{db}", "--owner", "1"],
            2,
            &[],
            &["error: no secret in stdin"],
        )
        .stdin("\n\n"),
        c(
            &[
                "key",
                "import",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--file",
                "{tmp}/none.txt",
            ],
            2,
            &[],
            &["error: cannot read `{tmp}/none.txt`"],
        ),
        c(
            &[
                "key", "import", "--db", "{db}", "--owner", "1", "--secret", "hunter2",
            ],
            2,
            &[],
            &["error: secrets are never read from the command line"],
        ),
        c(
            &[
                "key", "import", "--db", "{db}", "--owner", "1", "--json", "--name", "j",
            ],
            0,
            &["\"imported\": true", "\"name\": \"j\""],
            &[],
        )
        .stdin("json-import-secret-000000000001"),
        // Lifecycle.
        c(
            &["key", "rename", "--db", "{db}", "3", "legacy-renamed"],
            0,
            &["renamed key 3 `legacy` to `legacy-renamed`"],
            &[],
        ),
        c(
            &["key", "rename", "--db", "{db}", "99", "x"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "rename", "--db", "{db}", "3", "ci"],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &["key", "deactivate", "--db", "{db}", "2"],
            0,
            &["deactivated key 2 `reports`"],
            &[],
        ),
        c(
            &["key", "deactivate", "--db", "{db}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(&["key", "list", "--db", "{db}"], 0, &["inactive"], &[]),
        c(
            &["key", "activate", "--db", "{db}", "2"],
            0,
            &["activated key 2 `reports`"],
            &[],
        ),
        c(
            &["key", "activate", "--db", "{db}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "rotate", "--db", "{db}", "3", "--overlap", "1h"],
            0,
            &[
                "rotated key 3 `legacy-renamed`: it keeps working until",
                "secret: kw_",
                "store it now",
            ],
            &[],
        ),
        c(
            &["key", "rotate", "--db", "{db}", "3", "--overlap", "soon"],
            2,
            &[],
            &["error: invalid duration `soon`"],
        ),
        c(
            &["key", "rotate", "--db", "{db}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "regenerate", "--db", "{db}", "4", "--json"],
            0,
            &[
                "\"secret\": \"kw_",
                "\"note\": \"store it now, it will not be shown again\"",
            ],
            &[],
        ),
        c(
            &["key", "regenerate", "--db", "{db}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "delete", "--db", "{db}", "5"],
            0,
            &["deleted key 5 `bulk-2`"],
            &[],
        ),
        c(
            &["key", "delete", "--db", "{db}", "5"],
            2,
            &[],
            &["error: no key 5"],
        ),
        c(
            &["key", "delete", "--db", "{db}", "five"],
            2,
            &[],
            &["error: invalid value 'five'"],
        ),
        // Audit.
        c(
            &["audit", "--db", "{db}", "--limit", "3"],
            0,
            &[
                "SEQ",
                "TIME",
                "ACTOR",
                "key 5 `bulk-2` of principal 1 deleted",
                "cli",
            ],
            &[],
        )
        .not_out("principal 1 `alice@example.com` added"),
        c(
            &[
                "audit",
                "--db",
                "{db}",
                "--principal",
                "alice@example.com",
                "--json",
            ],
            0,
            &[
                "\"op\": \"key_created\"",
                "\"op\": \"bound\"",
                "\"actor\": \"cli\"",
            ],
            &[],
        )
        .not_out("{secret}"),
        c(
            &["audit", "--db", "{db}", "--principal", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["audit", "--db", "{tmp}/nodb"],
            2,
            &[],
            &["error: database `{tmp}/nodb` does not exist"],
        ),
        c(
            &["audit", "--db", "{db}", "--limit", "many"],
            2,
            &[],
            &["error: invalid value 'many'"],
        ),
        c(
            &["audit", "--db", "{d}/keys.txt"],
            2,
            &[],
            &["is not a directory"],
        ),
    ]);
}

#[test]
fn authorize() {
    let mut env = Env::new();
    env.run_all(&[
        c(
            &["principal", "add", "dana@example.com", "--db", "{db}"],
            0,
            &[],
            &[],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "developer",
                "environment:1/project:3",
            ],
            0,
            &[],
            &[],
        ),
        c(
            &["principal", "add", "user@seed-platform.org", "--db", "{db}"],
            0,
            &[],
            &[],
        ),
        c(
            &["bind", "--db", "{db}", "2", "member", "organization:6"],
            0,
            &[],
            &[],
        ),
        c(
            &["key", "import", "--db", "{db}", "--owner", "2"],
            0,
            &[],
            &[],
        )
        .stdin("b58f12c358606163c7ff1e55122c7517fd32af4b\n"),
    ]);
    env.capture(
        c(
            &[
                "key",
                "create",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--name",
                "ci",
                "--policy",
                "{p}/api-token.policy",
                "--json",
            ],
            0,
            &[],
            &[],
        ),
        "/secret",
        "secret",
    );
    const SEED_HEADER: &str = "Authorization: Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi";
    let api = "{p}/api-token.policy";
    let auth = "Authorization: apiToken {secret}";
    env.run_all(&[
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                auth,
                "--action",
                "read_data",
                "--resource",
                "environment:1/project:3",
            ],
            0,
            &[
                "credential style `api_token`",
                "binding `developer` at `environment:1/project:3`: covers it and grants the action",
                "ALLOW: role `developer` at `environment:1/project:3` (principal 1, key 2)",
            ],
            &[],
        )
        .not_out("{secret}"),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "-H",
                auth,
                "--action",
                "run_jobs",
                "--resource",
                "environment:1/project:4",
            ],
            1,
            &[
                "does not cover the resource",
                "DENY (no_role): no role at or above the resource grants this action",
                "http: 403",
            ],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--query",
                "apiToken={secret}",
                "--action",
                "read_data",
                "--resource",
                "environment:1/project:3",
            ],
            0,
            &[
                "credential style `query_param`",
                "note: the key came in the query string",
            ],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--query",
                "apiToken={secret}",
                "--action",
                "read_data",
                "--resource",
                "environment:1/project:3",
                "--json",
            ],
            0,
            &[
                "\"decision\": \"allow\"",
                "\"style\": \"query_param\"",
                "\"via_query\": true",
                "\"role\": \"developer\"",
                "\"steps\": [",
            ],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                auth,
                "--action",
                "fly",
                "--resource",
                "environment:1",
                "--json",
            ],
            1,
            &[
                "\"decision\": \"deny\"",
                "\"code\": \"unknown_action\"",
                "\"status\": 403",
            ],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--action",
                "read_data",
                "--resource",
                "environment:1",
            ],
            1,
            &["DENY (no_credential)", "http: 401"],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                "Authorization: apiToken kw_AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "--action",
                "read_data",
                "--resource",
                "environment:1",
            ],
            1,
            &["DENY (bad_checksum)"],
            &[],
        ),
        // SEED: the documentation's header, the organization as context, the redirect.
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                "{p}/seed-platform.policy",
                "--header",
                SEED_HEADER,
                "--context",
                "organization:6",
                "--action",
                "update",
                "--resource",
                "cycle:1",
            ],
            0,
            &["ALLOW: role `member` at `organization:6`"],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                "{p}/seed-platform.policy",
                "--header",
                "Authorization: Basic bm9ib2R5QGV4YW1wbGUuY29tOjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc=",
                "--action",
                "view",
                "--resource",
                "organization:6",
            ],
            1,
            &["DENY (unknown_key)", "http: 302 Location: /app/login"],
            &[],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                "{p}/seed-platform.policy",
                "--header",
                "Authorization: Basic bm9ib2R5QGV4YW1wbGUuY29tOjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc=",
                "--action",
                "view",
                "--resource",
                "organization:6",
                "--json",
            ],
            1,
            &[
                "\"status\": 302",
                "\"location\": \"/app/login\"",
                "\"authentication\": true",
            ],
            &[],
        ),
        // Deactivation takes effect at once.
        c(&["key", "deactivate", "--db", "{db}", "2"], 0, &[], &[]),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                auth,
                "--action",
                "read_data",
                "--resource",
                "environment:1/project:3",
            ],
            1,
            &["DENY (inactive_key)"],
            &[],
        ),
        // Usage and i/o errors: exit 2, one line.
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                "no colon here",
                "--action",
                "a",
                "--resource",
                "r",
            ],
            2,
            &[],
            &["error: --header `no colon here` is not `Name: value`"],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--header",
                "Bad Name: x",
                "--action",
                "a",
                "--resource",
                "r",
            ],
            2,
            &[],
            &["error: --header: `Bad Name` is not a valid header name"],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                "{tmp}/none.policy",
                "--action",
                "a",
                "--resource",
                "r",
            ],
            2,
            &[],
            &["error: cannot read policy `{tmp}/none.policy`"],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                "{d}/bad.policy",
                "--action",
                "a",
                "--resource",
                "r",
            ],
            2,
            &[],
            &["^^^^", "error: policy `{d}/bad.policy` has 2 errors"],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{tmp}/nodb",
                "--policy",
                api,
                "--action",
                "a",
                "--resource",
                "r",
            ],
            2,
            &[],
            &["error: database `{tmp}/nodb` does not exist"],
        ),
        c(
            &[
                "authorize",
                "--db",
                "{db}",
                "--policy",
                api,
                "--resource",
                "r",
            ],
            2,
            &[],
            &["error:", "--action"],
        ),
    ]);
}

#[test]
fn pepper() {
    let mut env = Env::new();
    const PEPPER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    env.run_all(&[
        c(
            &["principal", "add", "dana@example.com", "--db", "{db}"],
            0,
            &[],
            &[],
        ),
        c(
            &[
                "bind",
                "--db",
                "{db}",
                "1",
                "developer",
                "environment:1/project:3",
            ],
            0,
            &[],
            &[],
        ),
    ]);
    env.capture(
        c(
            &[
                "key",
                "create",
                "--db",
                "{db}",
                "--owner",
                "1",
                "--name",
                "ci",
                "--policy",
                "{p}/api-token.policy",
                "--json",
                "--pepper-file",
                "{d}/pepper.txt",
            ],
            0,
            &[],
            &[],
        ),
        "/secret",
        "secret",
    );
    let auth = "Authorization: apiToken {secret}";
    let base = [
        "authorize",
        "--db",
        "{db}",
        "--policy",
        "{p}/api-token.policy",
        "--header",
        auth,
        "--action",
        "read_data",
        "--resource",
        "environment:1/project:3",
    ];
    let with = |extra: &[&'static str]| [base.as_slice(), extra].concat();
    env.run_all(&[
        c(
            &with(&["--pepper-file", "{d}/pepper.txt"]),
            0,
            &["ALLOW"],
            &[],
        ),
        c(&base, 0, &["ALLOW"], &[]).env("KEYWARD_PEPPER", PEPPER),
        c(&base, 1, &["DENY (unknown_key)"], &[]),
        c(
            &base,
            2,
            &[],
            &["error: `KEYWARD_PEPPER` must hold 64 hexadecimal characters"],
        )
        .env("KEYWARD_PEPPER", "abc"),
        c(
            &with(&["--pepper-file", "{d}/keys.txt"]),
            2,
            &[],
            &["error: pepper file `{d}/keys.txt` must hold 64 hexadecimal characters"],
        ),
        c(
            &with(&["--pepper-file", "{tmp}/none"]),
            2,
            &[],
            &["error: cannot read pepper file `{tmp}/none`"],
        ),
    ]);
}

#[test]
fn database_in_use_is_named() {
    let env = Env::new();
    env.run_all(&[c(
        &["principal", "add", "a@example.com", "--db", "{db}"],
        0,
        &[],
        &[],
    )]);
    let held = keyward::store::KeyTable::open(env.path("db"), Default::default()).expect("open");
    env.run_all(&[
        c(
            &["key", "list", "--db", "{db}"],
            2,
            &[],
            &["error: database `{db}` is in use by another process"],
        ),
        c(
            &["principal", "add", "b@example.com", "--db", "{db}"],
            2,
            &[],
            &["is in use by another process"],
        ),
    ]);
    drop(held);
    env.run_all(&[c(
        &["principal", "list", "--db", "{db}"],
        0,
        &["a@example.com"],
        &[],
    )]);
}

/// True if `s` holds a full generated key: `prefix` and 28 base62 characters.
fn has_full_key(s: &str, prefix: &str) -> bool {
    s.match_indices(prefix).any(|(i, _)| {
        s[i + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .count()
            >= 28
    })
}

#[test]
fn demo_runs_every_flow_as_documented() {
    let env = Env::new();
    let out = env.run(
        0,
        &c(
            &["demo"],
            0,
            &[
                "== SEED Platform",
                "== seats.io",
                "== 002 API tokens",
                "== Cognitive3D",
                "requests, every decision as documented.",
            ],
            &[],
        ),
    );
    let line = |needles: &[&str]| {
        assert!(
            out.lines().any(|l| needles.iter().all(|n| l.contains(n))),
            "no line with all of {needles:?} in\n{out}"
        );
    };
    // SEED: the documentation's header, URL-safe base64, email mismatch, redirect, new key.
    line(&[
        "(doc example)",
        "view",
        "[organization:6] cycle:1",
        "ALLOW",
        "member at organization:6",
    ]);
    line(&[
        "Basic am9-",
        "(URL-safe b64)",
        "ALLOW",
        "viewer at organization:6",
    ]);
    line(&["Basic am9+", "(standard b64)", "ALLOW"]);
    line(&[
        "DENY",
        "email_mismatch: the key does not belong to this email [302 -> /app/login]",
    ]);
    line(&["DENY", "no_credential", "[302 -> /app/login]"]);
    line(&["user:1", "ALLOW", "self at user:1"]);
    line(&[
        "manage: user@seed-platform.org gets a new API key",
        "-> done",
    ]);
    // seats.io: workspace key, admin key with and without X-Workspace-Key.
    line(&[
        "Basic NTUwZTg0MDAt",
        "book",
        "event:5",
        "ALLOW",
        "workspace_key at company:acme/workspace:main",
    ]);
    line(&[
        "workspace key + X-Workspace-Key: pk-staging",
        "DENY",
        "workspace_header_needs_admin_key",
    ]);
    line(&[
        "admin key kw_",
        "create",
        "chart:9",
        "ALLOW",
        "company_admin at company:acme (workspace pk-main)",
    ]);
    line(&[
        "+ X-Workspace-Key: pk-staging",
        "ALLOW",
        "(workspace pk-staging)",
    ]);
    line(&["X-Workspace-Key: pk-nope", "DENY", "unknown_workspace"]);
    // 002: header and query, permissions, deactivation at once.
    line(&[
        "apiToken kw_",
        "read_data",
        "ALLOW",
        "developer at environment:1/project:3",
    ]);
    line(&["?apiToken", "ALLOW", "(key in URL: ends up in access logs)"]);
    line(&["write_data", "DENY", "outside_key_permissions"]);
    line(&["manage: erin (env_admin) deactivates dana's `deploy` token -> done"]);
    line(&[
        "run_jobs",
        "DENY",
        "inactive_key: the key is deactivated [401]",
    ]);
    line(&["manage: dana deletes erin's token -> REFUSED no_role"]);
    // Cognitive3D: both header forms, org-scoped read-only keys, observers, the deny rule, self.
    line(&[
        "APIKEY:ORGANIZATION orgkey-",
        "view",
        "ALLOW",
        "project_member at organization:6/project:3",
    ]);
    line(&["(raw, no scheme)", "ALLOW"]);
    line(&["update", "DENY", "read_only_key"]);
    line(&[
        "manage: olga creates key `paul read-only`",
        "(read-only, scope organization:6)",
    ]);
    line(&[
        "manage: paul (project_member) creates a key for himself",
        "REFUSED no_role",
    ]);
    line(&["organization:7/project:3", "DENY", "outside_key_scope"]);
    line(&["DENY", "observer_cannot_write"]);
    line(&[
        "session:1",
        "DENY",
        "deny_rule: forbidden by deny rule `immutable_sessions`",
    ]);
    line(&["user:1", "ALLOW", "self at user:1"]);
    line(&["one character changed", "DENY", "bad_checksum"]);
    assert!(!out.contains("UNEXPECTED"), "{out}");
    // Generated secrets appear abbreviated only.
    assert!(
        !has_full_key(&out, "kw_"),
        "a full kw_ key in the demo:\n{out}"
    );
    assert!(
        !has_full_key(&out, "orgkey-"),
        "a full orgkey- key in the demo:\n{out}"
    );
    // Aligned columns: every row of a section has its decision in the same column.
    let cols: Vec<usize> = out
        .lines()
        .skip_while(|l| !l.starts_with("== seats.io"))
        .take_while(|l| !l.starts_with("== 002"))
        .filter_map(|l| {
            l.find(" ALLOW ")
                .or_else(|| l.find(" DENY "))
                .map(|i| l[..i].chars().count())
        })
        .collect();
    assert!(
        cols.len() > 5 && cols.iter().all(|&c| c == cols[0]),
        "{cols:?}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let env = Env::new();
    let commands: &[&[&str]] = &[
        &[],
        &["check"],
        &["fmt"],
        &["authorize"],
        &["principal", "add"],
        &["principal", "list"],
        &["principal", "remove"],
        &["bind"],
        &["unbind"],
        &["workspace", "add"],
        &["workspace", "list"],
        &["workspace", "remove"],
        &["key", "create"],
        &["key", "import"],
        &["key", "list"],
        &["key", "rename"],
        &["key", "deactivate"],
        &["key", "activate"],
        &["key", "rotate"],
        &["key", "regenerate"],
        &["key", "delete"],
        &["audit"],
        &["demo"],
    ];
    for (i, cmd) in commands.iter().enumerate() {
        let mut args: Vec<&'static str> = cmd.to_vec();
        args.push("--help");
        let out = env.run(i, &c(&args, 0, &["Usage: keyward", "keyward "], &[]));
        assert!(
            out.contains("Example"),
            "no example in `keyward {cmd:?} --help`:\n{out}"
        );
    }
    env.run_all(&[
        c(
            &["frobnicate"],
            2,
            &[],
            &["error: unrecognized subcommand 'frobnicate'"],
        ),
        c(
            &["key"],
            2,
            &[],
            &["error: 'keyward key' requires a subcommand"],
        ),
        c(&["--version"], 0, &["keyward 0.1.0"], &[]),
    ]);
}
