//! `keyward demo`: the four bundled policies on a temporary key table, one flow per product. Every
//! request is printed with its decision and reason; each decision is also checked against what the
//! product's documentation says, and the demo exits 1 if one differs.

use std::process::ExitCode;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use keyward::engine::{Identity, KeyCommand, KeyCommandResult, ManageError};
use keyward::policy::Policy;
use keyward::store::{Actor, KeyKind, KeyRecord, NewKey, NewPrincipal, PrincipalKind, Workspace};
use keyward::token::Secret;
use keyward::{Decision, Engine, EngineOptions, Request};

use crate::out::table;
use crate::{CliError, CmdResult};

const SEED: &str = include_str!("../../../policies/seed-platform.policy");
const SEATSIO: &str = include_str!("../../../policies/seatsio.policy");
const API_TOKEN: &str = include_str!("../../../policies/api-token.policy");
const COGNITIVE3D: &str = include_str!("../../../policies/cognitive3d.policy");

/// The SEED documentation's own example: `user@seed-platform.org:b58f12c3...`, URL-safe base64.
const SEED_DOC_HEADER: &str =
    "Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi";
const SEED_DOC_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";
/// seats.io's documented example workspace secret key and its header (`curl -u KEY:`).
const SEATS_DOC_KEY: &str = "550e8400-e29b-41d4-a716-446655440000";
const SEATS_DOC_HEADER: &str = "Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg==";

type R<T> = Result<T, CliError>;

/// What the documentation says should happen.
#[derive(Clone, Copy)]
enum Expect {
    Allow,
    Deny(&'static str),
}

enum Line {
    Row(Vec<String>),
    Note(String),
}

/// One product's section: its engine, and the lines to print.
struct Section {
    engine: Engine,
    lines: Vec<Line>,
    n: usize,
    failures: usize,
}

/// A request to show.
struct Req<'a> {
    label: String,
    headers: HeaderMap,
    query: Option<&'a str>,
    context: Option<&'a str>,
}

fn req<'a>(label: impl Into<String>, headers: &[(&str, &str)]) -> Req<'a> {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(n, v);
        }
    }
    Req {
        label: label.into(),
        headers: map,
        query: None,
        context: None,
    }
}

impl<'a> Req<'a> {
    fn query(mut self, q: &'a str) -> Self {
        self.query = Some(q);
        self
    }
    fn context(mut self, c: &'a str) -> Self {
        self.context = Some(c);
        self
    }
}

/// `kw_AbCdE…`: a key as shown in the demo (its display prefix).
fn short(rec: &KeyRecord) -> String {
    format!("{}…", rec.display_prefix)
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

fn basic_urlsafe(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        URL_SAFE_NO_PAD.encode(format!("{user}:{secret}"))
    )
}

/// The first characters of a header value, for display.
fn head(value: &str, n: usize) -> String {
    format!("{}…", value.chars().take(n).collect::<String>())
}

impl Section {
    fn new(name: &str, text: &str) -> R<Section> {
        let policy = Policy::parse(name, text).map_err(|r| {
            CliError::new(format!("bundled policy `{name}` has errors")).with_detail(r.render())
        })?;
        Ok(Section {
            engine: Engine::temporary(policy, EngineOptions::default())?,
            lines: Vec::new(),
            n: 0,
            failures: 0,
        })
    }

    fn note(&mut self, s: impl Into<String>) {
        self.lines.push(Line::Note(s.into()));
    }

    fn user(&self, login: &str, kind: PrincipalKind) -> R<u64> {
        Ok(self
            .engine
            .table()
            .add_principal(
                Actor::Cli,
                NewPrincipal {
                    kind,
                    login: login.to_owned(),
                    default_workspace: None,
                },
            )?
            .id)
    }

    fn bind(&self, p: u64, role: &str, scope: &str) -> R<()> {
        self.engine.table().bind(Actor::Cli, p, role, scope)?;
        Ok(())
    }

    fn key(&self, owner: u64, name: &str) -> R<(KeyRecord, Secret)> {
        Ok(self
            .engine
            .table()
            .create_key(Actor::Cli, NewKey::new(owner, name))?)
    }

    fn identity(&self, authorization: &str) -> R<Identity> {
        let r = req("", &[("authorization", authorization)]);
        self.engine
            .authenticate(&r.headers, None)
            .map_err(|d| CliError::new(format!("demo: cannot authenticate: {}", d.reason)))
    }

