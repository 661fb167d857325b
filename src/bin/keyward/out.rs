//! Shared pieces: opening the key table, the pepper, principal lookup, times, durations, JSON shapes
//! and aligned tables.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use keyward::policy::{self, LoadError, Policy};
use keyward::store::{
    Actor, AuditEntry, KeyRecord, KeyTable, Op, Principal, PrincipalKind, StoreOptions, Workspace,
};
use keyward::token::KeyFormat;
use serde_json::{json, Value};

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
    let (text, from) = match &db.pepper_file {
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

/// Opens the key table in `--db`.
pub fn open_table(
    db: &DbArgs,
    create: Create,
    format: Option<KeyFormat>,
) -> Result<KeyTable, CliError> {
    check_db_dir(&db.db, create)?;
    let options = StoreOptions {
        pepper: pepper(db)?,
        key_format: format.unwrap_or_default(),
        ..StoreOptions::default()
    };
    Ok(KeyTable::open(&db.db, options)?)
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

/// Unix seconds as `2025-01-31 12:00:00Z`.
pub fn utc(ts: u64) -> String {
    let days = ts / 86_400;
    let secs = ts % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn kind_name(k: PrincipalKind) -> &'static str {
    match k {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service-account",
        PrincipalKind::Workspace => "workspace",
        PrincipalKind::Organization => "organization",
        PrincipalKind::Company => "company",
    }
}

/// The state of a key at `now`: `active`, `inactive`, `expired`, or `rotated` (still valid, replaced).
pub fn key_status(k: &KeyRecord, now: u64) -> &'static str {
    if !k.active {
        "inactive"
    } else if k.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else if k.rotated_to.is_some() {
        "rotated"
    } else {
        "active"
    }
}

/// A key's restrictions, for listings: `read-only, scope organization:6, permissions view,list`.
pub fn key_limits(k: &KeyRecord) -> String {
    let mut parts = Vec::new();
    if matches!(k.kind, keyward::store::KeyKind::Admin) {
        parts.push("admin".to_owned());
    }
    if k.read_only {
        parts.push("read-only".to_owned());
    }
    if let Some(s) = &k.scope {
        parts.push(format!("scope {s}"));
    }
    if let Some(p) = &k.permissions {
        parts.push(format!("permissions {}", p.join(",")));
    }
    if k.imported {
        parts.push("imported".to_owned());
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

pub fn principal_json(p: &Principal) -> Value {
    json!({
        "id": p.id,
        "kind": kind_name(p.kind),
        "login": p.login,
        "default_workspace": p.default_workspace,
        "created_at": p.created_at,
    })
}

pub fn key_json(k: &KeyRecord, now: u64) -> Value {
    json!({
        "id": k.id,
        "owner": k.owner,
        "name": k.name,
        "display_prefix": k.display_prefix,
        "status": key_status(k, now),
        "active": k.active,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used": k.last_used,
        "read_only": k.read_only,
        "permissions": k.permissions,
        "scope": k.scope,
        "admin": matches!(k.kind, keyward::store::KeyKind::Admin),
        "imported": k.imported,
        "rotated_to": k.rotated_to,
    })
}

pub fn workspace_json(w: &Workspace) -> Value {
    json!({
        "public_key": w.public_key,
        "name": w.name,
        "scope": w.scope,
        "company": w.company,
    })
}

pub fn actor_text(a: Actor) -> String {
    match a {
        Actor::System => "system".to_owned(),
        Actor::Cli => "cli".to_owned(),
        Actor::Principal(id) => format!("principal {id}"),
    }
}

/// An audit operation as one line of text, and as a snake_case name.
pub fn op_text(op: &Op) -> (&'static str, String) {
    match op {
        Op::PrincipalAdded { id, login } => {
            ("principal_added", format!("principal {id} `{login}` added"))
        }
        Op::PrincipalRemoved { id, login, keys } => (
            "principal_removed",
            format!(
                "principal {id} `{login}` removed with {} key(s)",
                keys.len()
            ),
        ),
        Op::DefaultWorkspaceSet { id, workspace } => (
            "default_workspace_set",
            match workspace {
                Some(w) => format!("principal {id}: default workspace `{w}`"),
                None => format!("principal {id}: default workspace cleared"),
            },
        ),
        Op::KeyCreated { key, owner, name } => (
            "key_created",
            format!("key {key} `{name}` created for principal {owner}"),
        ),
        Op::KeyImported { key, owner, name } => (
            "key_imported",
            format!("key {key} `{name}` imported for principal {owner}"),
        ),
        Op::KeysImported {
            first,
            last,
            owners,
        } => (
            "keys_imported",
            format!(
                "keys {first} to {last} ({} key(s)) imported for {} principal(s)",
                last.saturating_sub(*first).saturating_add(1),
                owners.len()
            ),
        ),
        Op::KeyRenamed {
            key,
            owner,
            from,
            to,
        } => (
            "key_renamed",
            format!("key {key} of principal {owner} renamed `{from}` -> `{to}`"),
        ),
        Op::KeyDeactivated { key, owner } => (
            "key_deactivated",
            format!("key {key} of principal {owner} deactivated"),
        ),
        Op::KeyActivated { key, owner } => (
            "key_activated",
            format!("key {key} of principal {owner} activated"),
        ),
        Op::KeyDeleted { key, owner, name } => (
            "key_deleted",
            format!("key {key} `{name}` of principal {owner} deleted"),
        ),
        Op::KeyExpirySet {
            key,
            owner,
            expires_at,
        } => (
            "key_expiry_set",
            match expires_at {
                Some(t) => format!("key {key} of principal {owner} expires {}", utc(*t)),
                None => format!("key {key} of principal {owner} no longer expires"),
            },
        ),
        Op::KeyRotated {
            old,
            new,
            owner,
            old_valid_until,
        } => (
            "key_rotated",
            format!(
                "key {old} of principal {owner} rotated to key {new}; old valid until {}",
                utc(*old_valid_until)
            ),
        ),
        Op::KeyRegenerated { old, new, owner } => (
            "key_regenerated",
            format!("key {old} of principal {owner} regenerated as key {new}"),
        ),
        Op::Bound {
            principal,
            role,
            scope,
        } => (
            "bound",
            format!("principal {principal} bound `{role}` at `{scope}`"),
        ),
        Op::Unbound {
            principal,
            role,
            scope,
        } => (
            "unbound",
            format!("principal {principal} unbound `{role}` at `{scope}`"),
        ),
        Op::WorkspaceAdded {
            public_key,
            name,
            company,
        } => (
            "workspace_added",
            format!(
                "workspace `{public_key}` `{name}` added{}",
                company.map_or(String::new(), |c| format!(" for company {c}"))
            ),
        ),
        Op::WorkspaceRemoved { public_key, .. } => (
            "workspace_removed",
            format!("workspace `{public_key}` removed"),
        ),
    }
}

pub fn audit_json(e: &AuditEntry) -> Value {
    let (op, text) = op_text(&e.op);
    let actor = match e.actor {
        Actor::System => json!("system"),
        Actor::Cli => json!("cli"),
        Actor::Principal(id) => json!({ "principal": id }),
    };
    json!({
        "seq": e.seq,
        "at": e.at,
        "actor": actor,
        "op": op,
        "principals": e.principals(),
        "text": text,
    })
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
