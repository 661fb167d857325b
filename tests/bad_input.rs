//! The bad input catalogue: hostile inputs to every library entry point a host or the CLI feeds with
//! outside text (policies, headers, query strings, key strings, resource paths, scopes, key names, logins),
//! each with the error code and message it must give. One table, one `check` loop; every failure is
//! reported at once with the row's name.
//!
//! Codes: for requests, [`Reason::code`] then [`Reason::credential_code`] after a `/` when there is one;
//! for policies `invalid_policy` (message: `line:column: first error`) or the [`LoadError`] variant; for
//! the key table and key tokens, the error variant in snake case (what the CLI prints as its code).

use http::{HeaderMap, HeaderName, HeaderValue};
use keyward::decision::CompiledPolicy;
use keyward::diag::Source;
use keyward::policy::{LoadError, Policy};
use keyward::store::{
    Actor, KeyTable, NewKey, NewPrincipal, PrincipalKind, StoreError, StoreOptions,
};
use keyward::token::{classify, KeyFormat, TokenError};
use keyward::{Decision, Engine, EngineOptions, Request};

const SEED_POLICY: &str = include_str!("../policies/seed-platform.policy");
const TOKEN_POLICY: &str = include_str!("../policies/api-token.policy");
const C3D_POLICY: &str = include_str!("../policies/cognitive3d.policy");
const SEED_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";
const SEED_EMAIL: &str = "user@seed-platform.org";

type Outcome = (String, String);

/// Everything a row needs: engines with one known principal and key each, and a key table.
struct World {
    seed: Engine,
    token: Engine,
    token_key: String,
    c3d: Engine,
    table: KeyTable,
    owner: u64,
}

fn world() -> World {
    let engine = |text: &str| {
        let p = Policy::parse("<policy>", text).unwrap_or_else(|r| panic!("{}", r.render()));
        Engine::temporary(p, EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    };
    let user = |e: &Engine, login: &str| {
        e.table()
            .add_principal(
                Actor::Cli,
                NewPrincipal {
                    kind: PrincipalKind::User,
                    login: login.to_owned(),
                    default_workspace: None,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .id
    };
    let seed = engine(SEED_POLICY);
    let id = user(&seed, SEED_EMAIL);
    seed.table()
        .import_key(Actor::Cli, NewKey::new(id, "main"), SEED_KEY)
        .unwrap_or_else(|e| panic!("{e}"));
    seed.table()
        .bind(Actor::Cli, id, "owner", "organization:1")
        .unwrap_or_else(|e| panic!("{e}"));
    let token = engine(TOKEN_POLICY);
    let id = user(&token, "analyst@example.com");
    let (_, secret) = token
        .table()
        .create_key(Actor::Cli, NewKey::new(id, "ci"))
        .unwrap_or_else(|e| panic!("{e}"));
    token
        .table()
        .bind(Actor::Cli, id, "env_admin", "environment:1")
        .unwrap_or_else(|e| panic!("{e}"));
    let c3d = engine(C3D_POLICY);
    let table = KeyTable::temporary(StoreOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let owner = table
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "owner@example.com".to_owned(),
                default_workspace: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    World {
        seed,
        token,
        token_key: secret.expose().to_owned(),
        c3d,
        table,
        owner,
    }
}

// ----- entry points -----

fn policy_bytes(bytes: &[u8]) -> Outcome {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("case.policy");
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    match keyward::policy::load_file(&path) {
        Ok(_) => ("ok".into(), String::new()),
        Err(LoadError::NotUtf8 { offset, .. }) => ("not_utf8".into(), format!("byte {offset}")),
        Err(LoadError::Io { source, .. }) => ("io".into(), source.to_string()),
        Err(LoadError::Invalid(report)) => first_error(&report),
    }
}

fn policy(text: &str) -> Outcome {
    match Policy::parse("<case>", text) {
        Ok(_) => ("ok".into(), String::new()),
        Err(report) => first_error(&report),
    }
}

fn first_error(report: &keyward::diag::Report) -> Outcome {
    let Some(d) = report.diagnostics.iter().find(|d| d.is_error()) else {
        return ("no_error".into(), String::new());
    };
    let (line, col) = Source::line_col(&report.source, d.span.start);
    (
        "invalid_policy".into(),
        format!("{line}:{col}: {}", d.message),
    )
}

struct Req<'a> {
    headers: Vec<(&'a str, Vec<u8>)>,
    query: Option<&'a str>,
    action: &'a str,
    resource: &'a str,
}

fn req<'a>(headers: Vec<(&'a str, Vec<u8>)>, action: &'a str, resource: &'a str) -> Req<'a> {
    Req {
        headers,
        query: None,
        action,
        resource,
    }
}

fn authorize(engine: &Engine, r: &Req<'_>) -> Outcome {
    let mut map = HeaderMap::new();
    for (name, value) in &r.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let value = HeaderValue::from_bytes(value).unwrap_or_else(|e| panic!("{e}"));
        map.append(name, value);
    }
    let request = Request::new(&map, r.action, r.resource).with_query(r.query);
    match engine.authorize(&request) {
        Decision::Allow(_) => ("allow".into(), String::new()),
        Decision::Deny(d) => {
            let code = match d.reason.credential_code() {
                Some(c) => format!("{}/{c}", d.reason.code()),
                None => d.reason.code().to_owned(),
            };
            (code, d.reason.to_string())
        }
    }
}

