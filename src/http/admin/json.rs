//! The JSON shapes of principals, keys, workspaces and audit entries, shared by the admin API and
//! the `keyward` CLI (`--json`), so both print the same fields. Field names are stable; see
//! `docs/cli.md` and `docs/openapi.yaml`.

use serde_json::{json, Value};

use crate::store::{
    Actor, AuditEntry, KeyKind, KeyRecord, Op, Principal, PrincipalKind, Workspace,
};

/// Unix seconds as `2025-01-31 12:00:00Z`.
pub fn utc(ts: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::text::civil(ts);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}Z")
}

/// The CLI and JSON name of a principal kind.
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
    if matches!(k.kind, KeyKind::Admin) {
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

/// A principal as JSON.
pub fn principal_json(p: &Principal) -> Value {
    json!({
        "id": p.id,
        "kind": kind_name(p.kind),
        "login": p.login,
        "default_workspace": p.default_workspace,
        "created_at": p.created_at,
    })
}

/// A key as JSON (never its secret), its status computed at `now`.
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
        "admin": matches!(k.kind, KeyKind::Admin),
        "imported": k.imported,
        "rotated_to": k.rotated_to,
    })
}

/// A workspace as JSON.
pub fn workspace_json(w: &Workspace) -> Value {
    json!({
        "public_key": w.public_key,
        "name": w.name,
        "scope": w.scope,
        "company": w.company,
    })
}

/// Who acted, for people.
pub fn actor_text(a: Actor) -> String {
    match a {
        Actor::System => "system".to_owned(),
        Actor::Cli => "cli".to_owned(),
        Actor::Anonymous => "anonymous".to_owned(),
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
        Op::AccessDenied {
            status,
            code,
            method,
            path,
            key,
        } => (
            "access_denied",
            format!(
                "denied {method} {path}: {status} {code}{}",
                key.map_or(String::new(), |k| format!(" (key {k})"))
            ),
        ),
        Op::DenialsNotRecorded { count } => (
            "denials_not_recorded",
            format!("{count} denial(s) not recorded: the queue was full"),
        ),
    }
}

/// An audit entry as JSON. A refused call (`access_denied`) adds `denial`: `{status, code, method,
/// path, key}`; `denials_not_recorded` adds `not_recorded`, the count.
pub fn audit_json(e: &AuditEntry) -> Value {
    let (op, text) = op_text(&e.op);
    let actor = match e.actor {
        Actor::System => json!("system"),
        Actor::Cli => json!("cli"),
        Actor::Anonymous => json!("anonymous"),
        Actor::Principal(id) => json!({ "principal": id }),
    };
    let mut v = json!({
        "seq": e.seq,
        "at": e.at,
        "actor": actor,
        "op": op,
        "principals": e.principals(),
        "text": text,
    });
    match &e.op {
        Op::AccessDenied {
            status,
            code,
            method,
            path,
            key,
        } => {
            v["denial"] = json!({
                "status": status,
                "code": code,
                "method": method,
                "path": path,
                "key": key,
            });
        }
        Op::DenialsNotRecorded { count } => v["not_recorded"] = json!(count),
        _ => {}
    }
    v
}

/// A principal kind from its CLI and JSON name.
pub fn kind_from_name(name: &str) -> Option<PrincipalKind> {
    Some(match name {
        "user" => PrincipalKind::User,
        "service-account" => PrincipalKind::ServiceAccount,
        "workspace" => PrincipalKind::Workspace,
        "organization" => PrincipalKind::Organization,
        "company" => PrincipalKind::Company,
        _ => return None,
    })
}