    /// Runs a key-management command as `actor`; prints it as a note and returns what it made.
    fn manage(
        &mut self,
        what: &str,
        actor: &Identity,
        target: u64,
        at: Option<&str>,
        cmd: KeyCommand,
        expect_ok: bool,
    ) -> Option<KeyCommandResult> {
        let result = self.engine.manage_keys(actor, target, at, cmd);
        let (text, ok, out) = match result {
            Ok(r) => {
                let text = match &r {
                    KeyCommandResult::Created(rec, _) => {
                        let limits = crate::out::key_limits(rec);
                        let limits = if limits == "-" {
                            String::new()
                        } else {
                            format!(" ({limits})")
                        };
                        format!("done: key {} `{}` {}{limits}", rec.id, rec.name, short(rec))
                    }
                    KeyCommandResult::Updated(rec) => {
                        format!(
                            "done: key {} `{}` is {}",
                            rec.id,
                            rec.name,
                            if rec.active { "active" } else { "inactive" }
                        )
                    }
                    KeyCommandResult::Deleted(rec) => format!("done: key {} deleted", rec.id),
                    KeyCommandResult::Listed(v) => format!("done: {} keys", v.len()),
                };
                (text, true, Some(r))
            }
            Err(ManageError::Forbidden(d)) => (
                format!("REFUSED {}: {}", d.reason.code(), d.reason),
                false,
                None,
            ),
            Err(ManageError::Store(e)) => (format!("failed: {e}"), false, None),
        };
        let flag = if ok == expect_ok {
            ""
        } else {
            "   <-- UNEXPECTED"
        };
        if ok != expect_ok {
            self.failures += 1;
        }
        self.note(format!("manage: {what} -> {text}{flag}"));
        out
    }

    fn created(&mut self, r: Option<KeyCommandResult>) -> R<(KeyRecord, Secret)> {
        match r {
            Some(KeyCommandResult::Created(rec, s)) => Ok((rec, s)),
            _ => Err(CliError::new("demo: a key the demo needs was not created")),
        }
    }

    fn row(&mut self, r: &Req<'_>, action: &str, resource: &str, expect: Expect) {
        let request = Request::new(&r.headers, action, resource)
            .with_query(r.query)
            .with_context(r.context);
        let decision = self.engine.authorize(&request);
        self.n += 1;
        let (verdict, why) = match &decision {
            Decision::Allow(a) => {
                let mut why = format!("{} at {}", a.role, a.granted_at);
                if let Some(w) = &a.workspace {
                    why.push_str(&format!(" (workspace {w})"));
                }
                if a.via_query() {
                    why.push_str(" (key in URL: ends up in access logs)");
                }
                ("ALLOW", why)
            }
            Decision::Deny(d) => {
                let resp = self.engine.deny_response(d);
                let http = match &resp.location {
                    Some(to) => format!("{} -> {to}", resp.status),
                    None => resp.status.to_string(),
                };
                (
                    "DENY",
                    format!("{}: {} [{http}]", d.reason.code(), d.reason),
                )
            }
        };
        let matches = match (expect, &decision) {
            (Expect::Allow, Decision::Allow(_)) => true,
            (Expect::Deny(code), Decision::Deny(d)) => d.reason.code() == code,
            _ => false,
        };
        let why = if matches {
            why
        } else {
            self.failures += 1;
            let wanted = match expect {
                Expect::Allow => "ALLOW".to_owned(),
                Expect::Deny(c) => format!("DENY {c}"),
            };
            format!("{why}   <-- UNEXPECTED, documented: {wanted}")
        };
        let resource = match r.context {
            Some(c) => format!("[{c}] {resource}"),
            None => resource.to_owned(),
        };
        let label = match r.query {
            Some(q) => format!("{} ?{}", r.label, q.split('=').next().unwrap_or("")),
            None => r.label.clone(),
        };
        self.lines.push(Line::Row(vec![
            self.n.to_string(),
            label,
            action.to_owned(),
            resource,
            verdict.to_owned(),
            why,
        ]));
    }

