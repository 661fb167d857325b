//! `--server URL`: the table commands through the admin API (docs/admin-api.md) instead of opening
//! the database, with the same output and exit codes. The caller's credential comes from
//! `KEYWARD_AUTHORIZATION` (a whole `Authorization` header value), `KEYWARD_KEY` (sent as
//! `Bearer KEY`) or `--key-file`, never from the command line. Plain HTTP to loopback only.

use std::time::Duration;

use serde_json::{json, Value};

use crate::args::DbArgs;
use crate::CliError;

/// A connection to the admin API.
pub struct Remote {
    base: String,
    authorization: String,
    agent: ureq::Agent,
}

/// An error answer of the admin API.
struct Refused {
    /// The HTTP status.
    status: u16,
    /// The stable code, e.g. `conflict`.
    code: String,
    /// The one-line message.
    message: String,
    /// For the batch import: the key refused, by its index in the request.
    index: Option<usize>,
}

impl Refused {
    /// The error line: the message, and for a refusal (401, 403) the code.
    fn text(&self) -> String {
        Refused::line(self.status, &self.message, &self.code)
    }

    /// An error line from the parts of an answer.
    fn line(status: u16, message: &str, code: &str) -> String {
        match status {
            401 | 403 => format!("the server refused: {message} ({code})"),
            _ => message.to_owned(),
        }
    }
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `url` is `http://` to a loopback host.
fn loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Remote {
    /// The server of `--server`, if given, with the caller's credential.
    pub fn from_args(db: &DbArgs) -> Result<Option<Remote>, CliError> {
        let Some(url) = &db.server else {
            return Ok(None);
        };
        if db.pepper_file.is_some() {
            return Err(not_with_server(
                "--pepper-file",
                "the server holds the pepper",
            ));
        }
        if !loopback(url) {
            return Err(CliError::new(format!(
                "`{url}` is not a loopback http:// URL: the admin API is plain HTTP, so the CLI \
                 sends credentials to loopback addresses only"
            )));
        }
        let authorization = credential(db)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Some(Remote {
            base: url.trim_end_matches('/').to_owned(),
            authorization,
            agent,
        }))
    }

    /// Sends one request; the body of a 2xx answer, or the API's error answer. Only a failure to
    /// talk to the server at all is an `Err`.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Result<Value, Refused>, CliError> {
        let url = format!("{}{path}", self.base);
        let fail = |e: ureq::Error| CliError::new(format!("cannot reach `{}`: {e}", self.base));
        let auth = self.authorization.as_str();
        let mut resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", auth).call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .content_type("application/json")
                .send(b.to_string()),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .send_empty(),
        }
        .map_err(fail)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(fail)?;
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            CliError::new(format!(
                "`{}` answered {status} without a JSON body: is it keyward's admin API?",
                self.base
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(Ok(v));
        }
        Ok(Err(Refused {
            status,
            code: v["code"].as_str().unwrap_or("error").to_owned(),
            message: v["message"]
                .as_str()
                .unwrap_or("the server refused")
                .to_owned(),
            index: v["index"].as_u64().and_then(|i| usize::try_from(i).ok()),
        }))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.exchange(method, path, body)?
            .map_err(|r| CliError::new(r.text()))
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call("POST", path, Some(&body))
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call("DELETE", path, None)
    }

    /// A principal by login or id, with the CLI's message when there is none.
    pub fn principal(&self, text: &str) -> Result<Value, CliError> {
        self.get(&format!("/principals/{}", percent(text)))
            .map_err(|e| {
                if e.message.ends_with("not found") {
                    CliError::new(format!("no principal `{text}` (by login or id)"))
                } else {
                    e
                }
            })
    }

    /// A key by id, with the CLI's message when there is none.
    pub fn key(&self, id: u64) -> Result<Value, CliError> {
        self.get(&format!("/keys/{id}")).map_err(|e| {
            if e.message.ends_with("not found") {
                CliError::new(format!("no key {id}"))
            } else {
                e
            }
        })
    }
}

/// The usage error for an option that `--server` mode has no use for.
fn not_with_server(option: &str, why: &str) -> CliError {
    CliError::new(format!("{option} cannot be used with --server: {why}"))
}

/// Refuses `--policy` on a command that generates a key, with `--server`: the server's policy
/// decides the key prefix.
pub fn no_policy(db: &DbArgs, policy: Option<&std::path::Path>) -> Result<(), CliError> {
    if db.server.is_some() && policy.is_some() {
        return Err(not_with_server(
            "--policy",
            "the server's policy decides the key prefix",
        ));
    }
    Ok(())
}