fn store_code(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse { .. } => "in_use",
        StoreError::NotKeyward { .. } => "not_keyward",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::UnsupportedVersion { .. } => "unsupported_version",
        StoreError::Io { .. } => "io",
        StoreError::Backend { .. } => "backend",
        StoreError::NotFound { .. } => "not_found",
        StoreError::Conflict { .. } => "conflict",
        StoreError::InvalidName { .. } => "invalid_name",
        StoreError::InvalidScope { .. } => "invalid_scope",
        StoreError::InvalidExpiry { .. } => "invalid_expiry",
        StoreError::Token(t) => token_code(t),
        StoreError::TooLarge { .. } => "too_large",
        StoreError::Reentrant => "reentrant",
        _ => "other",
    }
}

fn token_code(e: &TokenError) -> &'static str {
    match e {
        TokenError::Empty => "empty",
        TokenError::TooLong { .. } => "too_long",
        TokenError::InvalidChar { .. } => "invalid_char",
        TokenError::Malformed { .. } => "malformed",
        TokenError::BadChecksum => "bad_checksum",
        TokenError::InvalidPrefix { .. } => "invalid_prefix",
        TokenError::Random { .. } => "random",
    }
}

fn store<T>(r: Result<T, StoreError>) -> Outcome {
    match r {
        Ok(_) => ("ok".into(), String::new()),
        Err(e) => (store_code(&e).into(), e.to_string()),
    }
}

fn login(w: &World, login: &str) -> Outcome {
    store(w.table.add_principal(
        Actor::Cli,
        NewPrincipal {
            kind: PrincipalKind::User,
            login: login.to_owned(),
            default_workspace: None,
        },
    ))
}

fn key_name(w: &World, name: &str) -> Outcome {
    store(w.table.create_key(Actor::Cli, NewKey::new(w.owner, name)))
}

fn key_scope(w: &World, scope: &str) -> Outcome {
    let mut new = NewKey::new(w.owner, "scoped");
    new.scope = Some(scope.to_owned());
    store(w.table.create_key(Actor::Cli, new))
}

fn bind(w: &World, role: &str, scope: &str) -> Outcome {
    store(w.table.bind(Actor::Cli, w.owner, role, scope))
}

fn import(w: &World, secret: &str) -> Outcome {
    store(
        w.table
            .import_key(Actor::Cli, NewKey::new(w.owner, "imported"), secret),
    )
}

fn token(s: &str) -> Outcome {
    match classify(s, &KeyFormat::default()) {
        Ok(shape) => (format!("{shape:?}").to_lowercase(), String::new()),
        Err(e) => (token_code(&e).into(), e.to_string()),
    }
}