    /// Prints the section with its request rows aligned; returns the number of surprises.
    fn print(self, title: &str, setup: &[String]) -> usize {
        println!("== {title} ==");
        for s in setup {
            println!("   {s}");
        }
        let rows: Vec<Vec<String>> = self
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Row(r) => Some(r.clone()),
                Line::Note(_) => None,
            })
            .collect();
        let rendered = table(
            &["#", "CREDENTIAL", "ACTION", "RESOURCE", "DECISION", "WHY"],
            &rows,
        );
        let mut rendered = rendered.lines();
        println!();
        // Notes before the first request come before the column header.
        let lead = self
            .lines
            .iter()
            .take_while(|l| matches!(l, Line::Note(_)))
            .count();
        for l in &self.lines[..lead] {
            if let Line::Note(n) = l {
                println!("   {n}");
            }
        }
        if let Some(h) = rendered.next() {
            println!("   {h}");
        }
        for l in &self.lines[lead..] {
            match l {
                Line::Row(_) => {
                    if let Some(r) = rendered.next() {
                        println!("   {r}");
                    }
                }
                Line::Note(n) => println!("   {n}"),
            }
        }
        println!();
        self.failures
    }
}

pub fn run() -> CmdResult {
    println!("keyward demo: the four bundled policies, each on a temporary key table.");
    println!("Secrets are shown by their display prefix only (`kw_AbCdE…`); decisions are checked");
    println!("against each product's documentation.");
    println!();
    let mut failures = 0;
    let mut requests = 0;
    for flow in [seed, seats, api_token, cognitive3d] {
        let (f, n) = flow()?;
        failures += f;
        requests += n;
    }
    if failures == 0 {
        println!("{requests} requests, every decision as documented.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{requests} requests, {failures} UNEXPECTED.");
        Ok(ExitCode::from(1))
    }
}

fn seed() -> R<(usize, usize)> {
    let mut s = Section::new("seed-platform.policy", SEED)?;
    let user = s.user("user@seed-platform.org", PrincipalKind::User)?;
    s.bind(user, "member", "organization:6")?;
    let mut nk = NewKey::new(user, "api key");
    nk.read_only = false;
    let doc_key = s.engine.table().import_key(Actor::Cli, nk, SEED_DOC_KEY)?;
    let viewer = s.user("jo~ann@seed-platform.org", PrincipalKind::User)?;
    s.bind(viewer, "viewer", "organization:6")?;
    let (vkey, vsecret) = s.key(viewer, "api key")?;
    let setup = vec![
        format!("principal {user} user@seed-platform.org: member at organization:6, key {} (imported: the documentation's example key)", short(&doc_key)),
        format!("principal {viewer} jo~ann@seed-platform.org: viewer at organization:6 (read only), key {}", short(&vkey)),
        "`organization_id=6` in the query string becomes the context organization:6".to_owned(),
    ];
    let doc = || {
        req(
            format!("Basic {} (doc example)", head(&SEED_DOC_HEADER[6..], 12)),
            &[("authorization", SEED_DOC_HEADER)],
        )
    };
    s.row(
        &doc().context("organization:6"),
        "view",
        "cycle:1",
        Expect::Allow,
    );
    s.row(
        &doc().context("organization:6"),
        "update",
        "cycle:1/property:7",
        Expect::Allow,
    );
    let upper = basic("USER@SEED-PLATFORM.ORG", SEED_DOC_KEY);
    s.row(
        &req(
            "Basic b64(USER@SEED-PLATFORM.ORG:b58f…)",
            &[("authorization", &upper)],
        ),
        "list",
        "organization:6",
        Expect::Allow,
    );
    let std = basic("jo~ann@seed-platform.org", vsecret.expose());
    let url = basic_urlsafe("jo~ann@seed-platform.org", vsecret.expose());
    let std_req = || {
        req(
            format!("Basic {} (standard b64)", head(&std[6..], 12)),
            &[("authorization", &std)],
        )
    };
    let url_req = || {
        req(
            format!("Basic {} (URL-safe b64)", head(&url[6..], 12)),
            &[("authorization", &url)],
        )
    };
    s.row(&std_req(), "view", "organization:6/cycle:2", Expect::Allow);
    s.row(
        &url_req(),
        "export",
        "organization:6/cycle:2",
        Expect::Allow,
    );
    s.row(
        &url_req(),
        "update",
        "organization:6/cycle:2",
        Expect::Deny("no_role"),
    );
    s.row(&doc(), "view", "organization:7", Expect::Deny("no_role"));
    s.row(
        &req(
            format!("Basic b64(user@…:{})", short(&doc_key)),
            &[("authorization", SEED_DOC_HEADER)],
        ),
        "view",
        &format!("user:{user}"),
        Expect::Allow,
    );
    let mismatch = basic("jo~ann@seed-platform.org", SEED_DOC_KEY);
    s.row(
        &req(
            "Basic b64(jo~ann@…:b58f12c3…)",
            &[("authorization", &mismatch)],
        ),
        "view",
        "organization:6",
        Expect::Deny("email_mismatch"),
    );
    let wrong = basic(
        "user@seed-platform.org",
        "0000000000000000000000000000000000000000",
    );
    s.row(
        &req("Basic b64(user@…:00000000…)", &[("authorization", &wrong)]),
        "view",
        "organization:6",
        Expect::Deny("unknown_key"),
    );
    s.row(
        &req("(no Authorization header)", &[]),
        "view",
        "organization:6",
        Expect::Deny("no_credential"),
    );
    // "Get a New API Key": the user replaces their own key; the old one stops at once.
    let me = s.identity(SEED_DOC_HEADER)?;
    let r = s.manage(
        "user@seed-platform.org gets a new API key (regenerate own key, self rule)",
        &me,
        user,
        None,
        KeyCommand::Regenerate(doc_key.id),
        true,
    );
    let (new_rec, new_secret) = s.created(r)?;
    s.row(
        &doc(),
        "view",
        "organization:6",
        Expect::Deny("unknown_key"),
    );
    let new = basic("user@seed-platform.org", new_secret.expose());
    s.row(
        &req(
            format!("Basic b64(user@…:{})", short(&new_rec)),
            &[("authorization", &new)],
        ),
        "view",
        "organization:6",
        Expect::Allow,
    );
    let n = s.n;
    Ok((
        s.print(
            "SEED Platform: Basic base64(email:key), 302 to /app/login on failure",
            &setup,
        ),
        n,
    ))
}