/// The `Authorization` header value: `KEYWARD_AUTHORIZATION`, else `Bearer` + `--key-file` or
/// `KEYWARD_KEY`.
fn credential(db: &DbArgs) -> Result<String, CliError> {
    if let Some(path) = &db.key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(format!("cannot read key file `{}`: {e}", path.display()))
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(CliError::new(format!(
                "key file `{}` is empty",
                path.display()
            )));
        }
        return Ok(format!("Bearer {key}"));
    }
    if let Ok(v) = std::env::var("KEYWARD_AUTHORIZATION") {
        if !v.trim().is_empty() {
            return Ok(v.trim().to_owned());
        }
    }
    match std::env::var("KEYWARD_KEY") {
        Ok(k) if !k.trim().is_empty() => Ok(format!("Bearer {}", k.trim())),
        _ => Err(CliError::new(
            "--server needs the caller's key: set KEYWARD_KEY (sent as `Bearer KEY`), \
             KEYWARD_AUTHORIZATION (a whole `Authorization` value) or use --key-file",
        )),
    }
}

/// A principal JSON from the API without the list-only fields, as `principal add --json` prints it.
pub fn bare_principal(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("bindings");
        o.remove("keys");
    }
    v
}

/// `{"name": ..}` and the limits of a new key, as the API takes them.
pub fn key_body(name: &str, new: &keyward::store::NewKey, read_only: bool) -> Value {
    json!({
        "name": name,
        "read_only": read_only,
        "permissions": new.permissions,
        "scope": new.scope,
        "expires_at": new.expires_at,
        "admin": matches!(new.kind, keyward::store::KeyKind::Admin),
    })
}

// ---- the commands ---------------------------------------------------------------------------------

use std::collections::HashMap;
use std::process::ExitCode;

use crate::args::{
    AuditArgs, BindArgs, KeyCreateArgs, KeyIdArgs, KeyImportArgs, KeyListArgs, KeyRenameArgs,
    KeyRotateArgs, KeySecretArgs, ListArgs, PrincipalAddArgs, PrincipalRefArgs, WorkspaceAddArgs,
    WorkspaceRemoveArgs,
};
use crate::out::{kind_name, now, parse_duration, print_json, print_table, utc};
use crate::CmdResult;

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

