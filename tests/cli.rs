//! The `keyward` binary, run as a user would: table-driven rows of arguments (and stdin) → exit
//! code, stdout and stderr substrings. Rows of one table run in order on one key table.
//!
//! The table commands (`key`, `principal`, `bind`, `unbind`, `workspace`, `audit`) have two modes,
//! `--db DIR` and `--server URL` (docs/cli.md). Their rows say `{table}` where the mode goes, and
//! an [`Env::both`] runs every row twice: with `--db` on a table of its own, and with `--server`
//! against the admin API (as `keyward serve` mounts it) over another table, both seeded alike by
//! `server::seed_cli_caller` (the server's caller, `root@example.com`, exists with `--db` too, so
//! ids agree). Both runs must pass the row's checks, and give the same exit code, stdout and
//! stderr once secrets, times and the scratch directory are masked. A row that cannot run against
//! a server says why with [`Case::db_only`]; a row whose output legitimately differs names the
//! difference and the narrow rule that masks it with [`Case::differs`].
#![cfg(feature = "cli")]

#[path = "support/server.rs"]
mod server;

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
    /// Why the row runs with `--db` only (`None`: in every mode of the table).
    db_only: Option<&'static str>,
    /// Legitimate differences between the modes' output, masked (in order) before comparing.
    differs: Vec<&'static Differs>,
}

/// How a row's output legitimately differs between `--db` and `--server`: why, and a rule that
/// rewrites each mode's output (`server` tells which) into a common form. The row's `out` and `err`
/// substrings are checked against the rewritten output.
struct Differs {
    why: &'static str,
    mask: fn(server: bool, &str) -> String,
}

/// Rewrites `audit` output, a JSON array or the table, entry by entry: `edit` gets each entry as a
/// JSON object (a table row as `seq`, `at`, `actor` and `text` strings, the actor as printed) and
/// returns false to drop it. The table comes back with its cells joined by ` | `.
fn audit_entries(s: &str, edit: impl Fn(&mut serde_json::Value) -> bool) -> String {
    use serde_json::{json, Value};
    if let Ok(Value::Array(mut entries)) = serde_json::from_str::<Value>(s) {
        entries.retain_mut(edit);
        return serde_json::to_string_pretty(&entries).expect("json") + "\n";
    }
    let mut out = String::new();
    for (n, line) in s.lines().enumerate() {
        let cells: Vec<&str> = if line.contains(" | ") {
            line.split(" | ").collect()
        } else {
            // Cells are separated by two or more spaces; the last one is the text.
            let mut cells: Vec<&str> = line.splitn(4, "  ").map(str::trim).collect();
            if let Some(last) = cells.pop() {
                let mut rest: Vec<&str> = last.split("  ").map(str::trim).collect();
                rest.retain(|c| !c.is_empty());
                cells.retain(|c| !c.is_empty());
                let text = rest.pop().unwrap_or_default();
                cells.extend(rest);
                cells.push(text);
            }
            cells
        };
        if n == 0 || cells.len() != 4 {
            out.push_str(&cells.join(" | "));
            out.push('\n');
            continue;
        }
        let mut e = json!({ "seq": cells[0], "at": cells[1], "actor": cells[2], "text": cells[3] });
        if edit(&mut e) {
            let cell = |k: &str| {
                e[k].as_str()
                    .map_or_else(|| e[k].to_string(), str::to_owned)
            };
            out.push_str(&["seq", "at", "actor", "text"].map(cell).join(" | "));
            out.push('\n');
        }
    }
    out
}

/// The audit actor: the CLI writes as `cli` with `--db`, the server as its caller (principal 1),
/// which the entry is then indexed under too (`principals` gets a 1 appended when absent). Only
/// those actors become `CALLER`, and with `--db` their entries get the 1 the server adds; `system`
/// (the seed) stays.
const AUDIT_ACTOR: Differs = Differs {
    why: "the actor is `cli` with --db and the calling principal (also listed in `principals`) with --server",
    mask: |server, s| {
        audit_entries(s, |e| {
            let ours = if server {
                e["actor"] == serde_json::json!({ "principal": 1 }) || e["actor"] == "principal 1"
            } else {
                e["actor"] == "cli"
            };
            if ours {
                e["actor"] = "CALLER".into();
                if let Some(ps) = e["principals"].as_array_mut().filter(|_| !server) {
                    if !ps.contains(&1.into()) {
                        ps.push(1.into());
                    }
                }
            }
            true
        })
    },
};

