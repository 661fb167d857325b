//! `keyward key ...`: create, import (one or many, with progress), list, rename, deactivate,
//! activate, rotate, regenerate, delete. Secrets are printed once, at creation, and never read
//! from the command line.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use keyward::store::{Actor, KeyKind, KeyRecord, KeyTable, NewKey};
use keyward::token::{classify, KeyFormat, KeyHash, Secret};
use serde_json::json;

use crate::args::{DbArgs, KeyCommand, KeyImportArgs, KeyLimitArgs};
use crate::out::{
    key, key_format, key_json, load_policy, now, open_table, parse_duration, principal, print_json,
    utc, Create,
};
use crate::remote::{self, Remote};
use crate::{CliError, CmdResult};

pub const SHOWN_ONCE: &str = "store it now, it will not be shown again";

fn format_from(policy: Option<&std::path::Path>) -> Result<KeyFormat, CliError> {
    match policy {
        Some(p) => key_format(Some(&load_policy(p)?)),
        None => key_format(None),
    }
}

fn open_with(
    db: &DbArgs,
    create: Create,
    policy: Option<&std::path::Path>,
) -> Result<KeyTable, CliError> {
    let format = format_from(policy)?;
    open_table(db, create, Some(format))
}

pub fn new_key(owner: u64, name: String, l: &KeyLimitArgs) -> Result<NewKey, CliError> {
    let mut k = NewKey::new(owner, name);
    k.read_only = l.read_only;
    let perms: Vec<String> = l
        .permissions
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    k.permissions = (!perms.is_empty()).then_some(perms);
    k.scope.clone_from(&l.scope);
    if let Some(d) = &l.expires_in {
        k.expires_at = Some(now() + parse_duration(d)?);
    }
    if l.admin {
        k.kind = KeyKind::Admin;
    }
    Ok(k)
}

/// Prints a key that was just generated, with its secret, once.
fn show_secret(verb: &str, rec: &KeyRecord, owner: &str, secret: &Secret, json: bool) {
    if json {
        let mut v = json!({ "key": key_json(rec, now()), "secret": secret.expose() });
        v["note"] = json!(SHOWN_ONCE);
        print_json(&v);
        eprintln!("note: the secret is shown once; {SHOWN_ONCE}");
    } else {
        println!(
            "{verb} key {} `{}` for `{owner}` ({}…)",
            rec.id, rec.name, rec.display_prefix
        );
        println!("secret: {}", secret.expose());
        println!("{SHOWN_ONCE}");
    }
}

pub fn run(cmd: KeyCommand) -> CmdResult {
    match cmd {
        KeyCommand::Create(a) => {
            remote::no_policy(&a.db, a.policy.as_deref())?;
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_create(&r, &a);
            }
            let t = open_with(&a.db, Create::Yes, a.policy.as_deref())?;
            let owner = principal(&t, &a.owner)?;
            let (rec, secret) = t.create_key(Actor::Cli, new_key(owner.id, a.name, &a.limits)?)?;
            show_secret("created", &rec, &owner.login, &secret, a.json);
        }
        KeyCommand::Import(a) => return import(&a),
        KeyCommand::List(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_list(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let keys = match &a.owner {
                Some(o) => t.keys_of(principal(&t, o)?.id)?,
                None => t.list_keys()?,
            };
            let now = now();
            if a.json {
                print_json(&json!(keys
                    .iter()
                    .map(|k| key_json(k, now))
                    .collect::<Vec<_>>()));
            } else if keys.is_empty() {
                println!("no keys");
            } else {
                let logins: HashMap<u64, String> = t
                    .list_principals()?
                    .into_iter()
                    .map(|p| (p.id, p.login))
                    .collect();
                crate::out::print_key_table(keys.iter(), &logins, now);
            }
        }
        KeyCommand::Rename(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_rename(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let old = key(&t, a.id)?;
            let rec = t.rename_key(Actor::Cli, a.id, &a.name)?;
            println!("renamed key {} `{}` to `{}`", rec.id, old.name, rec.name);
        }
        KeyCommand::Deactivate(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_state(&r, &a, "deactivate");
            }
            let t = open_table(&a.db, Create::No, None)?;
            key(&t, a.id)?;
            let rec = t.set_key_active(Actor::Cli, a.id, false)?;
            println!(
                "deactivated key {} `{}`: refused from now on",
                rec.id, rec.name
            );
        }
        KeyCommand::Activate(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_state(&r, &a, "activate");
            }
            let t = open_table(&a.db, Create::No, None)?;
            key(&t, a.id)?;
            let rec = t.set_key_active(Actor::Cli, a.id, true)?;
            println!("activated key {} `{}`", rec.id, rec.name);
        }
        KeyCommand::Rotate(a) => {
            remote::no_policy(&a.db, a.policy.as_deref())?;
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_rotate(&r, &a);
            }
            let overlap = parse_duration(&a.overlap)?;
            let t = open_with(&a.db, Create::No, a.policy.as_deref())?;
            let old = key(&t, a.id)?;
            let owner = principal(&t, &old.owner.to_string())?;
            let until = now() + overlap;
            let (rec, secret) = t.rotate_key(Actor::Cli, a.id, until)?;
            if !a.json {
                println!(
                    "rotated key {} `{}`: it keeps working until {}",
                    old.id,
                    old.name,
                    utc(until)
                );
            }
            show_secret("new", &rec, &owner.login, &secret, a.json);
        }
        KeyCommand::Regenerate(a) => {
            remote::no_policy(&a.db, a.policy.as_deref())?;
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_regenerate(&r, &a);
            }
            let t = open_with(&a.db, Create::No, a.policy.as_deref())?;
            let old = key(&t, a.id)?;
            let owner = principal(&t, &old.owner.to_string())?;
            let (rec, secret) = t.regenerate_key(Actor::Cli, a.id)?;
            if !a.json {
                println!(
                    "regenerated key {} `{}`: the old secret stopped working",
                    old.id, old.name
                );
            }
            show_secret("new", &rec, &owner.login, &secret, a.json);
        }
        KeyCommand::Delete(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::key_state(&r, &a, "delete");
            }
            let t = open_table(&a.db, Create::No, None)?;
            key(&t, a.id)?;
            let rec = t.delete_key(Actor::Cli, a.id)?;
            println!("deleted key {} `{}`", rec.id, rec.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads secrets, one per line (blank lines skipped), with their 1-based line numbers.
fn read_secrets(a: &KeyImportArgs) -> Result<(String, Vec<(usize, Secret)>), CliError> {
    let (source, mut text) = match &a.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::new(format!("cannot read `{}`: {e}", path.display())))?;
            (format!("`{}`", path.display()), text)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("paste the secret(s), one per line, then press Ctrl-D");
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
            ("stdin".to_owned(), text)
        }
    };
    let secrets: Vec<(usize, Secret)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i, Secret::new(l)))
        .collect();
    zeroize_string(&mut text);
    if secrets.is_empty() {
        return Err(CliError::new(format!("no secret in {source}")));
    }
    Ok((source, secrets))
}

