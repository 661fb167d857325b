//! Semantic checks: every name resolves, nothing is defined twice, no cycles, every grant can apply.
//! Turns the syntax tree into a [`Model`], or explains with located diagnostics why it cannot.

use std::collections::HashMap;

use super::ast::{self, ActionList, CredentialDecl, Item, KeyRule, Name, UnauthenticatedDecl};
use super::model::*;
use crate::diag::{Diagnostic, Span};

/// Most scope kinds a policy may declare (kinds are a 64-bit mask in the compiled form).
pub const MAX_KINDS: usize = 64;
/// Deepest scope hierarchy.
pub const MAX_DEPTH: usize = 16;
/// Most actions a policy may declare.
pub const MAX_ACTIONS: usize = 4096;
/// Most roles a policy may declare.
pub const MAX_ROLES: usize = 200_000;
/// Longest chain of role inclusions.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// Checks a parsed policy. Returns the model when there is no error, and every diagnostic found.
/// `text` is the source the spans point into (used to name lines in hints).
pub fn check(policy: &ast::Policy, text: &str) -> (Option<Model>, Vec<Diagnostic>) {
    let mut c = Checker {
        text,
        ..Checker::default()
    };
    c.run(policy);
    let has_errors = c.diags.iter().any(Diagnostic::is_error);
    c.diags.sort_by_key(|d| d.span.start);
    (if has_errors { None } else { Some(c.model) }, c.diags)
}

#[derive(Default)]
struct Checker<'t> {
    text: &'t str,
    model: Model,
    diags: Vec<Diagnostic>,
    kind_ids: HashMap<String, KindId>,
    kind_spans: Vec<Span>,
    action_ids: HashMap<String, ActionId>,
    action_spans: Vec<Span>,
    group_ids: HashMap<String, usize>,
    role_ids: HashMap<String, RoleId>,
    deny_spans: HashMap<String, Span>,
}