fn prefix(s: &str) -> Outcome {
    match KeyFormat::new(s) {
        Ok(_) => ("ok".into(), String::new()),
        Err(e) => (token_code(&e).into(), e.to_string()),
    }
}

fn resource(path: &str) -> Outcome {
    resource_in(C3D_POLICY, path)
}

fn resource_in(policy: &str, path: &str) -> Outcome {
    let p = Policy::parse("<policy>", policy).unwrap_or_else(|r| panic!("{}", r.render()));
    let c = CompiledPolicy::compile(&p.model);
    match c.parse_resource(path) {
        Ok(_) => ("ok".into(), String::new()),
        Err(e) => ("invalid_resource".into(), e.to_string()),
    }
}

// ----- inputs -----

fn auth(value: impl Into<Vec<u8>>) -> Vec<(&'static str, Vec<u8>)> {
    vec![("authorization", value.into())]
}

fn b64(plain: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(plain)
}

fn nested(depth: usize) -> String {
    let mut s = String::from("scope a;\naction v: read;\nrole r at a ");
    s.push_str(&"{ ".repeat(depth));
    s.push_str(&"} ".repeat(depth));
    s
}

fn huge_policy() -> String {
    let mut s = String::with_capacity(9 * 1024 * 1024);
    while s.len() <= keyward::policy::MAX_POLICY_BYTES {
        s.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    s
}

/// A policy whose scope kinds `k0 > k1 > ... > k15` nest as deep as the checker allows.
fn deep_policy() -> String {
    let mut s = String::from("scope k0;\n");
    for i in 1..16 {
        s.push_str(&format!("scope k{i} under k{};\n", i - 1));
    }
    s
}

fn deep_path(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}:1"))
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn catalogue() {
    let w = world();
    let tk = w.token_key.clone();
    let seed_hdr = |email: &str, key: &str| {
        auth(format!(
            "Basic {}",
            b64(format!("{email}:{key}").as_bytes())
        ))
    };
    let view = |h| req(h, "view", "organization:1");
    // `typo`: the generated token with its last character changed.
    let mut typo = tk.clone();
    let last = typo.pop().unwrap_or('x');
    typo.push(if last == 'A' { 'B' } else { 'A' });

    let rows: Vec<(&str, Outcome, &str, &str)> = vec![
        // ---- policies ----
        // An empty policy is valid: it accepts no credential, so every request is refused (the
        // checker warns). Recorded here so that a change is a decision, not an accident.
        ("policy: empty", policy(""), "ok", ""),
        ("policy: only whitespace", policy(" \n\t\n"), "ok", ""),
        ("policy: NUL byte", policy("scope a;\0\naction v: read;"), "invalid_policy", "1:9: expected a definition (`scope`, `action`, `group`, `role`, `self`, `deny`, `credentials`, `keys`, `unauthenticated` or `route`), found `\\u{0}`"),
        ("policy: non-UTF-8 file", policy_bytes(b"scope a;\n\xff\xfe action v: read;\n"), "not_utf8", "byte 9"),
        ("policy: UTF-8 BOM", policy("\u{feff}scope a;"), "invalid_policy", "1:1: expected a definition (`scope`, `action`, `group`, `role`, `self`, `deny`, `credentials`, `keys`, `unauthenticated` or `route`), found `\\u{feff}`"),
        ("policy: deeply nested braces", policy(&nested(10_000)), "invalid_policy", "3:15: expected `grant` or `}`, found `{`"),
        ("policy: over 8 MiB", policy(&huge_policy()), "invalid_policy", "1:1: the policy is 8388666 bytes, more than the limit of 8388608"),
        ("policy: 100 KB name", policy(&format!("scope {};", "a".repeat(100_000))), "invalid_policy", "1:7: expected a name of at most 64 characters (this one has 100000), found `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…`"),
        ("policy: Cyrillic confusable kind name", policy("scope оrg;\naction v: read;\nrole r at org { grant v; }"), "invalid_policy", "1:7: expected a scope kind name, found `оrg`"),
        ("policy: unterminated string", policy("scope a;\nunauthenticated redirect \"/login;\n"), "invalid_policy", "2:34: expected a closing `\"`, found the end of the line"),
        ("policy: scope cycle", policy("scope a under b;\nscope b under a;\naction v: read;"), "invalid_policy", "1:7: scope kinds form a cycle: `a` under `b` under `a`"),
        ("policy: role includes itself", policy("scope a;\naction v: read;\nrole r at a includes r { grant v; }"), "invalid_policy", "3:22: role `r` includes itself through `r`"),
        ("policy: unknown action in grant", policy("scope a;\naction v: read;\nrole r at a { grant w; }"), "invalid_policy", "3:21: unknown action or group `w`"),
        ("policy: duplicate action", policy("scope a;\naction v: read;\naction v: write;"), "invalid_policy", "3:8: action `v` is defined twice"),
        ("policy: status out of range", policy("scope a;\nunauthenticated status 99999999999999999999;"), "invalid_policy", "2:24: expected a three-digit HTTP status code, found `99999999999999999999`"),
        ("policy: keyword soup", policy(&"role scope action deny ".repeat(2_000)), "invalid_policy", "1:12: expected `at` and the scope kind the role is bound at, found `action`"),
        // ---- headers ----
        ("header: empty Authorization", authorize(&w.seed, &view(auth(""))), "malformed_credential/malformed_credential", "malformed credential: the `Authorization` header is empty"),
        ("header: only spaces", authorize(&w.seed, &view(auth("   "))), "malformed_credential/malformed_credential", "malformed credential: the `Authorization` header is empty"),
        ("header: Basic without token", authorize(&w.seed, &view(auth("Basic"))), "malformed_credential/empty_key", "malformed credential: the key is empty"),
        ("header: two Authorization headers", authorize(&w.seed, &view({
            let mut h = seed_hdr(SEED_EMAIL, SEED_KEY);
            h.extend(seed_hdr(SEED_EMAIL, SEED_KEY));
            h
        })), "malformed_credential/multiple_authorization", "malformed credential: the request has 2 `Authorization` headers, expected one"),
        ("header: 9 KB Authorization", authorize(&w.seed, &view(auth(format!("Basic {}", "A".repeat(9000))))), "malformed_credential/header_too_long", "malformed credential: the `Authorization` header is 9006 bytes long, the limit is 8192"),
        ("header: non-UTF-8 bytes", authorize(&w.seed, &view(auth(b"Basic \xff\xfe".to_vec()))), "malformed_credential/not_utf8", "malformed credential: the `Authorization` header is not valid UTF-8"),
        ("header: Latin-1 in value", authorize(&w.seed, &view(auth(b"Basic caf\xe9".to_vec()))), "malformed_credential/not_utf8", "malformed credential: the `Authorization` header is not valid UTF-8"),
        ("header: base64 with one padding char too few", authorize(&w.seed, &view(auth("Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi="))), "malformed_credential/bad_base64", "malformed credential: the basic credentials are not valid base64"),
        ("header: base64 with three padding chars", authorize(&w.seed, &view(auth("Basic YWJj==="))), "malformed_credential/bad_base64", "malformed credential: the basic credentials are not valid base64"),
        ("header: padding in the middle", authorize(&w.seed, &view(auth("Basic YQ==YQ=="))), "malformed_credential/bad_base64", "malformed credential: the basic credentials are not valid base64"),
        ("header: not base64 at all", authorize(&w.seed, &view(auth("Basic !!!!"))), "malformed_credential/bad_base64", "malformed credential: the basic credentials are not valid base64"),
        ("header: decoded credential without colon", authorize(&w.seed, &view(auth(format!("Basic {}", b64(b"nocolonhere"))))), "malformed_credential/malformed_credential", "malformed credential: basic credentials have no `:`"),
        ("header: colon inside the email", authorize(&w.seed, &view(seed_hdr("us:er@seed-platform.org", SEED_KEY))), "malformed_credential/malformed_credential", "malformed credential: the email contains `:`, which basic credentials cannot carry in a username"),
        ("header: email without domain", authorize(&w.seed, &view(seed_hdr("user@", SEED_KEY))), "malformed_credential/malformed_credential", "malformed credential: the email needs text on both sides of its `@`"),
        ("header: NUL in decoded email", authorize(&w.seed, &view(seed_hdr("us\0er@seed-platform.org", SEED_KEY))), "malformed_credential/malformed_credential", "malformed credential: the email contains a control character"),
        ("header: decoded credential not UTF-8", authorize(&w.seed, &view(auth(format!("Basic {}", b64(b"\xff@x.org:key"))))), "malformed_credential/not_utf8", "malformed credential: the decoded basic credential is not valid UTF-8"),
        ("header: Cyrillic confusable in the email", authorize(&w.seed, &view(seed_hdr("usеr@seed-platform.org", SEED_KEY))), "email_mismatch", "the key does not belong to this email"),
        ("header: right key, someone else's email", authorize(&w.seed, &view(seed_hdr("other@seed-platform.org", SEED_KEY))), "email_mismatch", "the key does not belong to this email"),
        ("header: unknown scheme", authorize(&w.seed, &view(auth("Digest username=\"x\""))), "unknown_scheme/unknown_scheme", "unrecognised authorization scheme `Digest`"),
        ("header: scheme not accepted by the policy", authorize(&w.seed, &view(auth(format!("Bearer {SEED_KEY}")))), "unknown_scheme/style_not_accepted", "credentials in the `bearer` style are not accepted here"),
        ("header: raw key the policy does not accept", authorize(&w.seed, &view(auth(SEED_KEY))), "unknown_scheme/unknown_scheme", "unrecognised credential"),
        ("header: two tokens after the scheme", authorize(&w.token, &req(auth(format!("apiToken {tk} {tk}")), "read_data", "environment:1")), "malformed_credential/malformed_credential", "malformed credential: more than one token follows `apiToken`"),
        ("header: decoded Basic over 1 KB", authorize(&w.seed, &view(seed_hdr("a@b.c", &"k".repeat(1500)))), "malformed_credential/basic_too_long", "malformed credential: the basic credentials decode to more than 1024 bytes"),
        ("header: APIKEY:ORGANIZATION without a space", authorize(&w.c3d, &view(auth("APIKEY:ORGANIZATIONabcdef"))), "unknown_scheme/unknown_scheme", "unrecognised credential"),
        ("header: raw key without the accepted prefix", authorize(&w.c3d, &view(auth("sk_abcdef0123456789"))), "unknown_scheme/unknown_scheme", "unrecognised credential"),
        ("header: raw key with an embedded tab", authorize(&w.c3d, &view(auth("orgkey-abc\tdef"))), "unknown_scheme/unknown_scheme", "unrecognised credential"),
        // ---- query strings ----
        ("query: token twice", authorize(&w.token, &Req { query: Some(&format!("apiToken={tk}&apiToken={tk}")), ..req(vec![], "read_data", "environment:1") }), "malformed_credential/multiple_query_tokens", "malformed credential: the `apiToken` query parameter appears 2 times, expected once"),
        ("query: token and Authorization header", authorize(&w.token, &Req { query: Some(&format!("apiToken={tk}")), ..req(auth(format!("apiToken {tk}")), "read_data", "environment:1") }), "malformed_credential/ambiguous_credential", "malformed credential: the request carries a credential both in the `Authorization` header and in the `apiToken` query parameter"),
        ("query: empty token", authorize(&w.token, &Req { query: Some("apiToken="), ..req(vec![], "read_data", "environment:1") }), "malformed_credential/empty_key", "malformed credential: the key is empty"),
        ("query: percent-encoded NUL", authorize(&w.token, &Req { query: Some("apiToken=kw_%00abc"), ..req(vec![], "read_data", "environment:1") }), "malformed_credential/malformed_credential", "malformed credential: the key contains a character that is not visible ASCII"),
        ("query: percent-encoded non-UTF-8", authorize(&w.token, &Req { query: Some("apiToken=%FF%FE"), ..req(vec![], "read_data", "environment:1") }), "malformed_credential/malformed_credential", "malformed credential: the key contains a character that is not visible ASCII"),
        ("query: 600-byte token", authorize(&w.token, &Req { query: Some(&format!("apiToken={}", "a".repeat(600))), ..req(vec![], "read_data", "environment:1") }), "malformed_credential/key_too_long", "malformed credential: the key is longer than 512 bytes"),
        ("query: parameter on a policy without query credentials", authorize(&w.seed, &Req { query: Some(&format!("apiToken={SEED_KEY}")), ..view(vec![]) }), "no_credential", "no credential in the request"),
        // ---- key strings ----
        ("key: generated key with a mistyped checksum", authorize(&w.token, &req(auth(format!("apiToken {typo}")), "read_data", "environment:1")), "bad_checksum", "the key's checksum is wrong: it was mistyped or forged"),
        ("key: prefix then too few characters", authorize(&w.token, &req(auth("apiToken kw_abc"), "read_data", "environment:1")), "malformed_key", "malformed key: the key starts like a generated key but is malformed: it does not have 28 characters after the prefix"),
        ("key: unknown opaque key", authorize(&w.token, &req(auth("apiToken 0123456789abcdef"), "read_data", "environment:1")), "unknown_key", "unknown key"),
        ("key: classify empty", token(""), "empty", "the key is empty"),
        ("key: classify 513 bytes", token(&"a".repeat(513)), "too_long", "the key is 513 bytes long, more than the 512 allowed"),
        ("key: classify NUL inside", token("abc\0def"), "invalid_char", "the key holds whitespace or a control character at byte 3"),
        ("key: classify non-ASCII after prefix", token("kw_ÄÄÄÄÄÄÄÄÄÄÄÄÄÄ"), "malformed", "the key starts like a generated key but is malformed: only base62 characters may follow the prefix"),
        ("key: import a key with a space", import(&w, "abc def"), "invalid_char", "the key holds whitespace or a control character at byte 3"),
        ("key: prefix with a slash", prefix("kw/"), "invalid_prefix", "invalid key prefix `kw/`: only `A-Z`, `a-z`, `0-9`, `_` and `-` are allowed"),
        ("key: prefix of 17 characters", prefix(&"p".repeat(17)), "invalid_prefix", "invalid key prefix `ppppppppppppppppp`: it is longer than 16 characters"),
        // ---- resource paths ----
        ("resource: empty", resource(""), "invalid_resource", "the resource path is empty"),
        ("resource: segment without colon", resource("organization"), "invalid_resource", "segment 1 of the resource path is not `kind:id`"),
        ("resource: empty id", resource("organization:"), "invalid_resource", "segment 1 of the resource path has an empty or invalid id"),
        ("resource: 17 segments", resource_in(&deep_policy(), &deep_path(17)), "invalid_resource", "the resource path has more than 16 segments"),
        ("resource: over 1 KB", resource(&format!("organization:{}", "9".repeat(1100))), "invalid_resource", "the resource path is longer than 1024 bytes"),
        ("resource: NUL in id", resource("organization:1\0"), "invalid_resource", "segment 1 of the resource path has an empty or invalid id"),
        ("resource: Cyrillic confusable kind", resource("оrganization:1"), "invalid_resource", "unknown scope kind `оrganization` in the resource path"),
        ("resource: wrong nesting", resource("organization:1/scene:2"), "invalid_resource", "`scene` does not lie directly beneath `organization` in the scope hierarchy"),
        ("resource: trailing slash", resource("organization:1/"), "invalid_resource", "segment 2 of the resource path is not `kind:id`"),
        ("resource: no-break space in id", resource("organization:1\u{a0}2"), "invalid_resource", "segment 1 of the resource path has an empty or invalid id"),
        ("resource: through the engine, unknown action", authorize(&w.seed, &req(seed_hdr(SEED_EMAIL, SEED_KEY), "vіew", "organization:1")), "unknown_action", "unknown action `vіew`"),
        // ---- scopes, roles, key names, logins (CLI arguments) ----
        ("scope: empty", key_scope(&w, ""), "invalid_scope", "invalid scope ``: it is empty"),
        ("scope: uppercase kind", key_scope(&w, "Organization:1"), "invalid_scope", "invalid scope `Organization:1`: the kind of segment 1 must match `[a-z_][a-z0-9_]*`"),
        ("scope: tab in id", key_scope(&w, "organization:1\t2"), "invalid_scope", "invalid scope `organization:1\\t2`: the id of segment 1 holds whitespace or a control character"),
        ("scope: 129-character id", bind(&w, "owner", &format!("organization:{}", "x".repeat(129))), "invalid_scope", "invalid scope `organization:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...`: the id of segment 1 is longer than 128 characters"),
        ("role: starts with a digit", bind(&w, "1owner", "organization:1"), "invalid_name", "invalid role `1owner`: use a letter or `_` then letters, digits, `_`, `-`, `.` or `:`"),
        ("role: confusable letter", bind(&w, "оwner", "organization:1"), "invalid_name", "invalid role `оwner`: use a letter or `_` then letters, digits, `_`, `-`, `.` or `:`"),
        ("key name: empty", key_name(&w, ""), "invalid_name", "invalid key name ``: it is empty"),
        ("key name: 101 characters", key_name(&w, &"n".repeat(101)), "invalid_name", "invalid key name `nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn`: it is longer than 100 characters"),
        ("key name: NUL", key_name(&w, "ci\0prod"), "invalid_name", "invalid key name `ci\\0prod`: it holds a control character"),
        ("key name: newline", key_name(&w, "ci\nprod"), "invalid_name", "invalid key name `ci\\nprod`: it holds a control character"),
        ("login: empty", login(&w, ""), "invalid_name", "invalid login ``: it is empty"),
        ("login: space inside", login(&w, "a b@example.com"), "invalid_name", "invalid login `a b@example.com`: it holds whitespace or a control character"),
        ("login: 255 characters", login(&w, &format!("{}@x.org", "a".repeat(249))), "invalid_name", "invalid login `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...`: it is longer than 254 characters"),
        ("login: NUL", login(&w, "a\0@example.com"), "invalid_name", "invalid login `a\\0@example.com`: it holds whitespace or a control character"),
        ("login: same login in other case", login(&w, "OWNER@example.com"), "conflict", "conflict: login `OWNER@example.com` is taken"),
    ];

    assert!(
        rows.len() >= 50,
        "the catalogue shrank to {} rows",
        rows.len()
    );
    let mut failures = Vec::new();
    for (name, (code, message), want_code, want_message) in &rows {
        if code != want_code || message != want_message {
            failures.push(format!(
                "{name}\n    expected {want_code}: {want_message}\n    got      {code}: {message}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Inputs the fuzz targets found, kept as regression tests.
#[test]
fn fuzz_findings() {
    use keyward::store::{decode, AuditEntry};
    // record_decode: 22 bytes of an audit entry claiming a long key list. serde pre-allocates up to 1 MiB
    // for it (see `store::codec`) and decoding must still fail cleanly.
    let bytes = [
        0x01, 0x10, 0x00, 0x01, 0x01, 0x01, 0x00, 0x07, 0x68, 0x40, 0x62, 0x2e, 0x03, 0x04, 0x02,
        0xfc, 0x04, 0x01, 0x02, 0xfc, 0x6b, 0x58,
    ];
    match decode::<AuditEntry>(&bytes) {
        Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "audit entry"),
        other => panic!("expected a corrupt audit entry, got {other:?}"),
    }
}
