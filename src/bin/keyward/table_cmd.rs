//! `keyward principal`, `bind`, `unbind`, `workspace` and `audit`.

use std::process::ExitCode;

use keyward::decision::CompiledPolicy;
use keyward::store::{Actor, AuditQuery, NewPrincipal, PrincipalKind, Workspace};
use serde_json::json;

use crate::args::{AuditArgs, BindArgs, Kind, PrincipalCommand, WorkspaceCommand};
use crate::out::{
    actor_text, audit_json, kind_name, load_policy, op_text, open_table, principal as find,
    principal_json, print_json, print_table, utc, workspace_json, Create,
};
use crate::remote::{self, Remote};
use crate::{CliError, CmdResult};

pub fn kind(k: Kind) -> PrincipalKind {
    match k {
        Kind::User => PrincipalKind::User,
        Kind::ServiceAccount => PrincipalKind::ServiceAccount,
        Kind::Workspace => PrincipalKind::Workspace,
        Kind::Organization => PrincipalKind::Organization,
        Kind::Company => PrincipalKind::Company,
    }
}

pub fn principal(cmd: PrincipalCommand) -> CmdResult {
    match cmd {
        PrincipalCommand::Add(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::principal_add(&r, &a);
            }
            let t = open_table(&a.db, Create::Yes, None)?;
            let p = t.add_principal(
                Actor::Cli,
                NewPrincipal {
                    kind: kind(a.kind),
                    login: a.login,
                    default_workspace: a.default_workspace,
                },
            )?;
            if a.json {
                print_json(&principal_json(&p));
            } else {
                println!(
                    "added principal {} `{}` ({})",
                    p.id,
                    p.login,
                    kind_name(p.kind)
                );
            }
        }
        PrincipalCommand::List(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::principal_list(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let all = t.list_principals()?;
            if a.json {
                let mut out = Vec::new();
                for p in &all {
                    let mut v = principal_json(p);
                    v["bindings"] = json!(t
                        .bindings_of(p.id)?
                        .iter()
                        .map(|b| json!({ "role": b.role, "scope": b.scope }))
                        .collect::<Vec<_>>());
                    v["keys"] = json!(t.keys_of(p.id)?.len());
                    out.push(v);
                }
                print_json(&json!(out));
            } else if all.is_empty() {
                println!("no principals");
            } else {
                let mut rows = Vec::new();
                for p in &all {
                    let bindings = t
                        .bindings_of(p.id)?
                        .iter()
                        .map(|b| format!("{}@{}", b.role, b.scope))
                        .collect::<Vec<_>>();
                    rows.push(vec![
                        p.id.to_string(),
                        kind_name(p.kind).to_owned(),
                        p.login.clone(),
                        t.keys_of(p.id)?.len().to_string(),
                        p.default_workspace.clone().unwrap_or_else(|| "-".into()),
                        if bindings.is_empty() {
                            "-".to_owned()
                        } else {
                            bindings.join(" ")
                        },
                    ]);
                }
                print_table(
                    &["ID", "KIND", "LOGIN", "KEYS", "WORKSPACE", "BINDINGS"],
                    &rows,
                );
            }
        }
        PrincipalCommand::Remove(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::principal_remove(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let p = find(&t, &a.principal)?;
            let keys = t.keys_of(p.id)?.len();
            t.remove_principal(Actor::Cli, p.id)?;
            println!(
                "removed principal {} `{}` with {keys} key(s) and its bindings",
                p.id, p.login
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bind(a: &BindArgs, add: bool) -> CmdResult {
    if let Some(path) = &a.policy {
        let policy = load_policy(path)?;
        let compiled = CompiledPolicy::compile(&policy.model);
        if compiled.role(&a.role).is_none() {
            return Err(CliError::new(format!(
                "policy `{}` has no role `{}`",
                path.display(),
                a.role
            )));
        }
        if add && compiled.resolve_binding(&a.role, &a.scope).is_none() {
            return Err(CliError::new(format!(
                "role `{}` cannot be bound at `{}`: the scope is not a path to an instance of the role's scope kind",
                a.role, a.scope
            )));
        }
    }
    if let Some(r) = Remote::from_args(&a.db)? {
        return remote::bind(&r, a, add);
    }
    let t = open_table(&a.db, if add { Create::Yes } else { Create::No }, None)?;
    let p = find(&t, &a.principal)?;
    if add {
        t.bind(Actor::Cli, p.id, &a.role, &a.scope)?;
        println!("bound `{}` at `{}` to `{}`", a.role, a.scope, p.login);
    } else {
        t.unbind(Actor::Cli, p.id, &a.role, &a.scope)?;
        println!("unbound `{}` at `{}` from `{}`", a.role, a.scope, p.login);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn workspace(cmd: WorkspaceCommand) -> CmdResult {
    match cmd {
        WorkspaceCommand::Add(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::workspace_add(&r, &a);
            }
            let t = open_table(&a.db, Create::Yes, None)?;
            let company = match &a.company {
                Some(c) => Some(find(&t, c)?.id),
                None => None,
            };
            let w = t.add_workspace(
                Actor::Cli,
                Workspace {
                    public_key: a.public_key,
                    name: a.name,
                    scope: a.scope,
                    company,
                },
            )?;
            println!(
                "added workspace `{}` `{}` at `{}`",
                w.public_key, w.name, w.scope
            );
        }
        WorkspaceCommand::List(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::workspace_list(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let all = t.list_workspaces()?;
            if a.json {
                print_json(&json!(all.iter().map(workspace_json).collect::<Vec<_>>()));
            } else if all.is_empty() {
                println!("no workspaces");
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|w| {
                        vec![
                            w.public_key.clone(),
                            w.name.clone(),
                            w.scope.clone(),
                            w.company.map_or("-".into(), |c| c.to_string()),
                        ]
                    })
                    .collect();
                print_table(&["PUBLIC KEY", "NAME", "SCOPE", "COMPANY"], &rows);
            }
        }
        WorkspaceCommand::Remove(a) => {
            if let Some(r) = Remote::from_args(&a.db)? {
                return remote::workspace_remove(&r, &a);
            }
            let t = open_table(&a.db, Create::No, None)?;
            let w = t.remove_workspace(Actor::Cli, &a.public_key)?;
            println!("removed workspace `{}`", w.public_key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(a: &AuditArgs) -> CmdResult {
    if let Some(r) = Remote::from_args(&a.db)? {
        return remote::audit(&r, a);
    }
    let t = open_table(&a.db, Create::No, None)?;
    let p = match &a.principal {
        Some(p) => Some(find(&t, p)?.id),
        None => None,
    };
    let entries = t.audit(AuditQuery {
        principal: p,
        limit: a.limit,
        before: None,
    })?;
    if a.json {
        print_json(&json!(entries.iter().map(audit_json).collect::<Vec<_>>()));
    } else if entries.is_empty() {
        println!("no audit entries");
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    utc(e.at),
                    actor_text(e.actor),
                    op_text(&e.op).1,
                ]
            })
            .collect();
        print_table(&["SEQ", "TIME", "ACTOR", "WHAT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