pub fn principal_add(r: &Remote, a: &PrincipalAddArgs) -> CmdResult {
    let kind = kind_name(crate::table_cmd::kind(a.kind));
    let p = r.post(
        "/principals",
        json!({ "login": a.login, "kind": kind, "default_workspace": a.default_workspace }),
    )?;
    if a.json {
        print_json(&bare_principal(p));
    } else {
        println!(
            "added principal {} `{}` ({})",
            u(&p, "id"),
            s(&p, "login"),
            s(&p, "kind")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn principal_list(r: &Remote, a: &ListArgs) -> CmdResult {
    let all = r.get("/principals")?;
    let all = all.as_array().cloned().unwrap_or_default();
    if a.json {
        print_json(&Value::Array(all));
    } else if all.is_empty() {
        println!("no principals");
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|p| {
                let bindings: Vec<String> = p["bindings"]
                    .as_array()
                    .map(|bs| {
                        bs.iter()
                            .map(|b| format!("{}@{}", s(b, "role"), s(b, "scope")))
                            .collect()
                    })
                    .unwrap_or_default();
                let ws = s(p, "default_workspace");
                vec![
                    u(p, "id").to_string(),
                    s(p, "kind"),
                    s(p, "login"),
                    u(p, "keys").to_string(),
                    if ws.is_empty() { "-".into() } else { ws },
                    if bindings.is_empty() {
                        "-".to_owned()
                    } else {
                        bindings.join(" ")
                    },
                ]
            })
            .collect();
        print_table(
            &["ID", "KIND", "LOGIN", "KEYS", "WORKSPACE", "BINDINGS"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn principal_remove(r: &Remote, a: &PrincipalRefArgs) -> CmdResult {
    let p = r.principal(&a.principal)?;
    let removed = r.delete(&format!("/principals/{}", u(&p, "id")))?;
    println!(
        "removed principal {} `{}` with {} key(s) and its bindings",
        u(&removed, "id"),
        s(&removed, "login"),
        u(&removed, "keys_removed")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn bind(r: &Remote, a: &BindArgs, add: bool) -> CmdResult {
    let p = r.principal(&a.principal)?;
    let path = format!("/principals/{}/bindings", u(&p, "id"));
    if add {
        r.post(&path, json!({ "role": a.role, "scope": a.scope }))?;
        println!(
            "bound `{}` at `{}` to `{}`",
            a.role,
            a.scope,
            s(&p, "login")
        );
    } else {
        r.delete(&format!(
            "{path}?role={}&scope={}",
            percent(&a.role),
            percent(&a.scope)
        ))?;
        println!(
            "unbound `{}` at `{}` from `{}`",
            a.role,
            a.scope,
            s(&p, "login")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn workspace_add(r: &Remote, a: &WorkspaceAddArgs) -> CmdResult {
    let company = match &a.company {
        Some(c) => Some(u(&r.principal(c)?, "id").to_string()),
        None => None,
    };
    let w = r.post(
        "/workspaces",
        json!({ "public_key": a.public_key, "name": a.name, "scope": a.scope, "company": company }),
    )?;
    println!(
        "added workspace `{}` `{}` at `{}`",
        s(&w, "public_key"),
        s(&w, "name"),
        s(&w, "scope")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn workspace_list(r: &Remote, a: &ListArgs) -> CmdResult {
    let all = r
        .get("/workspaces")?
        .as_array()
        .cloned()
        .unwrap_or_default();
    if a.json {
        print_json(&Value::Array(all));
    } else if all.is_empty() {
        println!("no workspaces");
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|w| {
                let c = s(w, "company");
                vec![
                    s(w, "public_key"),
                    s(w, "name"),
                    s(w, "scope"),
                    if c.is_empty() { "-".into() } else { c },
                ]
            })
            .collect();
        print_table(&["PUBLIC KEY", "NAME", "SCOPE", "COMPANY"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn workspace_remove(r: &Remote, a: &WorkspaceRemoveArgs) -> CmdResult {
    let w = r.delete(&format!("/workspaces/{}", percent(&a.public_key)))?;
    println!("removed workspace `{}`", s(&w, "public_key"));
    Ok(ExitCode::SUCCESS)
}

pub fn audit(r: &Remote, a: &AuditArgs) -> CmdResult {
    let mut path = format!("/audit?limit={}", a.limit);
    if let Some(p) = &a.principal {
        path.push_str(&format!("&principal={}", u(&r.principal(p)?, "id")));
    }
    let entries = r.get(&path)?["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if a.json {
        print_json(&Value::Array(entries));
    } else if entries.is_empty() {
        println!("no audit entries");
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let actor = match &e["actor"] {
                    Value::String(s) => s.clone(),
                    v => format!("principal {}", u(v, "principal")),
                };
                vec![
                    u(e, "seq").to_string(),
                    utc(u(e, "at")),
                    actor,
                    s(e, "text"),
                ]
            })
            .collect();
        print_table(&["SEQ", "TIME", "ACTOR", "WHAT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a key that was just generated, with its secret, once (as `keys::show_secret`).
fn show_secret(verb: &str, v: &Value, owner: &str, json_out: bool) {
    if json_out {
        let mut out = v.clone();
        if let Some(o) = out.as_object_mut() {
            o.remove("old");
            o.remove("old_valid_until");
        }
        print_json(&out);
        eprintln!(
            "note: the secret is shown once; {}",
            crate::keys::SHOWN_ONCE
        );
    } else {
        let k = &v["key"];
        println!(
            "{verb} key {} `{}` for `{owner}` ({}…)",
            u(k, "id"),
            s(k, "name"),
            s(k, "display_prefix")
        );
        println!("secret: {}", s(v, "secret"));
        println!("{}", crate::keys::SHOWN_ONCE);
    }
}

pub fn key_create(r: &Remote, a: &KeyCreateArgs) -> CmdResult {
    let owner = r.principal(&a.owner)?;
    let new = crate::keys::new_key(0, a.name.clone(), &a.limits)?;
    let v = r.post(
        &format!("/principals/{}/keys", u(&owner, "id")),
        key_body(&a.name, &new, a.limits.read_only),
    )?;
    show_secret("created", &v, &s(&owner, "login"), a.json);
    Ok(ExitCode::SUCCESS)
}

pub fn key_import(
    r: &Remote,
    a: &KeyImportArgs,
    secrets: &[(usize, keyward::token::Secret)],
    source: &str,
    format: &keyward::token::KeyFormat,
) -> CmdResult {
    let owner = r.principal(&a.owner)?;
    let owner_id = u(&owner, "id");
    // Check everything that can be checked here before sending anything, as `--db` does. The
    // server holds the pepper, so it alone finds a secret it already holds (below).
    let taken: std::collections::HashSet<String> = r
        .get(&format!("/principals/{owner_id}/keys"))?
        .as_array()
        .map(|ks| ks.iter().map(|k| s(k, "name")).collect())
        .unwrap_or_default();
    let hasher = keyward::token::Hasher::new(None);
    crate::keys::check_secrets(
        &crate::keys::Checks {
            secrets,
            source,
            format,
            hash: &|s| hasher.hash(s),
            owner: &s(&owner, "login"),
            taken: &taken,
            name: &a.name,
        },
        |_| Ok(false),
    )?;
    let total = secrets.len();
    let template = crate::keys::new_key(0, String::new(), &a.limits)?;
    let names: Vec<String> = (0..total)
        .map(|i| crate::keys::import_name(&a.name, i, total))
        .collect();
    let plan = crate::keys::import_chunks(secrets, &names, &template);
    let path = format!("/principals/{owner_id}/keys/import-batch");
    let body = |range: &std::ops::Range<usize>| {
        let keys: Vec<Value> = range
            .clone()
            .map(|i| {
                let mut item = key_body(&names[i], &template, template.read_only);
                item["secret"] = json!(secrets[i].1.expose());
                item
            })
            .collect();
        json!({ "keys": keys })
    };
    // `--db` checks every line before writing anything: with more than one chunk, so does the
    // server (`dry_run`), which alone finds a secret it already holds.
    if plan.len() > 1 {
        for range in &plan {
            match r.exchange("POST", &format!("{path}?dry_run=true"), Some(&body(range))) {
                Ok(Ok(_)) => {}
                Ok(Err(refused)) => {
                    return Err(import_failure(secrets, source, range, Ok(refused), 0))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut done: Vec<Value> = Vec::with_capacity(total);
    for range in &plan {
        let v = match r.exchange("POST", &path, Some(&body(range))) {
            Ok(Ok(v)) => v,
            Ok(Err(refused)) => {
                return Err(import_failure(
                    secrets,
                    source,
                    range,
                    Ok(refused),
                    done.len(),
                ))
            }
            Err(e) => return Err(import_failure(secrets, source, range, Err(e), done.len())),
        };
        done.extend(v["keys"].as_array().cloned().unwrap_or_default());
        crate::keys::progress(done.len(), total);
    }
    if a.json {
        print_json(&Value::Array(done));
    } else if let [k] = done.as_slice() {
        println!(
            "imported key {} `{}` for `{}` ({}…)",
            u(k, "id"),
            s(k, "name"),
            s(&owner, "login"),
            s(k, "display_prefix")
        );
    } else {
        println!(
            "imported {total} keys for `{}` (ids {}..={})",
            s(&owner, "login"),
            done.first().map_or(0, |k| u(k, "id")),
            done.last().map_or(0, |k| u(k, "id"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a chunk of `key import` failed, worded as with `--db`: the line of the key the server refused
/// (it names the key by its index in the chunk) and the message of the check `--db` makes before
/// writing; else the server's error, after the chunk's lines when keys were imported before it.
fn import_failure(
    secrets: &[(usize, keyward::token::Secret)],
    source: &str,
    chunk: &std::ops::Range<usize>,
    error: Result<Refused, CliError>,
    imported: usize,
) -> CliError {
    let line_of = |i: usize| secrets.get(i).map_or(0, |(line, _)| *line);
    let mut at = String::new();
    let message = match error {
        Ok(r) => match r.index.filter(|i| chunk.start + i < chunk.end) {
            Some(i) => {
                at = format!("line {} of {source}: ", line_of(chunk.start + i));
                let message = r
                    .message
                    .strip_prefix(&format!("item {i}: "))
                    .unwrap_or(&r.message);
                if message.ends_with("a key with the same secret already exists") {
                    crate::keys::ALREADY_STORED.to_owned()
                } else {
                    Refused::line(r.status, message, &r.code)
                }
            }
            None => r.text(),
        },
        Err(e) => e.message,
    };
    if imported == 0 {
        return CliError::new(format!("{at}{message}"));
    }
    if at.is_empty() {
        let (first, last) = (line_of(chunk.start), line_of(chunk.end.saturating_sub(1)));
        at = if first == last {
            format!("line {first} of {source}: ")
        } else {
            format!("lines {first} to {last} of {source}: ")
        };
    }
    CliError::new(format!(
        "{at}{message} ({imported} key(s) imported before the error)"
    ))
}

pub fn key_list(r: &Remote, a: &KeyListArgs) -> CmdResult {
    let keys = match &a.owner {
        Some(o) => r.get(&format!("/principals/{}/keys", u(&r.principal(o)?, "id")))?,
        None => r.get("/keys")?,
    };
    let keys = keys.as_array().cloned().unwrap_or_default();
    if a.json {
        print_json(&Value::Array(keys));
    } else if keys.is_empty() {
        println!("no keys");
    } else {
        let logins: HashMap<u64, String> = r
            .get("/principals")?
            .as_array()
            .map(|ps| ps.iter().map(|p| (u(p, "id"), s(p, "login"))).collect())
            .unwrap_or_default();
        let now = now();
        let records: Vec<keyward::store::KeyRecord> = keys.iter().map(key_record).collect();
        crate::out::print_key_table(records.iter(), &logins, now);
    }
    Ok(ExitCode::SUCCESS)
}

/// A key record rebuilt from its JSON (no hash: only for display).
fn key_record(k: &Value) -> keyward::store::KeyRecord {
    keyward::store::KeyRecord {
        id: u(k, "id"),
        owner: u(k, "owner"),
        name: s(k, "name"),
        hash: keyward::token::KeyHash([0; 32]),
        display_prefix: s(k, "display_prefix"),
        created_at: u(k, "created_at"),
        expires_at: k["expires_at"].as_u64(),
        active: k["active"].as_bool().unwrap_or(false),
        last_used: k["last_used"].as_u64(),
        read_only: k["read_only"].as_bool().unwrap_or(false),
        permissions: k["permissions"].as_array().map(|ps| {
            ps.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        }),
        scope: k["scope"].as_str().map(str::to_owned),
        kind: if k["admin"].as_bool() == Some(true) {
            keyward::store::KeyKind::Admin
        } else {
            keyward::store::KeyKind::Standard
        },
        imported: k["imported"].as_bool().unwrap_or(false),
        rotated_to: k["rotated_to"].as_u64(),
    }
}

pub fn key_rename(r: &Remote, a: &KeyRenameArgs) -> CmdResult {
    let old = r.key(a.id)?;
    let k = r.post(&format!("/keys/{}/rename", a.id), json!({ "name": a.name }))?;
    println!(
        "renamed key {} `{}` to `{}`",
        u(&k, "id"),
        s(&old, "name"),
        s(&k, "name")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn key_state(r: &Remote, a: &KeyIdArgs, what: &str) -> CmdResult {
    r.key(a.id)?;
    let k = if what == "delete" {
        r.delete(&format!("/keys/{}", a.id))?
    } else {
        r.post(&format!("/keys/{}/{what}", a.id), json!({}))?
    };
    let (id, name) = (u(&k, "id"), s(&k, "name"));
    match what {
        "deactivate" => println!("deactivated key {id} `{name}`: refused from now on"),
        "activate" => println!("activated key {id} `{name}`"),
        _ => println!("deleted key {id} `{name}`"),
    }
    Ok(ExitCode::SUCCESS)
}

fn owner_login(r: &Remote, key: &Value) -> Result<String, CliError> {
    Ok(s(&r.principal(&u(key, "owner").to_string())?, "login"))
}

pub fn key_rotate(r: &Remote, a: &KeyRotateArgs) -> CmdResult {
    let overlap = parse_duration(&a.overlap)?;
    let old = r.key(a.id)?;
    let owner = owner_login(r, &old)?;
    let v = r.post(
        &format!("/keys/{}/rotate", a.id),
        json!({ "overlap": overlap }),
    )?;
    if !a.json {
        println!(
            "rotated key {} `{}`: it keeps working until {}",
            u(&old, "id"),
            s(&old, "name"),
            utc(u(&v, "old_valid_until"))
        );
    }
    show_secret("new", &v, &owner, a.json);
    Ok(ExitCode::SUCCESS)
}

pub fn key_regenerate(r: &Remote, a: &KeySecretArgs) -> CmdResult {
    let old = r.key(a.id)?;
    let owner = owner_login(r, &old)?;
    let v = r.post(&format!("/keys/{}/regenerate", a.id), json!({}))?;
    if !a.json {
        println!(
            "regenerated key {} `{}`: the old secret stopped working",
            u(&old, "id"),
            s(&old, "name")
        );
    }
    show_secret("new", &v, &owner, a.json);
    Ok(ExitCode::SUCCESS)
}