fn seats() -> R<(usize, usize)> {
    let mut s = Section::new("seatsio.policy", SEATSIO)?;
    let t = s.engine.table();
    let acme = s.user("acme", PrincipalKind::Company)?;
    for (pk, name, scope) in [
        ("pk-main", "Main", "company:acme/workspace:main"),
        ("pk-staging", "Staging", "company:acme/workspace:staging"),
    ] {
        t.add_workspace(
            Actor::Cli,
            Workspace {
                public_key: pk.to_owned(),
                name: name.to_owned(),
                scope: scope.to_owned(),
                company: Some(acme),
            },
        )?;
    }
    t.set_default_workspace(Actor::Cli, acme, Some("pk-main".to_owned()))?;
    s.bind(acme, "company_admin", "company:acme")?;
    let mut admin = NewKey::new(acme, "company admin key");
    admin.kind = KeyKind::Admin;
    let (admin_rec, admin_secret) = t.create_key(Actor::Cli, admin)?;
    let ws = t.add_principal(
        Actor::Cli,
        NewPrincipal {
            kind: PrincipalKind::Workspace,
            login: "ws-main".to_owned(),
            default_workspace: Some("pk-main".to_owned()),
        },
    )?;
    s.bind(ws.id, "workspace_key", "company:acme/workspace:main")?;
    let doc_key = t.import_key(Actor::Cli, NewKey::new(ws.id, "secret key"), SEATS_DOC_KEY)?;
    let setup = vec![
        "workspaces pk-main = company:acme/workspace:main (company default), pk-staging = company:acme/workspace:staging".to_owned(),
        format!("principal {} `ws-main`: workspace_key at company:acme/workspace:main, secret key {} (the documentation's example)", ws.id, short(&doc_key)),
        format!("principal {acme} `acme` (company): company_admin at company:acme, admin key {}", short(&admin_rec)),
        "resources such as `event:5` are relative to the workspace the request acts on".to_owned(),
    ];
    let doc = || {
        req(
            format!("Basic {} (curl -u KEY:)", head(&SEATS_DOC_HEADER[6..], 12)),
            &[("authorization", SEATS_DOC_HEADER)],
        )
    };
    s.row(&doc(), "book", "event:5", Expect::Allow);
    s.row(&doc(), "list", "chart:3", Expect::Allow);
    s.row(
        &doc(),
        "view",
        "company:acme/workspace:staging/event:1",
        Expect::Deny("no_role"),
    );
    s.row(
        &req(
            "workspace key + X-Workspace-Key: pk-staging",
            &[
                ("authorization", SEATS_DOC_HEADER),
                ("x-workspace-key", "pk-staging"),
            ],
        ),
        "view",
        "event:1",
        Expect::Deny("workspace_header_needs_admin_key"),
    );
    let admin_h = basic(admin_secret.expose(), "");
    let admin_label = format!("admin key {}", short(&admin_rec));
    s.row(
        &req(admin_label.clone(), &[("authorization", &admin_h)]),
        "create",
        "chart:9",
        Expect::Allow,
    );
    s.row(
        &req(
            format!("{admin_label} + X-Workspace-Key: pk-staging"),
            &[
                ("authorization", &admin_h),
                ("x-workspace-key", "pk-staging"),
            ],
        ),
        "book",
        "event:1",
        Expect::Allow,
    );
    s.row(
        &req(
            format!("{admin_label} + X-Workspace-Key: pk-nope"),
            &[("authorization", &admin_h), ("x-workspace-key", "pk-nope")],
        ),
        "book",
        "event:1",
        Expect::Deny("unknown_workspace"),
    );
    s.row(
        &req(admin_label.clone(), &[("authorization", &admin_h)]),
        "manage_workspaces",
        "company:acme",
        Expect::Allow,
    );
    // Several secret keys at once: add a new one, switch the clients, remove the old one.
    let (k2, k2_secret) = s.key(ws.id, "secret key 2")?;
    s.note(format!(
        "cli: add a second secret key {} to `ws-main`; both work until the old one is removed",
        short(&k2)
    ));
    let k2_h = basic(k2_secret.expose(), "");
    s.row(
        &req(
            format!("Basic b64({}:)", short(&k2)),
            &[("authorization", &k2_h)],
        ),
        "book",
        "event:5",
        Expect::Allow,
    );
    s.row(&doc(), "book", "event:5", Expect::Allow);
    s.engine.table().delete_key(Actor::Cli, doc_key.id)?;
    s.note(format!("cli: delete the old key {}", short(&doc_key)));
    s.row(&doc(), "book", "event:5", Expect::Deny("unknown_key"));
    s.row(
        &req(
            format!("Basic b64({}:)", short(&k2)),
            &[("authorization", &k2_h)],
        ),
        "book",
        "event:5",
        Expect::Allow,
    );
    let n = s.n;
    Ok((s.print("seats.io: workspace secret key as the Basic username, company admin key + X-Workspace-Key", &setup), n))
}