fn zeroize_string(s: &mut String) {
    // Overwrite the buffer that held the secrets before it is freed.
    let len = s.len();
    s.clear();
    s.extend(std::iter::repeat_n('\0', len));
    s.clear();
}

/// The name of the `i`-th (0-based) of `total` imported keys: `NAME`, or `NAME-1`, `NAME-2`, ...
pub fn import_name(name: &str, i: usize, total: usize) -> String {
    if total == 1 {
        name.to_owned()
    } else {
        format!("{name}-{}", i + 1)
    }
}

/// What `key import` checks before writing anything, with `--db` and with `--server` alike.
pub struct Checks<'a> {
    pub secrets: &'a [(usize, Secret)],
    /// `stdin` or the file, for messages.
    pub source: &'a str,
    /// The key format the secrets' shapes are checked against (`--policy`'s prefix, else `kw_`).
    pub format: &'a KeyFormat,
    /// Finds the same secret twice; with `--db`, the table's (peppered) hash.
    pub hash: &'a dyn Fn(&str) -> KeyHash,
    /// The owner's login, and the names of its keys.
    pub owner: &'a str,
    pub taken: &'a HashSet<String>,
    /// `--name`.
    pub name: &'a str,
}

/// Checks every secret before anything is written, line by line: its shape, the same secret on an
/// earlier line, a secret already stored (`stored`, given its hash), the key name in use. The first
/// problem is the error, named by its line.
pub fn check_secrets(
    c: &Checks<'_>,
    mut stored: impl FnMut(&KeyHash) -> Result<bool, CliError>,
) -> Result<(), CliError> {
    let total = c.secrets.len();
    let mut seen = HashMap::new();
    for (i, (line, s)) in c.secrets.iter().enumerate() {
        let at = || format!("line {line} of {}", c.source);
        classify(s.expose(), c.format).map_err(|e| CliError::new(format!("{}: {e}", at())))?;
        let hash = (c.hash)(s.expose());
        if let Some(first) = seen.insert(hash.0, *line) {
            return Err(CliError::new(format!(
                "{}: the same secret as line {first}",
                at()
            )));
        }
        if stored(&hash)? {
            return Err(CliError::new(format!("{}: {ALREADY_STORED}", at())));
        }
        let name = import_name(c.name, i, total);
        if c.taken.contains(&name) {
            return Err(CliError::new(format!(
                "{}: `{}` already has a key named `{name}`",
                at(),
                c.owner
            )));
        }
    }
    Ok(())
}

/// The most keys in one import chunk: one atomic mutation with one `keys_imported` audit entry with
/// `--db`, one request to the admin API's batch import with `--server`.
pub const CHUNK: usize = keyward::http::admin::IMPORT_BATCH_MAX;