fn c(args: &[&'static str], code: i32, out: &[&'static str], err: &[&'static str]) -> Case {
    Case {
        args: args.to_vec(),
        stdin: None,
        env: Vec::new(),
        code,
        out: out.to_vec(),
        err: err.to_vec(),
        not_out: Vec::new(),
        db_only: None,
        differs: Vec::new(),
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
    /// The row runs with `--db` only, for the reason given (it opens a directory itself, ...).
    fn db_only(mut self, why: &'static str) -> Self {
        self.db_only = Some(why);
        self
    }
    /// The row's output differs between the modes as `d` says; compared after its mask.
    fn differs(mut self, d: &'static Differs) -> Self {
        assert!(!d.why.is_empty());
        self.differs.push(d);
        self
    }

    /// Its output in one mode after the row's masks.
    fn masked(&self, server: bool, s: &str) -> String {
        self.differs
            .iter()
            .fold(s.to_owned(), |s, d| (d.mask)(server, &s))
    }
}

/// Masks what differs between any two runs: secrets and display prefixes after `kw_`, unix times
/// (ten digits or more) and UTC dates (`YYYY-MM-DD HH:MM:SSZ`).
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

/// One way of reaching the key table: `--db DIR`, or `--server URL` with the caller's credential in
/// `KEYWARD_AUTHORIZATION`. A scratch directory with `{db}`, `{tmp}`, `{p}` (bundled policies),
/// `{d}` (fixtures) and variables captured from earlier output (e.g. `{secret}`).
struct Mode {
    /// `(URL, Authorization value)` for `--server`; `None` for `--db {db}`.
    server: Option<(String, String)>,
    tmp: TempDir,
    vars: HashMap<String, String>,
}

/// A row's output in one mode.
struct Ran {
    out: String,
    err: String,
}

impl Mode {
    fn new(seeded: bool, server: bool) -> Mode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = tmp.path().join("db");
        let mut vars = HashMap::new();
        vars.insert("db".into(), db.display().to_string());
        vars.insert("tmp".into(), tmp.path().display().to_string());
        vars.insert("p".into(), format!("{ROOT}/policies"));
        vars.insert("d".into(), format!("{ROOT}/tests/data/cli"));
        let server = if server {
            Some(server::serve_cli_table(&db))
        } else {
            if seeded {
                let t = keyward::store::KeyTable::open(&db, Default::default()).expect("open");
                server::seed_cli_caller(&t);
            }
            None
        };
        Mode { server, tmp, vars }
    }

    fn name(&self) -> &'static str {
        if self.server.is_some() {
            "--server"
        } else {
            "--db"
        }
    }

    fn subst(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// The arguments, `{table}` expanded to `--db DIR` or `--server URL`.
    fn args(&self, case: &Case) -> Vec<String> {
        let mut args = Vec::new();
        for a in &case.args {
            if *a == "{table}" {
                match &self.server {
                    Some((url, _)) => args.extend(["--server".to_owned(), url.clone()]),
                    None => args.extend(["--db".to_owned(), self.subst("{db}")]),
                }
            } else {
                args.push(self.subst(a));
            }
        }
        args
    }

    /// What differs between runs in different modes anyway: the scratch directory, the URL,
    /// the flag clap's usage line repeats, secrets and times.
    fn normalize(&self, s: &str) -> String {
        let mut s = s.replace(&self.subst("{tmp}"), "{tmp}");
        if let Some((url, _)) = &self.server {
            s = s.replace(url, "{server}");
        }
        let s = s
            .replace("--db <DIR>", "{table}")
            .replace("--server <URL>", "{table}");
        mask(&s)
    }

    /// Runs one case and checks it; returns its output.
    fn run(&self, i: usize, case: &Case) -> Ran {
        let args = self.args(case);
        let mut cmd = Command::new(BIN);
        cmd.args(&args).current_dir(self.tmp.path());
        cmd.env_remove("KEYWARD_PEPPER")
            .env_remove("KEYWARD_KEY")
            .env_remove("KEYWARD_AUTHORIZATION");
        if let Some((_, authorization)) = &self.server {
            cmd.env("KEYWARD_AUTHORIZATION", authorization);
        }
        for (k, v) in &case.env {
            cmd.env(k, self.subst(v));
        }
        cmd.write_stdin(case.stdin.map(|s| self.subst(s)).unwrap_or_default());
        let o = cmd.output().expect("run keyward");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let ctx = format!(
            "row {i} {}: keyward {args:?}\n--- stdout:\n{out}--- stderr:\n{err}",
            self.name()
        );
        assert_eq!(o.status.code(), Some(case.code), "exit code, {ctx}");
        let server = self.server.is_some();
        let (seen_out, seen_err) = (case.masked(server, &out), case.masked(server, &err));
        for s in &case.out {
            assert!(
                seen_out.contains(&self.subst(s)),
                "stdout lacks {s:?}, {ctx}"
            );
        }
        for s in &case.err {
            assert!(
                seen_err.contains(&self.subst(s)),
                "stderr lacks {s:?}, {ctx}"
            );
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
        Ran { out, err }
    }
}

/// The modes a table's rows run in, each with its own key table.
struct Env {
    modes: Vec<Mode>,
}

impl Env {
    /// `--db` only, on a table that does not exist yet (commands other than the table commands,
    /// and tests about `authorize`, which has no `--server` mode).
    fn new() -> Env {
        Env {
            modes: vec![Mode::new(false, false)],
        }
    }

    /// `--db` and `--server`, each on a table seeded with the server's caller.
    fn both() -> Env {
        Env {
            modes: vec![Mode::new(true, false), Mode::new(true, true)],
        }
    }

    /// Runs one case in every mode it applies to, checks each run and compares them; returns the
    /// `--db` stdout.
    fn run(&self, i: usize, case: &Case) -> String {
        self.run_each(i, case).swap_remove(0).1.out
    }

    /// Runs one case in every mode it applies to, checks each run and compares them; returns each
    /// mode's output, by mode index.
    fn run_each(&self, i: usize, case: &Case) -> Vec<(usize, Ran)> {
        let both = self.modes.len() > 1;
        assert!(
            !both || case.db_only.is_some() || case.args.contains(&"{table}"),
            "row {i} {:?}: a row of a two-mode table takes `{{table}}` or says why it is db_only",
            case.args
        );
        let runs: Vec<(usize, Ran)> = self
            .modes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.server.is_none() || case.db_only.is_none())
            .map(|(n, m)| (n, m.run(i, case)))
            .collect();
        if let [(a, ra), (b, rb)] = runs.as_slice() {
            let common = |m: &Mode, s: &str| m.normalize(&case.masked(m.server.is_some(), s));
            let (a, b) = (&self.modes[*a], &self.modes[*b]);
            let why: Vec<&str> = case.differs.iter().map(|d| d.why).collect();
            for (what, x, y) in [("stdout", &ra.out, &rb.out), ("stderr", &ra.err, &rb.err)] {
                let (x, y) = (common(a, x), common(b, y));
                assert!(
                    x == y,
                    "row {i} {:?}: {what} differs between --db and --server (beyond {why:?})\n\
                     --- --db:\n{x}--- --server:\n{y}",
                    case.args
                );
            }
        }
        runs
    }

    fn run_all(&self, cases: &[Case]) {
        for (i, case) in cases.iter().enumerate() {
            self.run(i, case);
        }
    }

    /// Runs a case and captures, in each mode, the value of `"field": "..."` from its JSON output
    /// as `{var}`.
    fn capture(&mut self, case: Case, field: &str, var: &str) {
        for (n, ran) in self.run_each(0, &case) {
            let v: serde_json::Value = serde_json::from_str(&ran.out).expect("json output");
            let found = v
                .pointer(field)
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .unwrap_or_else(|| panic!("no {field} in {}", ran.out));
            self.modes[n].vars.insert(var.to_owned(), found);
        }
    }

    /// A file in the (first) mode's scratch directory.
    fn path(&self, name: &str) -> PathBuf {
        self.modes[0].tmp.path().join(name)
    }

    /// Writes `{tmp}/NAME` in every mode's scratch directory.
    fn write(&self, name: &str, text: &str) {
        for m in &self.modes {
            std::fs::write(m.tmp.path().join(name), text).expect("write");
        }
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
    const OPENS_DIR: &str = "opens the directory itself";
    let mut env = Env::both();
    env.run_all(&[
        c(
            &["principal", "list", "--db", "{tmp}/nodb"],
            2,
            &[],
            &["error: database `{tmp}/nodb` does not exist"],
        )
        .db_only(OPENS_DIR),
        c(
            &["principal", "add", "alice@example.com", "{table}"],
            0,
            &["added principal 2 `alice@example.com` (user)"],
            &[],
        ),
        c(
            &["principal", "add", "ALICE@example.com", "{table}"],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &["principal", "add", "bad login", "{table}"],
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
                "{table}",
                "--json",
            ],
            0,
            &["\"id\": 3", "\"kind\": \"company\""],
            &[],
        ),
        c(
            &["principal", "add", "robot", "--kind", "robot", "{table}"],
            2,
            &[],
            &["error: invalid value 'robot'"],
        ),
        c(
            &["principal", "add", "bob@example.com", "{table}"],
            0,
            &["added principal 4"],
            &[],
        ),
        c(
            &["principal", "remove", "nobody", "{table}"],
            2,
            &[],
            &["error: no principal `nobody` (by login or id)"],
        ),
        c(
            &["principal", "remove", "4", "{table}"],
            0,
            &["removed principal 4 `bob@example.com` with 0 key(s) and its bindings"],
            &[],
        ),
        c(
            &[
                "bind",
                "{table}",
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
                "{table}",
                "2",
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
                "{table}",
                "2",
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
                "{table}",
                "2",
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
                "{table}",
                "2",
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
            &["bind", "{table}", "ghost", "analyst", "environment:1"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["bind", "{table}", "2", "analyst", "environment:1"],
            0,
            &["bound `analyst`"],
            &[],
        ),
        c(
            &["unbind", "{table}", "2", "analyst", "environment:1"],
            0,
            &["unbound `analyst` at `environment:1` from `alice@example.com`"],
            &[],
        ),
        c(
            &["unbind", "{table}", "2", "analyst", "environment:1"],
            2,
            &[],
            &["error: binding"],
        ),
        c(
            &[
                "workspace",
                "add",
                "{table}",
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
        c(
            &[
                "workspace",
                "add",
                "{table}",
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
        c(
            &[
                "workspace",
                "add",
                "{table}",
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
        c(
            &[
                "workspace",
                "add",
                "{table}",
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
        c(
            &["workspace", "remove", "{table}", "pk-tmp"],
            0,
            &["removed workspace `pk-tmp`"],
            &[],
        ),
        c(
            &["workspace", "remove", "{table}", "pk-tmp"],
            2,
            &[],
            &["error: workspace `pk-tmp` not found"],
        ),
        c(
            &["workspace", "list", "{table}"],
            0,
            &["PUBLIC KEY", "pk-main", "environment:1/project:9"],
            &[],
        )
        .not_out("pk-tmp"),
        c(
            &["workspace", "list", "{table}", "--json"],
            0,
            &["\"public_key\": \"pk-main\"", "\"company\": 3"],
            &[],
        ),
        c(
            &["workspace", "list", "--db", "{tmp}/nodb"],
            2,
            &[],
            &["does not exist"],
        )
        .db_only(OPENS_DIR),
        c(
            &["principal", "list", "{table}"],
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
            &["principal", "list", "{table}", "--json"],
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
                "{table}",
                "--owner",
                "alice@example.com",
                "--name",
                "ci",
                "--scope",
                "environment:1",
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
                "{table}",
                "--owner",
                "2",
                "--name",
                "reports",
                "--scope",
                "environment:1",
                "--permission",
                "read_data,read_reports",
                "--read-only",
                "--expires-in",
                "30d",
            ],
            0,
            &[
                "created key 3 `reports` for `alice@example.com`",
                "secret: kw_",
                "store it now, it will not be shown again",
            ],
            &[],
        ),
        c(
            &["key", "create", "{table}", "--owner", "2", "--name", "ci"],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &[
                "key",
                "create",
                "{table}",
                "--owner",
                "2",
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
                "key", "create", "{table}", "--owner", "ghost", "--name", "x",
            ],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["key", "create", "{table}", "--owner", "2"],
            2,
            &[],
            &["error:", "--name"],
        ),
        c(
            &["key", "list", "{table}"],
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
        )
        .not_out("{secret}"),
        c(
            &[
                "key",
                "list",
                "{table}",
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
            &["key", "list", "{table}", "--owner", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        // Import: stdin, a file of many (bulk, with progress), and every refusal.
        c(
            &[
                "key",
                "import",
                "{table}",
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
        c(
            &[
                "key",
                "import",
                "{table}",
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
        c(
            &[
                "key",
                "import",
                "{table}",
                "--owner",
                "2",
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
                "{table}",
                "--owner",
                "2",
                "--file",
                "{d}/keys-dup.txt",
            ],
            2,
            &[],
            &["error: line 2 of `{d}/keys-dup.txt`: the same secret as line 1"],
        ),
        c(
            &[
                "key", "import", "{table}", "--owner", "2", "--name", "bulk-1",
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
                "{table}",
                "--owner",
                "2",
                "--policy",
                "{p}/api-token.policy",
            ],
            2,
            &[],
            &["error: line 1 of stdin:"],
        )
        .stdin("kw_notAValidGeneratedKeyAtAll1234\n"),
        c(
            &["key", "import", "{table}", "--owner", "2"],
            2,
            &[],
            &["error: no secret in stdin"],
        )
        .stdin("\n\n"),
        c(
            &[
                "key",
                "import",
                "{table}",
                "--owner",
                "2",
                "--file",
                "{tmp}/none.txt",
            ],
            2,
            &[],
            &["error: cannot read `{tmp}/none.txt`"],
        ),
        c(
            &[
                "key", "import", "{table}", "--owner", "2", "--secret", "hunter2",
            ],
            2,
            &[],
            &["error: secrets are never read from the command line"],
        ),
        c(
            &[
                "key",
                "import",
                "{table}",
                "--owner",
                "2",
                "--json",
                "--name",
                "j",
                "--scope",
                "environment:1",
            ],
            0,
            &["\"imported\": true", "\"name\": \"j\""],
            &[],
        )
        .stdin("json-import-secret-000000000001"),
        // Lifecycle.
        c(
            &["key", "rename", "{table}", "4", "legacy-renamed"],
            0,
            &["renamed key 4 `legacy` to `legacy-renamed`"],
            &[],
        ),
        c(
            &["key", "rename", "{table}", "99", "x"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "rename", "{table}", "4", "ci"],
            2,
            &[],
            &["error: conflict"],
        ),
        c(
            &["key", "deactivate", "{table}", "3"],
            0,
            &["deactivated key 3 `reports`"],
            &[],
        ),
        c(
            &["key", "deactivate", "{table}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(&["key", "list", "{table}"], 0, &["inactive"], &[]),
        c(
            &["key", "activate", "{table}", "3"],
            0,
            &["activated key 3 `reports`"],
            &[],
        ),
        c(
            &["key", "activate", "{table}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "rotate", "{table}", "4", "--overlap", "1h"],
            0,
            &[
                "rotated key 4 `legacy-renamed`: it keeps working until",
                "secret: kw_",
                "store it now",
            ],
            &[],
        ),
        c(
            &["key", "rotate", "{table}", "4", "--overlap", "soon"],
            2,
            &[],
            &["error: invalid duration `soon`"],
        ),
        c(
            &["key", "rotate", "{table}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "regenerate", "{table}", "5", "--json"],
            0,
            &[
                "\"secret\": \"kw_",
                "\"note\": \"store it now, it will not be shown again\"",
            ],
            &[],
        ),
        c(
            &["key", "regenerate", "{table}", "99"],
            2,
            &[],
            &["error: no key 99"],
        ),
        c(
            &["key", "delete", "{table}", "6"],
            0,
            &["deleted key 6 `bulk-2`"],
            &[],
        ),
        c(
            &["key", "delete", "{table}", "6"],
            2,
            &[],
            &["error: no key 6"],
        ),
        c(
            &["key", "delete", "{table}", "five"],
            2,
            &[],
            &["error: invalid value 'five'"],
        ),
        // Audit.
        c(
            &["audit", "{table}", "--limit", "3"],
            0,
            &[
                "SEQ",
                "TIME",
                "ACTOR",
                "key 6 `bulk-2` of principal 2 deleted",
                "CALLER",
            ],
            &[],
        )
        .not_out("principal 2 `alice@example.com` added")
        .differs(&AUDIT_ACTOR),
        c(
            &[
                "audit",
                "{table}",
                "--principal",
                "alice@example.com",
                "--json",
            ],
            0,
            &[
                "\"op\": \"key_created\"",
                "\"op\": \"bound\"",
                "\"actor\": \"CALLER\"",
            ],
            &[],
        )
        .not_out("{secret}")
        .differs(&AUDIT_ACTOR),
        c(
            &["audit", "{table}", "--principal", "ghost"],
            2,
            &[],
            &["error: no principal `ghost`"],
        ),
        c(
            &["audit", "--db", "{tmp}/nodb"],
            2,
            &[],
            &["error: database `{tmp}/nodb` does not exist"],
        )
        .db_only(OPENS_DIR),
        c(
            &["audit", "{table}", "--limit", "many"],
            2,
            &[],
            &["error: invalid value 'many'"],
        ),
        c(
            &["audit", "--db", "{d}/keys.txt"],
            2,
            &[],
            &["is not a directory"],
        )
        .db_only(OPENS_DIR),
        // The seeded principal's own key: with --server a self rule lets the caller manage its own
        // keys, and they are not confined to its admin scope.
        c(
            &[
                "key",
                "create",
                "{table}",
                "--owner",
                "root@example.com",
                "--name",
                "own",
            ],
            0,
            &["created key 11 `own` for `root@example.com`"],
            &[],
        ),
        c(
            &["key", "list", "{table}", "--owner", "1", "--json"],
            0,
            &["\"name\": \"own\"", "\"scope\": null"],
            &[],
        ),
    ]);
}

/// `--db` only: `authorize` has no `--server` mode, and it opens the table its setup rows fill.
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

/// An import of more than one chunk (5,000 keys): one `keys_imported` entry and one progress line
/// per chunk in both modes; a secret already stored in the second chunk is found before anything
/// is written, with `--db` by its checks, with `--server` by the server's dry run of every chunk.
#[test]
fn key_import_in_chunks() {
    let env = Env::both();
    let secrets = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| format!("chunked-import-secret-{i:06}\n"))
            .collect()
    };
    env.write("many.txt", &secrets(0, 5003));
    // 5,001 fresh secrets, then one of the first file's, on line 5,002 (the second chunk).
    env.write(
        "again.txt",
        &(secrets(10_000, 15_001) + "chunked-import-secret-000007\n"),
    );
    env.run_all(&[
        c(
            &["principal", "add", "alice@example.com", "{table}"],
            0,
            &["added principal 2"],
            &[],
        ),
        c(
            &[
                "key",
                "import",
                "{table}",
                "--owner",
                "2",
                "--file",
                "{tmp}/many.txt",
                "--name",
                "m",
                "--scope",
                "environment:1",
            ],
            0,
            &["imported 5003 keys for `alice@example.com` (ids 2..=5004)"],
            &["importing keys: 5000/5003\nimporting keys: 5003/5003\n"],
        ),
        c(
            &["audit", "{table}", "--limit", "3", "--json"],
            0,
            &[
                "\"text\": \"keys 5002 to 5004 (3 key(s)) imported for 1 principal(s)\"",
                "\"text\": \"keys 2 to 5001 (5000 key(s)) imported for 1 principal(s)\"",
                "\"op\": \"principal_added\"",
            ],
            &[],
        )
        .differs(&AUDIT_ACTOR),
        c(
            &[
                "key",
                "import",
                "{table}",
                "--owner",
                "2",
                "--file",
                "{tmp}/again.txt",
                "--name",
                "again",
                "--scope",
                "environment:1",
            ],
            2,
            &[],
            &["error: line 5002 of `{tmp}/again.txt`: this secret is already in the key table\n"],
        ),
        // Nothing of the failed import was written.
        c(
            &["audit", "{table}", "--limit", "1", "--json"],
            0,
            &["keys 5002 to 5004 (3 key(s)) imported"],
            &[],
        )
        .differs(&AUDIT_ACTOR),
        c(
            &["principal", "list", "{table}", "--json"],
            0,
            &["\"keys\": 5003"],
            &[],
        ),
    ]);
}

/// `--db` only: the pepper is read by whoever opens the table (with `--server`, the server).
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

/// `--db` only: a second process opening the directory.
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
