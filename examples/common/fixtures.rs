//! Principals, bindings and keys for each bundled policy, as the seed documents describe them: used
//! by `examples/serve.rs fixtures`, `tests/server.rs`, `tests/layer.rs`, `.ci/nginx.sh` and the load
//! benchmark. Secrets are returned as `(NAME, value)` pairs for scripts and tests.
#![allow(dead_code)]

use keyward::store::{Actor, KeyKind, NewKey, NewPrincipal, PrincipalKind, StoreError, Workspace};

/// Errors of the fixtures.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
use keyward::Engine;

/// The key printed in the SEED seed document.
pub const SEED_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";
/// The header printed in the SEED seed document (URL-safe base64 of `email:key`).
pub const SEED_DOC_HEADER: &str =
    "Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi";
/// The workspace secret key printed in the seats.io seed document.
pub const SEATSIO_WORKSPACE_SECRET: &str = "550e8400-e29b-41d4-a716-446655440000";
/// A company admin key (seats.io).
pub const SEATSIO_ADMIN_SECRET: &str = "7d2c5a1e-0f3b-4c8e-9a6d-2b1f0e9c8d7a";

fn principal(
    e: &Engine,
    kind: PrincipalKind,
    login: &str,
    ws: Option<&str>,
) -> Result<u64, StoreError> {
    Ok(e.table()
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind,
                login: login.into(),
                default_workspace: ws.map(str::to_string),
            },
        )?
        .id)
}

/// Installs the fixtures of `product` (`seed-platform`, `seatsio`, `api-token`, `cognitive3d`).
pub fn install(e: &Engine, product: &str) -> Result<Vec<(String, String)>, Error> {
    let t = e.table();
    let mut out = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));
    match product {
        "seed-platform" => {
            let member = principal(e, PrincipalKind::User, "user@seed-platform.org", None)?;
            t.bind(Actor::Cli, member, "member", "organization:6")?;
            t.import_key(Actor::Cli, NewKey::new(member, "api key"), SEED_KEY)?;
            let viewer = principal(e, PrincipalKind::User, "viewer@seed-platform.org", None)?;
            t.bind(Actor::Cli, viewer, "viewer", "organization:6")?;
            let viewer_key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
            t.import_key(Actor::Cli, NewKey::new(viewer, "api key"), viewer_key)?;
            put("SEED_EMAIL", "user@seed-platform.org".into());
            put("SEED_KEY", SEED_KEY.into());
            put("SEED_DOC_HEADER", SEED_DOC_HEADER.into());
            put("SEED_USER_ID", member.to_string());
            put("SEED_VIEWER_EMAIL", "viewer@seed-platform.org".into());
            put("SEED_VIEWER_KEY", viewer_key.into());
        }
        "seatsio" => {
            for (pk, n) in [("pub-ws-1", "1"), ("pub-ws-2", "2")] {
                t.add_workspace(
                    Actor::Cli,
                    Workspace {
                        public_key: pk.into(),
                        name: format!("workspace {n}"),
                        scope: format!("company:acme/workspace:{n}"),
                        company: None,
                    },
                )?;
            }
            let ws = principal(e, PrincipalKind::Workspace, "workspace-1", Some("pub-ws-1"))?;
            t.bind(Actor::Cli, ws, "workspace_key", "company:acme/workspace:1")?;
            t.import_key(
                Actor::Cli,
                NewKey::new(ws, "secret key"),
                SEATSIO_WORKSPACE_SECRET,
            )?;
            let company = principal(e, PrincipalKind::Company, "acme", Some("pub-ws-1"))?;
            t.bind(Actor::Cli, company, "company_admin", "company:acme")?;
            let mut admin = NewKey::new(company, "admin key");
            admin.kind = KeyKind::Admin;
            t.import_key(Actor::Cli, admin, SEATSIO_ADMIN_SECRET)?;
            put("WS_SECRET", SEATSIO_WORKSPACE_SECRET.into());
            put("ADMIN_SECRET", SEATSIO_ADMIN_SECRET.into());
            put("WS2_PUBLIC", "pub-ws-2".into());
        }
        "api-token" => {
            let dev = principal(e, PrincipalKind::User, "dev@env.example", None)?;
            t.bind(Actor::Cli, dev, "developer", "environment:prod/project:web")?;
            let mut reports = NewKey::new(dev, "reporting");
            reports.permissions = Some(vec!["read_reports".into()]);
            let (_, reports) = t.create_key(Actor::Cli, reports)?;
            let (_, full) = t.create_key(Actor::Cli, NewKey::new(dev, "deploy bot"))?;
            put("TOKEN_REPORTS", reports.expose().into());
            put("TOKEN_FULL", full.expose().into());
            put("DEV_ID", dev.to_string());
        }
        "cognitive3d" => {
            let admin = principal(e, PrincipalKind::User, "admin@c3d.example", None)?;
            t.bind(Actor::Cli, admin, "org_admin", "organization:6")?;
            let member = principal(e, PrincipalKind::User, "member@c3d.example", None)?;
            t.bind(
                Actor::Cli,
                member,
                "project_member",
                "organization:6/project:3",
            )?;
            let observer = principal(e, PrincipalKind::User, "observer@c3d.example", None)?;
            t.bind(Actor::Cli, observer, "org_observer", "organization:6")?;
            let key = |owner, read_only| {
                let mut k = NewKey::new(owner, "analytics export");
                k.scope = Some("organization:6".into());
                k.read_only = read_only;
                t.create_key(Actor::Cli, k)
            };
            put("C3D_ADMIN_KEY", key(admin, false)?.1.expose().into());
            put("C3D_MEMBER_KEY", key(member, false)?.1.expose().into());
            put("C3D_OBSERVER_KEY", key(observer, true)?.1.expose().into());
            put("C3D_ADMIN_ID", admin.to_string());
        }
        other => {
            return Err(format!("no fixtures for product `{other}`").into());
        }
    }
    Ok(out)
}

/// The 40-hex key of load user `i` (SEED's format).
pub fn load_key(i: u64) -> String {
    blake3::hash(&i.to_le_bytes()).to_hex()[..40].to_string()
}

/// The login of load user `i`.
pub fn load_login(i: u64) -> String {
    format!("user{i}@load.example")
}

/// `n` SEED users (`seed-platform` policy), user `i` a member of `organization:{i % 50}` with the key
/// [`load_key`]`(i)`, written in batches.
pub fn install_load(e: &Engine, n: u64) -> Result<(), StoreError> {
    let mut i = 0;
    while i < n {
        let end = (i + 5_000).min(n);
        e.table().bulk(|w| {
            for j in i..end {
                let p = w.add_principal(
                    Actor::Cli,
                    NewPrincipal {
                        kind: PrincipalKind::User,
                        login: load_login(j),
                        default_workspace: None,
                    },
                )?;
                w.bind(
                    Actor::Cli,
                    p.id,
                    "member",
                    &format!("organization:{}", j % 50),
                )?;
                w.import_key(Actor::Cli, NewKey::new(p.id, "api key"), &load_key(j))?;
            }
            Ok(())
        })?;
        i = end;
    }
    Ok(())
}