impl Checker<'_> {
    fn error(&mut self, msg: String, span: Span) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(msg, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// "defined twice" error with a hint naming the line of the first definition.
    fn duplicate(&mut self, what: &str, name: &Name, first: Option<Span>) {
        self.error(
            format!("{what} `{}` is defined twice", name.text),
            name.span.clone(),
        );
        if let Some(first) = first {
            let line = self.line_of(&first);
            self.help(format!("the first definition is on line {line}"));
        }
    }

    /// The 1-based line a span starts on.
    fn line_of(&self, span: &Span) -> usize {
        let start = span.start.min(self.text.len());
        self.text
            .get(..start)
            .map_or(0, |t| t.matches('\n').count())
            + 1
    }

    fn help(&mut self, help: impl Into<String>) {
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help.into());
        }
    }

    fn run(&mut self, p: &ast::Policy) {
        self.declare_kinds(p);
        self.declare_actions(p);
        self.declare_groups(p);
        self.declare_roles(p);
        for item in &p.items {
            match item {
                Item::SelfAccess(s) => self.self_rule(s),
                Item::Deny(d) => self.deny_rule(d),
                _ => {}
            }
        }
        self.blocks(p);
        self.routes(p);
    }

    // ---- scope kinds -------------------------------------------------------------------------

    fn declare_kinds(&mut self, p: &ast::Policy) {
        let decls: Vec<&ast::ScopeDecl> = p
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Scope(s) => Some(s),
                _ => None,
            })
            .collect();
        for s in &decls {
            if let Some(&prev) = self.kind_ids.get(&s.name.text) {
                let prev_span = self.kind_spans[usize::from(prev)].clone();
                self.duplicate("scope kind", &s.name, Some(prev_span));
                continue;
            }
            if self.model.kinds.len() >= MAX_KINDS {
                self.error(
                    format!("too many scope kinds: at most {MAX_KINDS}"),
                    s.name.span.clone(),
                );
                return;
            }
            let id = self.model.kinds.len() as KindId;
            self.kind_ids.insert(s.name.text.clone(), id);
            self.kind_spans.push(s.name.span.clone());
            self.model.kinds.push(Kind {
                name: s.name.text.clone(),
                parent: None,
            });
        }
        for s in &decls {
            let Some(parent) = &s.parent else { continue };
            let Some(&id) = self.kind_ids.get(&s.name.text) else {
                continue;
            };
            if self.kind_spans[usize::from(id)] != s.name.span {
                continue; // a duplicate, already reported
            }
            match self.kind_ids.get(&parent.text) {
                Some(&pid) if pid == id => {
                    self.error(
                        format!("scope kind `{}` is its own parent", s.name.text),
                        parent.span.clone(),
                    );
                    self.help(
                        "name the kind directly above it, or leave out `under` for a top kind",
                    );
                }
                Some(&pid) => self.model.kinds[usize::from(id)].parent = Some(pid),
                None => self.unknown_kind(parent),
            }
        }
        // Cycles and depth: walk up from each kind.
        for id in 0..self.model.kinds.len() {
            let mut seen = vec![id];
            let mut cur = self.model.kinds[id].parent;
            while let Some(p) = cur {
                let p = usize::from(p);
                if seen.contains(&p) {
                    if p == id {
                        let chain: Vec<String> = seen
                            .iter()
                            .chain(std::iter::once(&id))
                            .map(|k| format!("`{}`", self.model.kinds[*k].name))
                            .collect();
                        let span = self.kind_spans[id].clone();
                        self.error(
                            format!("scope kinds form a cycle: {}", chain.join(" under ")),
                            span,
                        );
                        self.help("the scope kinds must form a tree: give the top kind no `under`");
                    }
                    // Break the cycle so later walks terminate.
                    self.model.kinds[id].parent = None;
                    break;
                }
                seen.push(p);
                if seen.len() > MAX_DEPTH {
                    let span = self.kind_spans[id].clone();
                    let name = self.model.kinds[id].name.clone();
                    self.error(
                        format!(
                            "scope kind `{name}` lies {} levels deep, more than the limit of {MAX_DEPTH}",
                            seen.len()
                        ),
                        span,
                    );
                    self.help(
                        "a resource path has at most one segment per level: flatten the hierarchy",
                    );
                    self.model.kinds[id].parent = None;
                    break;
                }
                cur = self.model.kinds[p].parent;
            }
        }
    }

    fn unknown_kind(&mut self, n: &Name) {
        let known: Vec<&str> = self.model.kinds.iter().map(|k| k.name.as_str()).collect();
        let suggestion = suggest(&n.text, &known).map(str::to_string);
        self.error(format!("unknown scope kind `{}`", n.text), n.span.clone());
        match suggestion {
            Some(s) => self.help(format!("did you mean `{s}`?")),
            None => self.help("declare it with `scope NAME;` or `scope NAME under PARENT;`"),
        }
    }

    fn kind(&mut self, n: &Name) -> Option<KindId> {
        match self.kind_ids.get(&n.text) {
            Some(&k) => Some(k),
            None => {
                self.unknown_kind(n);
                None
            }
        }
    }

    // ---- actions and groups ------------------------------------------------------------------

    fn declare_actions(&mut self, p: &ast::Policy) {
        for item in &p.items {
            let Item::Action(a) = item else { continue };
            for n in &a.names {
                if n.text == "*" {
                    continue;
                }
                if let Some(&prev) = self.action_ids.get(&n.text) {
                    let first = self.action_spans.get(prev as usize).cloned();
                    self.duplicate("action", n, first);
                    continue;
                }
                if self.model.actions.len() >= MAX_ACTIONS {
                    self.error(
                        format!("too many actions: at most {MAX_ACTIONS}"),
                        n.span.clone(),
                    );
                    return;
                }
                let access = match a.access {
                    Some(acc) => acc,
                    None => {
                        self.error(
                            format!("action `{}` is not declared read or write", n.text),
                            n.span.clone(),
                        );
                        self.help(format!(
                            "write `action {}: read;` or `action {}: write;`",
                            n.text, n.text
                        ));
                        ast::Access::Write
                    }
                };
                let id = self.model.actions.len() as ActionId;
                self.action_ids.insert(n.text.clone(), id);
                self.action_spans.push(n.span.clone());
                self.model.actions.push(Action {
                    name: n.text.clone(),
                    access,
                });
            }
        }
    }

    fn declare_groups(&mut self, p: &ast::Policy) {
        let decls: Vec<&ast::GroupDecl> = p
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Group(g) => Some(g),
                _ => None,
            })
            .collect();
        let mut valid = Vec::new();
        for g in &decls {
            if let Some(&a) = self.action_ids.get(&g.name.text) {
                let line = self.line_of(&self.action_spans[a as usize].clone());
                self.error(
                    format!("group `{}` has the same name as an action", g.name.text),
                    g.name.span.clone(),
                );
                self.help(format!(
                    "the action is declared on line {line}; actions and groups share one namespace, so rename the group"
                ));
                continue;
            }
            if let Some(&prev) = self.group_ids.get(&g.name.text) {
                let first = valid
                    .get(prev)
                    .map(|x: &&ast::GroupDecl| x.name.span.clone());
                self.duplicate("group", &g.name, first);
                continue;
            }
            self.group_ids.insert(g.name.text.clone(), valid.len());
            valid.push(*g);
        }
        // Expand with an explicit stack (no recursion), detecting cycles.
        let n = valid.len();
        let mut expanded: Vec<Option<Vec<ActionId>>> = vec![None; n];
        let mut state = vec![0u8; n]; // 0 new, 1 in progress, 2 done
        for root in 0..n {
            if state[root] == 2 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some(&mut (g, ref mut next)) = stack.last_mut() {
                let members = &valid[g].members;
                if *next < members.len() {
                    let m = &members[*next];
                    *next += 1;
                    if let Some(&child) = self.group_ids.get(&m.text) {
                        match state[child] {
                            0 => {
                                state[child] = 1;
                                stack.push((child, 0));
                            }
                            1 => {
                                // The cycle: from `child` on the stack up to this group, then back.
                                let from = stack.iter().position(|&(x, _)| x == child).unwrap_or(0);
                                let chain: Vec<String> = stack[from..]
                                    .iter()
                                    .map(|&(x, _)| format!("`{}`", valid[x].name.text))
                                    .chain(std::iter::once(format!("`{}`", m.text)))
                                    .collect();
                                self.error(
                                    format!(
                                        "group `{}` includes itself: {}",
                                        valid[child].name.text,
                                        chain.join(" includes ")
                                    ),
                                    m.span.clone(),
                                );
                                self.help("groups must not form a cycle");
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                // All children done: expand this group.
                let mut acts = Vec::new();
                for m in members {
                    if let Some(&a) = self.action_ids.get(&m.text) {
                        acts.push(a);
                    } else if let Some(&child) = self.group_ids.get(&m.text) {
                        if let Some(ch) = &expanded[child] {
                            acts.extend_from_slice(ch);
                        }
                    } else {
                        self.unknown_action(m);
                    }
                }
                acts.sort_unstable();
                acts.dedup();
                expanded[g] = Some(acts);
                state[g] = 2;
                stack.pop();
            }
        }
        for (g, acts) in valid.iter().zip(expanded) {
            self.model.groups.push(Group {
                name: g.name.text.clone(),
                actions: acts.unwrap_or_default(),
            });
        }
    }

    fn unknown_action(&mut self, n: &Name) {
        let mut known: Vec<&str> = self.model.actions.iter().map(|a| a.name.as_str()).collect();
        known.extend(self.group_ids.keys().map(String::as_str));
        let suggestion = suggest(&n.text, &known).map(str::to_string);
        self.error(
            format!("unknown action or group `{}`", n.text),
            n.span.clone(),
        );
        match suggestion {
            Some(s) => self.help(format!("did you mean `{s}`?")),
            None => self.help("declare it with `action NAME: read;`, `action NAME: write;` or `group NAME = ...;`"),
        }
    }

    fn actions(&mut self, list: &ActionList) -> Vec<ActionId> {
        match list {
            ActionList::All(_) => (0..self.model.actions.len() as ActionId).collect(),
            ActionList::Names(names) => {
                let mut out = Vec::new();
                for n in names {
                    if let Some(&a) = self.action_ids.get(&n.text) {
                        out.push(a);
                    } else if let Some(&g) = self.group_ids.get(&n.text) {
                        out.extend_from_slice(&self.model.groups[g].actions);
                    } else {
                        self.unknown_action(n);
                    }
                }
                out.sort_unstable();
                out.dedup();
                out
            }
        }
    }

    // ---- roles -------------------------------------------------------------------------------

    fn declare_roles(&mut self, p: &ast::Policy) {
        let decls: Vec<&ast::RoleDecl> = p
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Role(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut valid: Vec<&ast::RoleDecl> = Vec::new();
        for r in &decls {
            if let Some(&prev) = self.role_ids.get(&r.name.text) {
                let first = valid.get(prev as usize).map(|x| x.name.span.clone());
                self.duplicate("role", &r.name, first);
                continue;
            }
            if valid.len() >= MAX_ROLES {
                self.error(
                    format!("too many roles: at most {MAX_ROLES}"),
                    r.name.span.clone(),
                );
                break;
            }
            self.role_ids
                .insert(r.name.text.clone(), valid.len() as RoleId);
            valid.push(r);
        }
        for r in &valid {
            let kind = self.kind(&r.kind);
            if r.grants.is_empty() && r.includes.is_empty() {
                self.error(
                    format!("role `{}` grants nothing", r.name.text),
                    r.name.span.clone(),
                );
                self.help("add a `grant` or an `includes`, or remove the role");
            }
            let mut grants = Vec::new();
            for g in &r.grants {
                let actions = self.actions(&g.actions);
                let mut on = Vec::new();
                for k in &g.on {
                    let Some(kid) = self.kind(k) else { continue };
                    if let Some(rk) = kind {
                        if !self.model.is_at_or_beneath(kid, rk) {
                            self.error(
                                format!(
                                    "this grant can never apply: `{}` is not at or beneath `{}`, where role `{}` is bound",
                                    k.text, r.kind.text, r.name.text
                                ),
                                k.span.clone(),
                            );
                            self.help(
                                "a role covers only its binding's scope and what lies beneath it",
                            );
                            continue;
                        }
                    }
                    on.push(kid);
                }
                if r.observer
                    && !actions.is_empty()
                    && actions
                        .iter()
                        .all(|a| self.model.actions[*a as usize].access == ast::Access::Write)
                {
                    self.diags.push(
                        Diagnostic::warning(
                            format!("observer role `{}` drops every action of this grant: they all write", r.name.text),
                            g.span.0.clone(),
                        )
                        .with_help("observer roles are read-only whatever they list"),
                    );
                }
                on.sort_unstable();
                on.dedup();
                grants.push(RoleGrant { actions, on });
            }
            let mut includes = Vec::new();
            for inc in &r.includes {
                match self.role_ids.get(&inc.text) {
                    Some(&id) => {
                        let inc_decl = valid[id as usize];
                        if let (Some(rk), Some(ik)) =
                            (kind, self.kind_ids.get(&inc_decl.kind.text).copied())
                        {
                            if !self.model.is_at_or_beneath(ik, rk) {
                                self.error(
                                    format!(
                                        "role `{}` at `{}` includes `{}`, which is bound at `{}`, above it",
                                        r.name.text, r.kind.text, inc.text, inc_decl.kind.text
                                    ),
                                    inc.span.clone(),
                                );
                                self.help("a role may include only roles bound at its own kind or beneath it");
                                continue;
                            }
                        }
                        includes.push(id);
                    }
                    None => {
                        let known: Vec<&str> = self.role_ids.keys().map(String::as_str).collect();
                        let s = suggest(&inc.text, &known).map(str::to_string);
                        self.error(format!("unknown role `{}`", inc.text), inc.span.clone());
                        match s {
                            Some(s) => self.help(format!("did you mean `{s}`?")),
                            None => self.help("declare it with `role NAME at KIND { grant ...; }`"),
                        }
                    }
                }
            }
            self.model.roles.push(Role {
                name: r.name.text.clone(),
                kind: kind.unwrap_or(0),
                observer: r.observer,
                grants,
                includes,
            });
        }
        self.check_include_cycles(&valid);
    }

    /// Finds inclusion cycles (each reported and cut) and chains longer than [`MAX_INCLUDE_DEPTH`].
    fn check_include_cycles(&mut self, decls: &[&ast::RoleDecl]) {
        let n = self.model.roles.len();
        let mut state = vec![0u8; n];
        // Roles on the longest inclusion chain starting at each role, itself included.
        let mut height = vec![0usize; n];
        let mut too_deep_reported = false;
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            while let Some(&mut (r, ref mut next)) = stack.last_mut() {
                let includes = &self.model.roles[r].includes;
                if *next < includes.len() {
                    let child = includes[*next] as usize;
                    *next += 1;
                    match state[child] {
                        0 => {
                            state[child] = 1;
                            stack.push((child, 0));
                        }
                        1 => {
                            let span = decls[r]
                                .includes
                                .iter()
                                .find(|i| i.text == self.model.roles[child].name)
                                .map_or(decls[r].name.span.clone(), |i| i.span.clone());
                            let msg = format!(
                                "role `{}` includes itself through `{}`",
                                self.model.roles[child].name, self.model.roles[r].name
                            );
                            self.error(msg, span);
                            self.help("role inclusions must not form a cycle");
                            // Cut the edge so the evaluators stay finite even if asked.
                            self.model.roles[r]
                                .includes
                                .retain(|&c| c as usize != child);
                            if let Some(top) = stack.last_mut() {
                                top.1 = top.1.saturating_sub(1);
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                // Every included role is finished (or its edge was cut): the chain length is known.
                // INVARIANT: measured on the whole graph, not on this walk's stack, so a chain is
                // caught whatever order its roles are declared in.
                height[r] = 1 + includes
                    .iter()
                    .map(|&c| height[c as usize])
                    .max()
                    .unwrap_or(0);
                if height[r] - 1 > MAX_INCLUDE_DEPTH && !too_deep_reported {
                    too_deep_reported = true;
                    let span = decls[r].name.span.clone();
                    self.error(
                        format!(
                            "role `{}` starts a chain of {} nested inclusions, more than the limit of {MAX_INCLUDE_DEPTH}",
                            decls[r].name.text, height[r] - 1
                        ),
                        span,
                    );
                    self.help(
                        "include the roles further down the chain directly, or merge some of them",
                    );
                }
                state[r] = 2;
                stack.pop();
            }
        }
    }

    // ---- self and deny rules -----------------------------------------------------------------

    fn self_rule(&mut self, s: &ast::SelfDecl) {
        let actions = self.actions(&s.actions);
        if let Some(kind) = self.kind(&s.kind) {
            self.model.self_rules.push(SelfRule { actions, kind });
        }
    }

    fn deny_rule(&mut self, d: &ast::DenyDecl) {
        if let Some(first) = self.deny_spans.get(&d.name.text).cloned() {
            self.duplicate("deny rule", &d.name, Some(first));
            return;
        }
        self.deny_spans
            .insert(d.name.text.clone(), d.name.span.clone());
        let actions = self.actions(&d.actions);
        let mut on = Vec::new();
        for k in &d.on {
            if let Some(kid) = self.kind(k) {
                on.push(kid);
            }
        }
        on.sort_unstable();
        on.dedup();
        self.model.denies.push(DenyRule {
            name: d.name.text.clone(),
            actions,
            on,
        });
    }

    // ---- credentials, keys, unauthenticated --------------------------------------------------

    fn blocks(&mut self, p: &ast::Policy) {
        let mut seen_credentials: Option<Span> = None;
        let mut seen_keys: Option<Span> = None;
        let mut seen_unauth: Option<Span> = None;
        for item in &p.items {
            match item {
                Item::Credentials(c) => {
                    if let Some(first) = &seen_credentials {
                        let line = self.line_of(first);
                        self.error("`credentials` is declared twice".into(), c.span.0.clone());
                        self.help(format!("list every accepted style in the one `credentials {{ ... }}` block, on line {line}"));
                        continue;
                    }
                    seen_credentials = Some(c.span.0.clone());
                    self.credentials(c);
                }
                Item::Keys(k) => {
                    if let Some(first) = &seen_keys {
                        let line = self.line_of(first);
                        self.error("`keys` is declared twice".into(), k.span.0.clone());
                        self.help(format!(
                            "list every rule in the one `keys {{ ... }}` block, on line {line}"
                        ));
                        continue;
                    }
                    seen_keys = Some(k.span.0.clone());
                    self.keys(k);
                }
                Item::Unauthenticated(u) => {
                    let span = match u {
                        UnauthenticatedDecl::Status(_, s) => s.0.clone(),
                        UnauthenticatedDecl::Redirect(n) => n.span.clone(),
                    };
                    if let Some(first) = &seen_unauth {
                        let line = self.line_of(first);
                        self.error("`unauthenticated` is declared twice".into(), span);
                        self.help(format!("keep one answer: the first is on line {line}"));
                        continue;
                    }
                    seen_unauth = Some(span);
                    match u {
                        UnauthenticatedDecl::Status(code, ast::Loc(span)) => {
                            if !(400..=499).contains(code) {
                                self.error(
                                    format!("`{code}` is not a client error status"),
                                    span.clone(),
                                );
                                self.help("use 401 (the default), 403 or another 4xx code");
                            } else {
                                self.model.unauthenticated = Unauthenticated::Status(*code);
                            }
                        }
                        UnauthenticatedDecl::Redirect(n) => {
                            if !(n.text.starts_with('/')
                                || n.text.starts_with("https://")
                                || n.text.starts_with("http://"))
                                || n.text.chars().any(|c| c.is_control() || c == ' ')
                            {
                                self.error(
                                    format!("`{}` is not a redirect target", n.text),
                                    n.span.clone(),
                                );
                                self.help(
                                    "give a path such as `/app/login` or an absolute http(s) URL",
                                );
                            } else {
                                self.model.unauthenticated =
                                    Unauthenticated::Redirect(n.text.clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if seen_credentials.is_none() && !p.items.is_empty() {
            self.diags.push(
                Diagnostic::warning(
                    "no `credentials` block: every request will be unauthenticated",
                    0..0,
                )
                .with_help("declare the accepted styles, e.g. `credentials { bearer; }`"),
            );
        }
    }

    fn credentials(&mut self, c: &ast::CredentialsDecl) {
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        for style in &c.styles {
            let (tag, span) = match style {
                CredentialDecl::BasicEmailKey(s) => ("basic email_key", s.0.clone()),
                CredentialDecl::BasicKey(s) => ("basic key", s.0.clone()),
                CredentialDecl::ApiToken(s) => ("api_token", s.0.clone()),
                CredentialDecl::Query(n) => ("query", n.span.clone()),
                CredentialDecl::ApiKeyOrganization(s) => ("apikey_organization", s.0.clone()),
                CredentialDecl::RawKey(_, s) => ("raw_key", s.0.clone()),
                CredentialDecl::Bearer(s) => ("bearer", s.0.clone()),
                CredentialDecl::WorkspaceHeader(n) => ("workspace_header", n.span.clone()),
            };
            if let Some((_, first)) = seen.iter().find(|(t, _)| *t == tag) {
                let line = self.line_of(first);
                self.error(format!("credential style `{tag}` is declared twice"), span);
                self.help(format!("the first is on line {line}"));
                continue;
            }
            seen.push((tag, span));
            let r = &mut self.model.credentials;
            match style {
                CredentialDecl::BasicEmailKey(_) => r.basic_email_key = true,
                CredentialDecl::BasicKey(_) => r.basic_key = true,
                CredentialDecl::ApiToken(_) => r.api_token = true,
                CredentialDecl::Bearer(_) => r.bearer = true,
                CredentialDecl::ApiKeyOrganization(_) => r.apikey_organization = true,
                CredentialDecl::Query(n) => {
                    if !valid_token_name(&n.text) {
                        self.error(
                            format!("`{}` is not a query parameter name", n.text),
                            n.span.clone(),
                        );
                        self.help(
                            "use letters, digits, `_`, `-` and `.`, e.g. `query \"apiToken\";`",
                        );
                    } else {
                        self.model.credentials.query_param = Some(n.text.clone());
                    }
                }
                CredentialDecl::WorkspaceHeader(n) => {
                    if http::HeaderName::from_bytes(n.text.as_bytes()).is_err() || n.text.is_empty()
                    {
                        self.error(
                            format!("`{}` is not an HTTP header name", n.text),
                            n.span.clone(),
                        );
                        self.help("use letters, digits and `-`, e.g. `\"X-Workspace-Key\"`");
                    } else {
                        self.model.credentials.workspace_header = Some(n.text.clone());
                    }
                }
                CredentialDecl::RawKey(prefixes, _) => {
                    let mut out = Vec::new();
                    for p in prefixes {
                        if p.text.is_empty() || p.text.chars().any(|c| !c.is_ascii_graphic()) {
                            let msg = if p.text.is_empty() {
                                "a key prefix cannot be empty".to_string()
                            } else {
                                format!("`{}` is not a key prefix", p.text)
                            };
                            self.error(msg, p.span.clone());
                            self.help("a prefix is one or more visible ASCII characters, e.g. `\"orgkey-\"`");
                        } else {
                            out.push(p.text.clone());
                        }
                    }
                    self.model.credentials.raw_key = Some(out);
                }
            }
        }
    }

    fn keys(&mut self, k: &ast::KeysDecl) {
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        for rule in &k.rules {
            let (tag, span) = match rule {
                KeyRule::Prefix(n) => ("prefix", n.span.clone()),
                KeyRule::Scope(n) => ("scope", n.span.clone()),
                KeyRule::ReadOnlyByDefault(s) => ("read_only", s.0.clone()),
                KeyRule::Manage(n) => ("manage", n.span.clone()),
            };
            if let Some((_, first)) = seen.iter().find(|(t, _)| *t == tag) {
                let line = self.line_of(first);
                self.error(format!("key rule `{tag}` is declared twice"), span);
                self.help(format!("the first is on line {line}"));
                continue;
            }
            seen.push((tag, span));
            match rule {
                KeyRule::Prefix(n) => {
                    if n.text.is_empty()
                        || n.text.len() > 16
                        || !n
                            .text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        self.error(format!("`{}` is not a key prefix", n.text), n.span.clone());
                        self.help("1 to 16 letters, digits, `_` or `-`, e.g. `\"kw_\"`");
                    } else {
                        self.model.keys.prefix = Some(n.text.clone());
                    }
                }
                KeyRule::Scope(n) => self.model.keys.scope_kind = self.kind(n),
                KeyRule::ReadOnlyByDefault(_) => self.model.keys.read_only_by_default = true,
                KeyRule::Manage(n) => match self.action_ids.get(&n.text) {
                    Some(&a) => self.model.keys.manage_action = Some(a),
                    None => {
                        let known: Vec<&str> =
                            self.model.actions.iter().map(|a| a.name.as_str()).collect();
                        let s = suggest(&n.text, &known).map(str::to_string);
                        self.error(format!("unknown action `{}`", n.text), n.span.clone());
                        match s {
                            Some(s) => self.help(format!("did you mean `{s}`?")),
                            None => self.help("`manage` names a declared action, e.g. `action manage_keys: write;`"),
                        }
                    }
                },
            }
        }
    }
}

/// HTTP methods a route may name (or `*`).
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A segment of a route's path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PathSeg {
    Static(String),
    Param(String),
    CatchAll(String),
}

/// Parses `/a/{b}/{*c}`; the error says what is wrong.
fn parse_path_template(path: &str) -> Result<Vec<PathSeg>, String> {
    if !path.starts_with('/') {
        return Err("a route path starts with `/`".into());
    }
    if path == "/" {
        return Ok(Vec::new());
    }
    let body = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    let parts: Vec<&str> = body.split('/').collect();
    let mut segs = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err("a route path has no empty segments (`//`)".into());
        }
        if *part == "." || *part == ".." {
            return Err("a route path has no `.` or `..` segments".into());
        }
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (catch_all, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if !valid_ident(name) {
                return Err(format!(
                    "`{{{inner}}}` is not a parameter: use `{{name}}` or `{{*name}}`"
                ));
            }
            if catch_all && i + 1 != parts.len() {
                return Err(format!("`{{*{name}}}` must be the last segment"));
            }
            segs.push(if catch_all {
                PathSeg::CatchAll(name.to_string())
            } else {
                PathSeg::Param(name.to_string())
            });
        } else if part.contains(['{', '}', '%', '\\', '?', '#'])
            || part.chars().any(char::is_whitespace)
        {
            return Err(format!(
                "`{part}` is not a path segment: a parameter is a whole segment, `{{name}}`"
            ));
        } else {
            segs.push(PathSeg::Static((*part).to_string()));
        }
    }
    Ok(segs)
}

/// True if some request path matches both templates.
fn paths_overlap(a: &[PathSeg], b: &[PathSeg]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            (Some(PathSeg::CatchAll(_)), _) | (_, Some(PathSeg::CatchAll(_))) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(PathSeg::Static(x)), Some(PathSeg::Static(y))) if x != y => return false,
            _ => {}
        }
        i += 1;
    }
}

/// Parses `organization:{org}/project:{?p}` into parts.
fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let Some(end) = rest.find('}') else {
                    return Err("a `{` without its `}`".into());
                };
                let inner = &rest[1..end];
                let (query, name) = match inner.strip_prefix('?') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if !valid_ident(name) {
                    return Err(format!(
                        "`{{{inner}}}` is not a placeholder: use `{{name}}` or `{{?name}}`"
                    ));
                }
                parts.push(if query {
                    TemplatePart::Query(name.to_string())
                } else {
                    TemplatePart::Path(name.to_string())
                });
                rest = &rest[end + 1..];
            }
            Some(n) => {
                parts.push(TemplatePart::Literal(rest[..n].to_string()));
                rest = &rest[n..];
            }
            None => {
                if rest.contains('}') {
                    return Err("a `}` without its `{`".into());
                }
                parts.push(TemplatePart::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(parts)
}

fn valid_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl Checker<'_> {
    fn routes(&mut self, p: &ast::Policy) {
        let mut seen: Vec<(Option<String>, Vec<PathSeg>, Span)> = Vec::new();
        for item in &p.items {
            let Item::Route(r) = item else { continue };
            let method = if r.method.text == "*" {
                None
            } else if METHODS.contains(&r.method.text.as_str()) {
                Some(r.method.text.clone())
            } else {
                self.error(
                    format!("unknown HTTP method `{}`", r.method.text),
                    r.method.span.clone(),
                );
                self.help("use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or `*` for any");
                continue;
            };
            let segs = match parse_path_template(&r.path.text) {
                Ok(s) => s,
                Err(why) => {
                    self.error(
                        format!("invalid route path `{}`", r.path.text),
                        r.path.span.clone(),
                    );
                    self.help(why);
                    continue;
                }
            };
            let mut params: Vec<&str> = Vec::new();
            for s in &segs {
                if let PathSeg::Param(n) | PathSeg::CatchAll(n) = s {
                    if params.contains(&n.as_str()) {
                        self.error(
                            format!("path parameter `{n}` appears twice"),
                            r.path.span.clone(),
                        );
                    }
                    params.push(n);
                }
            }
            let action = match self.action_ids.get(&r.action.text) {
                Some(&a) => Some(a),
                None => {
                    self.unknown_action(&r.action);
                    None
                }
            };
            let template = match parse_template(&r.resource.text) {
                Ok(t) => t,
                Err(why) => {
                    self.error(
                        format!("invalid resource template `{}`", r.resource.text),
                        r.resource.span.clone(),
                    );
                    self.help(why);
                    continue;
                }
            };
            let mut ok = true;
            for part in &template {
                if let TemplatePart::Path(n) = part {
                    let catch_all = segs
                        .iter()
                        .any(|s| matches!(s, PathSeg::CatchAll(c) if c == n));
                    if !params.contains(&n.as_str()) {
                        self.error(
                            format!(
                                "placeholder `{{{n}}}` is not bound by the route's path `{}`",
                                r.path.text
                            ),
                            r.resource.span.clone(),
                        );
                        self.help(format!("add `{{{n}}}` to the path, or take it from the query string with `{{?{n}}}`"));
                        ok = false;
                    } else if catch_all {
                        self.error(
                            format!("`{{*{n}}}` may span several segments and cannot fill a resource id"),
                            r.resource.span.clone(),
                        );
                        ok = false;
                    }
                }
            }
            // `"."` is the scope the request acts in: the workspace the credential selects, or the
            // context the host gives (see `Request::context`).
            if ok && r.resource.text != "." {
                ok = self.check_resource_template(&template, &r.resource);
            }
            if let Some((_, _, first)) = seen.iter().find(|(m, s, _)| {
                (m.is_none() || method.is_none() || *m == method) && paths_overlap(s, &segs)
            }) {
                let first = first.clone();
                let start = first.start.min(self.text.len());
                let line = self
                    .text
                    .get(..start)
                    .map_or(0, |t| t.matches('\n').count())
                    + 1;
                self.error(
                    format!(
                        "route `{} {}` matches the same requests as the route on line {line}",
                        r.method.text, r.path.text
                    ),
                    r.path.span.clone(),
                );
                self.help(
                    "every request must match at most one route: make the paths or methods differ",
                );
                ok = false;
            }
            seen.push((method.clone(), segs, r.path.span.clone()));
            if let (true, Some(action)) = (ok, action) {
                let path = match r.path.text.strip_suffix('/') {
                    Some(p) if !p.is_empty() => p.to_string(),
                    _ => r.path.text.clone(),
                };
                self.model.routes.push(Route {
                    method,
                    path,
                    action,
                    resource: template,
                });
            }
        }
    }

    /// Checks the kinds of a resource template follow the hierarchy, with each placeholder as an id.
    fn check_resource_template(&mut self, template: &[TemplatePart], at: &Name) -> bool {
        let sample: String = template
            .iter()
            .map(|p| match p {
                TemplatePart::Literal(l) => l.clone(),
                TemplatePart::Path(_) | TemplatePart::Query(_) => "x".to_string(),
            })
            .collect();
        let mut prev: Option<KindId> = None;
        for (i, seg) in sample.split('/').enumerate() {
            let Some((kind, id)) = seg.split_once(':') else {
                self.error(
                    format!(
                        "segment {} of resource template `{}` is not `kind:id`",
                        i + 1,
                        at.text
                    ),
                    at.span.clone(),
                );
                return false;
            };
            if id.is_empty() || id.contains(':') {
                self.error(
                    format!(
                        "segment {} of resource template `{}` has no id",
                        i + 1,
                        at.text
                    ),
                    at.span.clone(),
                );
                return false;
            }
            let Some(&k) = self.kind_ids.get(kind) else {
                self.error(
                    format!(
                        "unknown scope kind `{kind}` in resource template `{}`",
                        at.text
                    ),
                    at.span.clone(),
                );
                return false;
            };
            if let Some(p) = prev {
                if self.model.kinds[usize::from(k)].parent != Some(p) {
                    self.error(
                        format!(
                            "`{kind}` does not lie directly beneath `{}` in resource template `{}`",
                            self.model.kinds[usize::from(p)].name,
                            at.text
                        ),
                        at.span.clone(),
                    );
                    return false;
                }
            }
            prev = Some(k);
        }
        true
    }
}

fn valid_token_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The known name closest to `name` (edit distance at most 2), for "did you mean" hints.
fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
