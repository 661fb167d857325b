//! Canonical formatting: one layout for every policy, so `keyward fmt` output is stable and
//! `parse(format(p)) == p`. Comments are kept; one written inside a definition moves before it.

use std::fmt::Write;

use super::ast::*;

/// Formats a policy in the canonical layout.
pub fn format(p: &Policy) -> String {
    let mut out = String::new();
    let mut prev: Option<&'static str> = None;
    for (idx, item) in p.items.iter().enumerate() {
        let kind = item_kind(item);
        let comments: Vec<&String> = p
            .comments
            .iter()
            .filter(|(i, _)| *i == idx)
            .map(|(_, c)| c)
            .collect();
        let blank = match prev {
            None => false,
            Some(pk) => pk != kind || is_block(item) || !comments.is_empty(),
        };
        if blank {
            out.push('\n');
        }
        let header = idx == 0 && !comments.is_empty();
        for c in comments {
            push_comment(&mut out, c);
        }
        if header {
            // Comments before the first definition are the file's header: a blank line follows them.
            out.push('\n');
        }
        write_item(&mut out, item);
        prev = Some(kind);
    }
    let trailing: Vec<&String> = p
        .comments
        .iter()
        .filter(|(i, _)| *i >= p.items.len())
        .map(|(_, c)| c)
        .collect();
    if !trailing.is_empty() && !p.items.is_empty() {
        out.push('\n');
    }
    for c in trailing {
        push_comment(&mut out, c);
    }
    out
}

fn push_comment(out: &mut String, c: &str) {
    if c.is_empty() {
        out.push_str("#\n");
    } else {
        let _ = writeln!(out, "# {c}");
    }
}

fn item_kind(item: &Item) -> &'static str {
    match item {
        Item::Scope(_) => "scope",
        Item::Action(_) => "action",
        Item::Group(_) => "group",
        Item::Role(_) => "role",
        Item::SelfAccess(_) => "self",
        Item::Deny(_) => "deny",
        Item::Credentials(_) => "credentials",
        Item::Keys(_) => "keys",
        Item::Unauthenticated(_) => "unauthenticated",
        Item::Route(_) => "route",
    }
}

fn is_block(item: &Item) -> bool {
    matches!(item, Item::Role(_) | Item::Credentials(_) | Item::Keys(_))
}

fn names(ns: &[Name]) -> String {
    ns.iter()
        .map(|n| n.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn actions(a: &ActionList) -> String {
    match a {
        ActionList::All(_) => "*".to_string(),
        ActionList::Names(ns) => names(ns),
    }
}

fn on(kinds: &[Name]) -> String {
    if kinds.is_empty() {
        String::new()
    } else {
        format!(" on {}", names(kinds))
    }
}

fn quoted(n: &Name) -> String {
    format!("\"{}\"", n.text)
}

fn write_item(out: &mut String, item: &Item) {
    match item {
        Item::Scope(s) => match &s.parent {
            Some(p) => {
                let _ = writeln!(out, "scope {} under {};", s.name.text, p.text);
            }
            None => {
                let _ = writeln!(out, "scope {};", s.name.text);
            }
        },
        Item::Action(a) => match a.access {
            Some(Access::Read) => {
                let _ = writeln!(out, "action {}: read;", names(&a.names));
            }
            Some(Access::Write) => {
                let _ = writeln!(out, "action {}: write;", names(&a.names));
            }
            None => {
                let _ = writeln!(out, "action {};", names(&a.names));
            }
        },
        Item::Group(g) => {
            let _ = writeln!(out, "group {} = {};", g.name.text, names(&g.members));
        }
        Item::Role(r) => {
            let _ = write!(out, "role {} at {}", r.name.text, r.kind.text);
            if r.observer {
                out.push_str(" observer");
            }
            if !r.includes.is_empty() {
                let _ = write!(out, " includes {}", names(&r.includes));
            }
            if r.grants.is_empty() {
                out.push_str(" {}\n");
                return;
            }
            out.push_str(" {\n");
            for g in &r.grants {
                let _ = writeln!(out, "    grant {}{};", actions(&g.actions), on(&g.on));
            }
            out.push_str("}\n");
        }
        Item::SelfAccess(s) => {
            let _ = writeln!(out, "self {} on {};", actions(&s.actions), s.kind.text);
        }
        Item::Deny(d) => {
            let _ = writeln!(
                out,
                "deny {}: {}{};",
                d.name.text,
                actions(&d.actions),
                on(&d.on)
            );
        }
        Item::Credentials(c) => {
            out.push_str("credentials {\n");
            for s in &c.styles {
                let line = match s {
                    CredentialDecl::BasicEmailKey(_) => "basic email_key".to_string(),
                    CredentialDecl::BasicKey(_) => "basic key".to_string(),
                    CredentialDecl::ApiToken(_) => "api_token".to_string(),
                    CredentialDecl::Query(n) => format!("query {}", quoted(n)),
                    CredentialDecl::ApiKeyOrganization(_) => "apikey_organization".to_string(),
                    CredentialDecl::RawKey(ps, _) if ps.is_empty() => "raw_key".to_string(),
                    CredentialDecl::RawKey(ps, _) => format!(
                        "raw_key {}",
                        ps.iter().map(quoted).collect::<Vec<_>>().join(", ")
                    ),
                    CredentialDecl::Bearer(_) => "bearer".to_string(),
                    CredentialDecl::WorkspaceHeader(n) => format!("workspace_header {}", quoted(n)),
                };
                let _ = writeln!(out, "    {line};");
            }
            out.push_str("}\n");
        }
        Item::Keys(k) => {
            out.push_str("keys {\n");
            for r in &k.rules {
                let line = match r {
                    KeyRule::Prefix(n) => format!("prefix {}", quoted(n)),
                    KeyRule::Scope(n) => format!("scope {}", n.text),
                    KeyRule::ReadOnlyByDefault(_) => "read_only".to_string(),
                    KeyRule::Manage(n) => format!("manage {}", n.text),
                };
                let _ = writeln!(out, "    {line};");
            }
            out.push_str("}\n");
        }
        Item::Route(r) => {
            let _ = writeln!(
                out,
                "route {} {} => {} on {};",
                r.method.text,
                quoted(&r.path),
                r.action.text,
                quoted(&r.resource)
            );
        }
        Item::Unauthenticated(u) => match u {
            UnauthenticatedDecl::Status(code, _) => {
                let _ = writeln!(out, "unauthenticated status {code};");
            }
            UnauthenticatedDecl::Redirect(n) => {
                let _ = writeln!(out, "unauthenticated redirect {};", quoted(n));
            }
        },
    }
}