fn api_token() -> R<(usize, usize)> {
    let mut s = Section::new("api-token.policy", API_TOKEN)?;
    let dana = s.user("dana@example.com", PrincipalKind::User)?;
    s.bind(dana, "developer", "environment:1/project:3")?;
    let erin = s.user("erin@example.com", PrincipalKind::User)?;
    s.bind(erin, "env_admin", "environment:1")?;
    let mut nk = NewKey::new(dana, "reports");
    nk.permissions = Some(vec!["read_data".to_owned(), "read_reports".to_owned()]);
    let (reports, reports_secret) = s.engine.table().create_key(Actor::Cli, nk)?;
    let (deploy, deploy_secret) = s.key(dana, "deploy")?;
    let (erin_rec, erin_secret) = s.key(erin, "admin console")?;
    let setup = vec![
        format!("principal {dana} dana@example.com: developer at environment:1/project:3; tokens `reports` {} (read_data, read_reports) and `deploy` {}", short(&reports), short(&deploy)),
        format!("principal {erin} erin@example.com: env_admin at environment:1; token `admin console` {}", short(&erin_rec)),
    ];
    let h = |secret: &Secret| format!("apiToken {}", secret.expose());
    let (rh, dh, eh) = (h(&reports_secret), h(&deploy_secret), h(&erin_secret));
    let rq = format!("apiToken={}", reports_secret.expose());
    let reports_hdr = || {
        req(
            format!("apiToken {}", short(&reports)),
            &[("authorization", rh.as_str())],
        )
    };
    let deploy_hdr = || {
        req(
            format!("apiToken {}", short(&deploy)),
            &[("authorization", dh.as_str())],
        )
    };
    s.row(
        &reports_hdr(),
        "read_data",
        "environment:1/project:3",
        Expect::Allow,
    );
    s.row(
        &req(format!("query {}", short(&reports)), &[]).query(&rq),
        "read_reports",
        "environment:1/project:3",
        Expect::Allow,
    );
    s.row(
        &reports_hdr().query(&rq),
        "read_data",
        "environment:1/project:3",
        Expect::Deny("malformed_credential"),
    );
    s.row(
        &reports_hdr(),
        "write_data",
        "environment:1/project:3",
        Expect::Deny("outside_key_permissions"),
    );
    s.row(
        &deploy_hdr(),
        "run_jobs",
        "environment:1/project:3",
        Expect::Allow,
    );
    s.row(
        &deploy_hdr(),
        "run_jobs",
        "environment:1/project:4",
        Expect::Deny("no_role"),
    );
    let erin_id = s.identity(&eh)?;
    let dana_id = s.identity(&dh)?;
    s.manage(
        "dana deletes erin's token",
        &dana_id,
        erin,
        Some("environment:1"),
        KeyCommand::Delete(erin_rec.id),
        false,
    );
    s.manage(
        "erin (env_admin) deactivates dana's `deploy` token",
        &erin_id,
        dana,
        Some("environment:1"),
        KeyCommand::Deactivate(deploy.id),
        true,
    );
    s.row(
        &deploy_hdr(),
        "run_jobs",
        "environment:1/project:3",
        Expect::Deny("inactive_key"),
    );
    s.manage(
        "erin re-activates dana's `deploy` token",
        &erin_id,
        dana,
        Some("environment:1"),
        KeyCommand::Activate(deploy.id),
        true,
    );
    s.row(
        &deploy_hdr(),
        "run_jobs",
        "environment:1/project:3",
        Expect::Allow,
    );
    s.manage(
        "dana deletes her own `reports` token (My API Token: self rule)",
        &dana_id,
        dana,
        None,
        KeyCommand::Delete(reports.id),
        true,
    );
    s.row(
        &reports_hdr(),
        "read_data",
        "environment:1/project:3",
        Expect::Deny("unknown_key"),
    );
    let n = s.n;
    Ok((
        s.print(
            "002 API tokens: `Authorization: apiToken` or ?apiToken=, per-token permissions",
            &setup,
        ),
        n,
    ))
}

