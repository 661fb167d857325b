//! Shared pieces: opening the key table, the pepper, principal lookup, times, durations, JSON shapes
//! and aligned tables.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use keyward::http::admin::json::{
    actor_text, audit_json, key_json, key_limits, key_status, kind_name, op_text, principal_json,
    utc, workspace_json,
};
use keyward::policy::{self, LoadError, Policy};
use keyward::store::{KeyRecord, KeyTable, Principal, StoreOptions};
use keyward::token::KeyFormat;
use serde_json::Value;

use crate::args::DbArgs;
use crate::CliError;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a command may create the database when the directory does not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Yes,
    No,
}

/// Reads the pepper from `--pepper-file` or `KEYWARD_PEPPER`.
pub fn pepper(db: &DbArgs) -> Result<Option<[u8; 32]>, CliError> {
    pepper_from(db.pepper_file.as_deref())
}

/// Reads the pepper from a file, or `KEYWARD_PEPPER` when none is given.
pub fn pepper_from(file: Option<&std::path::Path>) -> Result<Option<[u8; 32]>, CliError> {
    let (text, from) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::new(format!("cannot read pepper file `{}`: {e}", path.display()))
            })?;
            (text, format!("pepper file `{}`", path.display()))
        }
        None => match std::env::var("KEYWARD_PEPPER") {
            Ok(text) => (text, "`KEYWARD_PEPPER`".to_owned()),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::new(
                    "`KEYWARD_PEPPER` must be 64 hexadecimal characters",
                ))
            }
        },
    };
    parse_hex32(text.trim())
        .map(Some)
        .ok_or_else(|| CliError::new(format!("{from} must hold 64 hexadecimal characters")))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Loads a policy file; a policy with errors prints its report and fails.
pub fn load_policy(path: &Path) -> Result<Policy, CliError> {
    policy::load_file(path).map_err(|e| match e {
        LoadError::Invalid(report) => CliError::new(format!(
            "policy `{}` has {} error{}",
            path.display(),
            report.error_count(),
            if report.error_count() == 1 { "" } else { "s" }
        ))
        .with_detail(report.render()),
        e => CliError::new(e.to_string()),
    })
}

/// The key format of a policy (its `keys { prefix ...; }`), or the default.
pub fn key_format(policy: Option<&Policy>) -> Result<KeyFormat, CliError> {
    match policy.and_then(|p| p.model.keys.prefix.clone()) {
        Some(prefix) => KeyFormat::new(prefix)
            .map_err(|e| CliError::new(format!("the policy's key prefix is not usable: {e}"))),
        None => Ok(KeyFormat::default()),
    }
}

/// Checks the database directory before opening it.
pub fn check_db_dir(dir: &Path, create: Create) -> Result<(), CliError> {
    if create == Create::No && !dir.exists() {
        return Err(CliError::new(format!(
            "database `{}` does not exist",
            dir.display()
        )));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::new(format!(
            "database `{}` is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// The `--db` directory (commands that have no `--server` mode refuse it).
pub fn db_dir(db: &DbArgs) -> Result<&Path, CliError> {
    db.db
        .as_deref()
        .ok_or_else(|| CliError::new("this command needs --db DIR; it has no --server mode"))
}

/// Opens the key table in `--db`.
pub fn open_table(
    db: &DbArgs,
    create: Create,
    format: Option<KeyFormat>,
) -> Result<KeyTable, CliError> {
    let dir = db_dir(db)?;
    check_db_dir(dir, create)?;
    let options = StoreOptions {
        pepper: pepper(db)?,
        key_format: format.unwrap_or_default(),
        ..StoreOptions::default()
    };
    Ok(KeyTable::open(dir, options)?)
}

/// A principal by login, or by id when the text is a number no login matches.
pub fn principal(t: &KeyTable, text: &str) -> Result<Principal, CliError> {
    if let Some(p) = t.principal_by_login(text)? {
        return Ok(p);
    }
    if let Ok(id) = text.parse::<u64>() {
        if let Some(p) = t.principal(id)? {
            return Ok(p);
        }
    }
    Err(CliError::new(format!(
        "no principal `{text}` (by login or id)"
    )))
}

/// A key by id.
pub fn key(t: &KeyTable, id: u64) -> Result<KeyRecord, CliError> {
    t.key(id)?
        .ok_or_else(|| CliError::new(format!("no key {id}")))
}

/// `30d`, `12h`, `90m`, `3600s` or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::new(format!(
            "invalid duration `{s}`: expected a number with s, m, h or d, e.g. 12h"
        ))
    };
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Prints rows as columns aligned on the widest cell; the last column is not padded.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < n {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(c);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied(), &mut out);
    for r in rows {
        line(&mut r.iter().map(String::as_str), &mut out);
    }
    out
}

/// Prints a JSON value on stdout, pretty.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Prints keys as the `key list` table (the same with `--db` and `--server`); never a secret.
pub fn print_key_table<'a>(
    keys: impl Iterator<Item = &'a KeyRecord>,
    logins: &std::collections::HashMap<u64, String>,
    now: u64,
) {
    let rows: Vec<Vec<String>> = keys
        .map(|k| {
            vec![
                k.id.to_string(),
                logins
                    .get(&k.owner)
                    .cloned()
                    .unwrap_or_else(|| k.owner.to_string()),
                k.name.clone(),
                format!("{}…", k.display_prefix),
                key_status(k, now).to_owned(),
                k.expires_at.map_or("-".into(), utc),
                k.last_used.map_or("never".into(), utc),
                key_limits(k),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "OWNER",
            "NAME",
            "PREFIX",
            "STATUS",
            "EXPIRES",
            "LAST USED",
            "LIMITS",
        ],
        &rows,
    );
}