/// Splits an import into chunks, the same with `--db` and with `--server`: at most [`CHUNK`] keys,
/// and at most the batch import's body limit of JSON (which only long secrets, names or permission
/// lists reach before [`CHUNK`] keys).
pub fn import_chunks(
    secrets: &[(usize, Secret)],
    names: &[String],
    template: &NewKey,
) -> Vec<std::ops::Range<usize>> {
    // Room for `{"keys":[` and `]}`, with a margin.
    let budget = keyward::http::admin::IMPORT_BODY_LIMIT - 1024;
    // An item is `remote::key_body` with the secret added; only the name and the secret vary.
    let fixed = remote::key_body("", template, template.read_only)
        .to_string()
        .len()
        - json_string_len("")
        + r#","secret":"#.len();
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, ((_, secret), name)) in secrets.iter().zip(names).enumerate() {
        // The item and its comma; the secret's length is counted without copying it.
        let size = fixed + json_string_len(name) + json_string_len(secret.expose()) + 1;
        if i > start && (i - start == CHUNK || bytes + size > budget) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if secrets.len() > start {
        out.push(start..secrets.len());
    }
    out
}

/// The length of `s` as a JSON string, quotes included, as serde_json writes it.
fn json_string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Shows how many of `total` keys are imported, after each chunk, on stderr (for more than one key):
/// a line per chunk, or one line rewritten in place on a terminal.
pub fn progress(n: usize, total: usize) {
    if total <= 1 {
        return;
    }
    if std::io::stderr().is_terminal() {
        eprint!("\rimporting keys: {n}/{total}");
        if n == total {
            eprintln!();
        }
    } else {
        eprintln!("importing keys: {n}/{total}");
    }
}

/// Why an imported secret is refused when the table already holds it.
pub const ALREADY_STORED: &str = "this secret is already in the key table";

fn import(a: &KeyImportArgs) -> CmdResult {
    if a.secret.is_some() {
        return Err(CliError::new(
            "secrets are never read from the command line (other users can read it): \
             pipe the secret on stdin or use --file",
        ));
    }
    let remote = Remote::from_args(&a.db)?;
    let (source, secrets) = read_secrets(a)?;
    if let Some(r) = remote {
        let format = format_from(a.policy.as_deref())?;
        return remote::key_import(&r, a, &secrets, &source, &format);
    }
    let t = open_with(&a.db, Create::Yes, a.policy.as_deref())?;
    let owner = principal(&t, &a.owner)?;
    let total = secrets.len();
    let name_of = |i: usize| import_name(&a.name, i, total);
    let taken: HashSet<String> = t.keys_of(owner.id)?.into_iter().map(|k| k.name).collect();
    check_secrets(
        &Checks {
            secrets: &secrets,
            source: &source,
            format: &format_from(a.policy.as_deref())?,
            hash: &|s| t.hash(s),
            owner: &owner.login,
            taken: &taken,
            name: &a.name,
        },
        |hash| Ok(t.key_by_hash(hash)?.is_some()),
    )?;
    let template = new_key(owner.id, String::new(), &a.limits)?;
    let names: Vec<String> = (0..total).map(name_of).collect();
    let plan = import_chunks(&secrets, &names, &template);
    let mut done = Vec::with_capacity(total);
    let mut failed_lines = None;
    // Each chunk is one atomic mutation with one audit entry, as one request is with --server.
    let result = t.bulk(|w| {
        for range in &plan {
            let batch: Vec<(NewKey, &str)> = range
                .clone()
                .map(|i| {
                    let mut nk = template.clone();
                    nk.name.clone_from(&names[i]);
                    (nk, secrets[i].1.expose())
                })
                .collect();
            let recs = w.import_keys(Actor::Cli, batch).inspect_err(|_| {
                failed_lines = Some((secrets[range.start].0, secrets[range.end - 1].0));
            })?;
            done.extend(recs);
            progress(done.len(), total);
        }
        Ok(())
    });
    if let Err(e) = result {
        let at = failed_lines.map_or(String::new(), |(a, b)| {
            if a == b {
                format!("line {a} of {source}: ")
            } else {
                format!("lines {a} to {b} of {source}: ")
            }
        });
        return Err(CliError::new(format!(
            "{at}{e} ({} key(s) imported before the error)",
            done.len()
        )));
    }
    if a.json {
        let now = now();
        print_json(&json!(done
            .iter()
            .map(|k| key_json(k, now))
            .collect::<Vec<_>>()));
    } else if total == 1 {
        let k = &done[0];
        println!(
            "imported key {} `{}` for `{}` ({}…)",
            k.id, k.name, owner.login, k.display_prefix
        );
    } else {
        println!(
            "imported {total} keys for `{}` (ids {}..={})",
            owner.login,
            done.first().map_or(0, |k| k.id),
            done.last().map_or(0, |k| k.id)
        );
    }
    Ok(ExitCode::SUCCESS)
}