fn cognitive3d() -> R<(usize, usize)> {
    let mut s = Section::new("cognitive3d.policy", COGNITIVE3D)?;
    let olga = s.user("olga@c3d.example", PrincipalKind::User)?;
    s.bind(olga, "org_admin", "organization:6")?;
    let paul = s.user("paul@c3d.example", PrincipalKind::User)?;
    s.bind(paul, "project_member", "organization:6/project:3")?;
    let quinn = s.user("quinn@c3d.example", PrincipalKind::User)?;
    s.bind(quinn, "org_observer", "organization:6")?;
    let (olga_rec, olga_secret) = s.key(olga, "olga's key")?;
    let setup = vec![
        format!("principal {olga} olga: org_admin at organization:6, key {} (created by the operator, unrestricted)", short(&olga_rec)),
        format!("principal {paul} paul: project_member at organization:6/project:3"),
        format!("principal {quinn} quinn: org_observer at organization:6 (observer: read-only)"),
        "keys made by an organization admin reach that organization only, and are read-only unless asked".to_owned(),
    ];
    let olga_h = format!("APIKEY:ORGANIZATION {}", olga_secret.expose());
    let olga_id = s.identity(&olga_h)?;
    let create = |s: &mut Section, who: &str, target: u64, name: &str, read_only: Option<bool>| {
        let r = s.manage(
            &format!("olga creates key `{name}` for {who} at organization:6"),
            &olga_id,
            target,
            Some("organization:6"),
            KeyCommand::Create {
                new: NewKey::new(target, name),
                read_only,
            },
            true,
        );
        s.created(r)
    };
    let (paul_ro, paul_ro_s) = create(&mut s, "paul", paul, "paul read-only", None)?;
    let (paul_rw, paul_rw_s) = create(&mut s, "paul", paul, "paul read-write", Some(false))?;
    let (quinn_rw, quinn_rw_s) = create(&mut s, "quinn", quinn, "quinn read-write", Some(false))?;
    let paul_rw_id = s.identity(&format!("APIKEY:ORGANIZATION {}", paul_rw_s.expose()))?;
    s.manage(
        "paul (project_member) creates a key for himself at organization:6",
        &paul_rw_id,
        paul,
        Some("organization:6"),
        KeyCommand::Create {
            new: NewKey::new(paul, "mine"),
            read_only: None,
        },
        false,
    );
    s.manage(
        "olga creates a key for paul at organization:7",
        &olga_id,
        paul,
        Some("organization:7"),
        KeyCommand::Create {
            new: NewKey::new(paul, "elsewhere"),
            read_only: None,
        },
        false,
    );
    let apikey = |rec: &KeyRecord, secret: &Secret| {
        (
            format!("APIKEY:ORGANIZATION {}", short(rec)),
            format!("APIKEY:ORGANIZATION {}", secret.expose()),
        )
    };
    let (l_ro, h_ro) = apikey(&paul_ro, &paul_ro_s);
    let (l_rw, h_rw) = apikey(&paul_rw, &paul_rw_s);
    let (l_q, h_q) = apikey(&quinn_rw, &quinn_rw_s);
    let scene = "organization:6/project:3/scene:9";
    let session = "organization:6/project:3/scene:9/session:1";
    s.row(
        &req(l_ro.clone(), &[("authorization", &h_ro)]),
        "view",
        scene,
        Expect::Allow,
    );
    s.row(
        &req(
            format!("{} (raw, no scheme)", short(&paul_ro)),
            &[("authorization", paul_ro_s.expose())],
        ),
        "download",
        session,
        Expect::Allow,
    );
    s.row(
        &req(l_ro.clone(), &[("authorization", &h_ro)]),
        "update",
        scene,
        Expect::Deny("read_only_key"),
    );
    s.row(
        &req(l_rw.clone(), &[("authorization", &h_rw)]),
        "update",
        scene,
        Expect::Allow,
    );
    s.row(
        &req(l_rw.clone(), &[("authorization", &h_rw)]),
        "delete",
        session,
        Expect::Deny("deny_rule"),
    );
    s.row(
        &req(l_rw.clone(), &[("authorization", &h_rw)]),
        "view",
        "organization:6/project:4",
        Expect::Deny("no_role"),
    );
    s.row(
        &req(l_rw.clone(), &[("authorization", &h_rw)]),
        "view",
        "organization:7/project:3",
        Expect::Deny("outside_key_scope"),
    );
    s.row(
        &req(l_ro.clone(), &[("authorization", &h_ro)]),
        "view",
        &format!("user:{paul}"),
        Expect::Deny("outside_key_scope"),
    );
    s.row(
        &req(l_q.clone(), &[("authorization", &h_q)]),
        "view",
        "organization:6/project:4/scene:2",
        Expect::Allow,
    );
    s.row(
        &req(l_q.clone(), &[("authorization", &h_q)]),
        "update",
        "organization:6/project:4/scene:2",
        Expect::Deny("observer_cannot_write"),
    );
    let olga_l = format!("APIKEY:ORGANIZATION {}", short(&olga_rec));
    s.row(
        &req(olga_l.clone(), &[("authorization", &olga_h)]),
        "update",
        &format!("user:{olga}"),
        Expect::Allow,
    );
    s.row(
        &req(olga_l.clone(), &[("authorization", &olga_h)]),
        "upload",
        session,
        Expect::Deny("deny_rule"),
    );
    s.row(
        &req(olga_l, &[("authorization", &olga_h)]),
        "configure",
        "organization:6",
        Expect::Allow,
    );
    // A mistyped key: one character changed, so its checksum fails before any lookup.
    let mut forged: Vec<char> = paul_ro_s.expose().chars().collect();
    if let Some(c) = forged.get_mut(10) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    let forged: String = forged.into_iter().collect();
    s.row(
        &req(
            format!("{} with one character changed", short(&paul_ro)),
            &[("authorization", &forged)],
        ),
        "view",
        scene,
        Expect::Deny("bad_checksum"),
    );
    let n = s.n;
    Ok((s.print("Cognitive3D: APIKEY:ORGANIZATION and raw orgkey- keys, org-scoped read-only keys, observers", &setup), n))
}
