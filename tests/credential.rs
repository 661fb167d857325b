//! Credential extraction: one table of (headers, query, styles) -> expected credential or error,
//! plus property tests (no panic on hostile input, every base64 variant round-trips) and the
//! redaction guarantees.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use keyward::credential::{
    extract, extract_from_parts, CredentialError, MalformedReason, Part, Style, Styles,
    WorkspaceProblem,
};
use proptest::prelude::*;

const SEED_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";
const SEATS_KEY: &str = "550e8400-e29b-41d4-a716-446655440000";
const API_TOKEN: &str = "8as7bf9a8s7498svaps8dfabsf";
const C3D_KEY: &str = "abcdef1234567890";

/// Every plaintext key or token used below: no error message may contain one.
const SECRETS: [&str; 5] = [SEED_KEY, SEATS_KEY, API_TOKEN, C3D_KEY, "orgkey-7f3a9c"];

enum Expect {
    Ok {
        style: Style,
        email: Option<&'static str>,
        key: String,
        workspace: Option<&'static str>,
    },
    Err {
        code: &'static str,
        message: String,
    },
}

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    query: Option<String>,
    styles: Styles,
    expect: Expect,
}

fn ok(style: Style, email: Option<&'static str>, key: impl Into<String>) -> Expect {
    Expect::Ok {
        style,
        email,
        key: key.into(),
        workspace: None,
    }
}

fn ok_ws(style: Style, key: &str, workspace: &'static str) -> Expect {
    Expect::Ok {
        style,
        email: None,
        key: key.to_owned(),
        workspace: Some(workspace),
    }
}

fn err(code: &'static str, message: impl Into<String>) -> Expect {
    Expect::Err {
        code,
        message: message.into(),
    }
}

fn auth(value: impl Into<Vec<u8>>) -> Vec<(&'static str, Vec<u8>)> {
    vec![("authorization", value.into())]
}

fn basic(plain: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(plain))
}

fn case(
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    styles: Styles,
    expect: Expect,
) -> Case {
    Case {
        name,
        headers,
        query: None,
        styles,
        expect,
    }
}

fn with_query(mut case: Case, query: impl Into<String>) -> Case {
    case.query = Some(query.into());
    case
}

/// SEED Platform: Basic email:key.
fn seed() -> Styles {
    Styles {
        basic_email_key: true,
        ..Styles::default()
    }
}

/// seats.io: Basic key:, optional workspace header.
fn seats() -> Styles {
    Styles {
        basic_key: true,
        workspace_header: Some("X-Workspace-Key".to_owned()),
        ..Styles::default()
    }
}

/// 002: apiToken header or query parameter.
fn tokens() -> Styles {
    Styles {
        api_token: true,
        query_param: Some("api_token".to_owned()),
        ..Styles::default()
    }
}

/// Cognitive3D: APIKEY:ORGANIZATION or a raw `orgkey-` value.
fn c3d() -> Styles {
    Styles {
        apikey_organization: true,
        raw_key: Some(vec!["orgkey-".to_owned()]),
        ..Styles::default()
    }
}

fn bearer() -> Styles {
    Styles {
        bearer: true,
        ..Styles::default()
    }
}

fn everything() -> Styles {
    Styles {
        basic_email_key: true,
        basic_key: true,
        api_token: true,
        query_param: Some("api_token".to_owned()),
        apikey_organization: true,
        raw_key: Some(vec![]),
        bearer: true,
        workspace_header: Some("X-Workspace-Key".to_owned()),
    }
}

fn malformed(reason: &str) -> Expect {
    err(
        "malformed_credential",
        format!("malformed credential: {reason}"),
    )
}

fn cases() -> Vec<Case> {
    use Style::*;
    let seed_header =
        "Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi";
    let seats_header = "Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg==";
    // `us~er?xy@example.org:<SEED_KEY>`: the two alphabets differ and the padding is `==`.
    let tilde_std =
        "dXN+ZXI/eHlAZXhhbXBsZS5vcmc6YjU4ZjEyYzM1ODYwNjE2M2M3ZmYxZTU1MTIyYzc1MTdmZDMyYWY0Yg==";
    let tilde_url =
        "dXN-ZXI_eHlAZXhhbXBsZS5vcmc6YjU4ZjEyYzM1ODYwNjE2M2M3ZmYxZTU1MTIyYzc1MTdmZDMyYWY0Yg==";
    let tilde = "us~er?xy@example.org";
    let seed_email = "user@seed-platform.org";
    let no_cred = "no credential in the request";
    let unrecognised = "unrecognised credential";

    vec![
        // --- SEED Platform: Basic base64(email:key) ---
        case("seed document example", auth(seed_header), seed(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case(
            "seed document curl example",
            auth("Basic bmljaG9sYXMubG9uZ0BucmVsLmdvdjpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi"),
            seed(),
            ok(BasicEmailKey, Some("nicholas.long@nrel.gov"), SEED_KEY),
        ),
        case("python requests HTTPBasicAuth: standard, padded", auth(format!("Basic {tilde_std}")), seed(), ok(BasicEmailKey, Some(tilde), SEED_KEY)),
        case("standard, unpadded", auth(format!("Basic {}", tilde_std.trim_end_matches('='))), seed(), ok(BasicEmailKey, Some(tilde), SEED_KEY)),
        case("urlsafe_b64encode: url-safe, padded", auth(format!("Basic {tilde_url}")), seed(), ok(BasicEmailKey, Some(tilde), SEED_KEY)),
        case("url-safe, unpadded", auth(format!("Basic {}", tilde_url.trim_end_matches('='))), seed(), ok(BasicEmailKey, Some(tilde), SEED_KEY)),
        case("lowercase scheme", auth(seed_header.replace("Basic", "basic")), seed(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case("uppercase scheme", auth(seed_header.replace("Basic", "BASIC")), seed(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case("surrounding and inner spaces", auth(format!("  {}  ", seed_header.replace(' ', "    "))), seed(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case("tab between scheme and credentials", auth(seed_header.replace(' ', "\t")), seed(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case(
            "email kept as sent (the engine lowercases)",
            auth("Basic VXNlckBTZWVkLVBsYXRmb3JtLk9SRzpiNThmMTJjMzU4NjA2MTYzYzdmZjFlNTUxMjJjNzUxN2ZkMzJhZjRi"),
            seed(),
            ok(BasicEmailKey, Some("User@Seed-Platform.ORG"), SEED_KEY),
        ),
        case("key may contain `:` (split at the first)", auth(basic(b"a@b.org:k:ey")), seed(), ok(BasicEmailKey, Some("a@b.org"), "k:ey")),
        case("key of 512 bytes", auth(basic(format!("a@b.org:{}", "k".repeat(512)).as_bytes())), seed(), ok(BasicEmailKey, Some("a@b.org"), "k".repeat(512))),
        case("key of 513 bytes", auth(basic(format!("a@b.org:{}", "k".repeat(513)).as_bytes())), seed(), err("key_too_long", "the key is longer than 512 bytes")),
        case("email without key", auth(basic(b"user@seed-platform.org:")), seed(), err("empty_key", "the key is empty")),
        case("no colon", auth(basic(b"user@seed-platform.org")), seed(), malformed("basic credentials have no `:`")),
        case(
            "quoted email with `:` cannot be sent",
            auth(basic(format!("\"a:b\"@example.org:{SEED_KEY}").as_bytes())),
            seed(),
            malformed("the email contains `:`, which basic credentials cannot carry in a username"),
        ),
        case("email is only `@`", auth(basic(format!("@:{SEED_KEY}").as_bytes())), seed(), malformed("the email needs text on both sides of its `@`")),
        case("NUL in the email", auth(basic(format!("us\0er@x.org:{SEED_KEY}").as_bytes())), seed(), malformed("the email contains a control character")),
        case("NUL in the key", auth(basic(b"user@x.org:b58f\0c358")), seed(), malformed("the key contains a character that is not visible ASCII")),
        case("space in the key", auth(basic(b"user@x.org:b58f c358")), seed(), malformed("the key contains a character that is not visible ASCII")),
        case(
            "email of 321 bytes",
            auth(basic(format!("{}@x.org:{SEED_KEY}", "u".repeat(315)).as_bytes())),
            seed(),
            malformed("the email is longer than 320 bytes"),
        ),
        case("decoded bytes not UTF-8", auth(basic(b"user@x.org:\xff\xfe")), seed(), err("not_utf8", "the decoded basic credential is not valid UTF-8")),
        case("key-only Basic where only email:key is accepted", auth(seats_header), seed(), err("style_not_accepted", "credentials in the `basic_key` style are not accepted here")),
        case("email:key where no Basic style is accepted", auth(seed_header), bearer(), err("style_not_accepted", "credentials in the `basic_email_key` style are not accepted here")),
        // --- base64 errors ---
        case("both alphabets mixed", auth("Basic dXN+ZXI_eHlA"), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("character outside both alphabets", auth("Basic dXNl*kBz"), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("one `=` where two are needed", auth("Basic YTpiYw="), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("three `=`", auth("Basic YTpiYw==="), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("padding where none is needed", auth("Basic YTpi="), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("padding in the middle", auth("Basic YQ==YTpi"), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("impossible length", auth("Basic YTpiY"), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("non-canonical trailing bits", auth("Basic YTpiYx=="), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("only padding", auth("Basic ===="), seed(), err("bad_base64", "the basic credentials are not valid base64")),
        case("Basic without credentials", auth("Basic"), seed(), err("empty_key", "the key is empty")),
        case("Basic with two tokens", auth(format!("{seed_header} extra")), seed(), malformed("more than one token follows `Basic`")),
        case(
            "decodes to more than 1 KiB",
            auth(basic(format!("a@b.org:{}", "k".repeat(1100)).as_bytes())),
            seed(),
            err("basic_too_long", "the basic credentials decode to more than 1024 bytes"),
        ),
        case(
            "decodes to 128 bytes (small buffer)",
            auth(basic(format!("a@b.org:{}", "k".repeat(120)).as_bytes())),
            seed(),
            ok(BasicEmailKey, Some("a@b.org"), "k".repeat(120)),
        ),
        case(
            "decodes to 129 bytes (large buffer)",
            auth(basic(format!("a@b.org:{}", "k".repeat(121)).as_bytes())),
            seed(),
            ok(BasicEmailKey, Some("a@b.org"), "k".repeat(121)),
        ),
        case(
            "decodes to exactly 1 KiB",
            auth(basic(format!("{SEATS_KEY}:{}", "p".repeat(1024 - 37)).as_bytes())),
            seats(),
            ok(BasicKey, None, SEATS_KEY),
        ),
        case(
            "decodes to 1 KiB + 1",
            auth(basic(format!("{SEATS_KEY}:{}", "p".repeat(1024 - 36)).as_bytes())),
            seats(),
            err("basic_too_long", "the basic credentials decode to more than 1024 bytes"),
        ),
        // --- seats.io: Basic base64(key:), workspace header ---
        case("seats.io document example (curl -u KEY:)", auth(seats_header), seats(), ok(BasicKey, None, SEATS_KEY)),
        case("url-safe unpadded key:", auth("Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg"), seats(), ok(BasicKey, None, SEATS_KEY)),
        case(
            "password ignored, even with colons",
            auth("Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOmlnbm9yZWQ6d2l0aDpjb2xvbnM="),
            seats(),
            ok(BasicKey, None, SEATS_KEY),
        ),
        case("empty username", auth(basic(b":password")), seats(), err("empty_key", "the key is empty")),
        case("email-looking username is the key when only key: is accepted", auth(seed_header), seats(), ok(BasicKey, None, seed_email)),
        case("both Basic styles: email chooses email:key", auth(seed_header), everything(), ok(BasicEmailKey, Some(seed_email), SEED_KEY)),
        case("both Basic styles: no `@` chooses key:", auth(seats_header), everything(), ok(BasicKey, None, SEATS_KEY)),
        case(
            "admin key with workspace header",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"4f1c9e2a-public".to_vec())],
            seats(),
            ok_ws(BasicKey, SEATS_KEY, "4f1c9e2a-public"),
        ),
        case(
            "workspace header with surrounding spaces",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"  ws-1 ".to_vec())],
            seats(),
            ok_ws(BasicKey, SEATS_KEY, "ws-1"),
        ),
        case(
            "workspace header not declared is ignored",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"ws-1".to_vec())],
            Styles { basic_key: true, ..Styles::default() },
            ok(BasicKey, None, SEATS_KEY),
        ),
        case(
            "workspace header twice",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"ws-1".to_vec()), ("x-workspace-key", b"ws-2".to_vec())],
            seats(),
            err("bad_workspace_header", "the `X-Workspace-Key` header appears more than once"),
        ),
        case(
            "workspace header empty",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"  ".to_vec())],
            seats(),
            err("bad_workspace_header", "the `X-Workspace-Key` header is empty"),
        ),
        case(
            "workspace header of 257 bytes",
            vec![("authorization", seats_header.into()), ("x-workspace-key", vec![b'w'; 257])],
            seats(),
            err("bad_workspace_header", "the `X-Workspace-Key` header is longer than 256 bytes"),
        ),
        case(
            "workspace header with a non-ASCII byte",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"ws-\xe9".to_vec())],
            seats(),
            err("bad_workspace_header", "the `X-Workspace-Key` header contains a character that is not visible ASCII"),
        ),
        case(
            "workspace header with an inner space",
            vec![("authorization", seats_header.into()), ("x-workspace-key", b"ws 1".to_vec())],
            seats(),
            err("bad_workspace_header", "the `X-Workspace-Key` header contains a character that is not visible ASCII"),
        ),
        // --- 002: apiToken header and query parameter ---
        case("apiToken header", auth(format!("apiToken {API_TOKEN}")), tokens(), ok(ApiToken, None, API_TOKEN)),
        case("APITOKEN, two spaces", auth(format!("APITOKEN  {API_TOKEN}")), tokens(), ok(ApiToken, None, API_TOKEN)),
        case("apiToken not accepted", auth(format!("apiToken {API_TOKEN}")), seed(), err("style_not_accepted", "credentials in the `api_token` style are not accepted here")),
        case("apiToken with two tokens", auth(format!("apiToken {API_TOKEN} {API_TOKEN}")), tokens(), malformed("more than one token follows `apiToken`")),
        with_query(case("query parameter", vec![], tokens(), ok(QueryParam, None, API_TOKEN)), format!("page=2&api_token={API_TOKEN}")),
        with_query(case("query parameter percent-encoded", vec![], tokens(), ok(QueryParam, None, "abc+def/="), ), "api_token=abc%2Bdef%2F%3D"),
        with_query(case("query `+` decodes to a space", vec![], tokens(), malformed("the key contains a character that is not visible ASCII")), "api_token=abc+def"),
        with_query(case("query invalid UTF-8 after decoding", vec![], tokens(), malformed("the key contains a character that is not visible ASCII")), "api_token=abc%FF"),
        with_query(
            case("query parameter twice", vec![], tokens(), err("multiple_query_tokens", "the `api_token` query parameter appears 2 times, expected once")),
            format!("api_token={API_TOKEN}&api_token={API_TOKEN}"),
        ),
        with_query(
            case(
                "header and query both",
                auth(format!("apiToken {API_TOKEN}")),
                tokens(),
                err("ambiguous_credential", "the request carries a credential both in the `Authorization` header and in the `api_token` query parameter"),
            ),
            format!("api_token={API_TOKEN}"),
        ),
        with_query(case("query parameter not enabled is ignored", vec![], seed(), err("missing_credential", no_cred)), format!("api_token={API_TOKEN}")),
        with_query(case("query without the parameter", vec![], tokens(), err("missing_credential", no_cred)), "page=2&api_tokens=x"),
        with_query(case("query parameter empty", vec![], tokens(), err("empty_key", "the key is empty")), "api_token="),
        with_query(case("query parameter of 513 bytes", vec![], tokens(), err("key_too_long", "the key is longer than 512 bytes")), format!("api_token={}", "t".repeat(513))),
        // --- Cognitive3D: APIKEY:ORGANIZATION and raw orgkey- values ---
        case("APIKEY:ORGANIZATION", auth(format!("APIKEY:ORGANIZATION {C3D_KEY}")), c3d(), ok(ApiKeyOrganization, None, C3D_KEY)),
        case("apikey:organization lowercase", auth(format!("apikey:organization {C3D_KEY}")), c3d(), ok(ApiKeyOrganization, None, C3D_KEY)),
        case("APIKEY:ORGANIZATION without key", auth("APIKEY:ORGANIZATION "), c3d(), err("empty_key", "the key is empty")),
        case("APIKEY:ORGANIZATION not accepted", auth(format!("APIKEY:ORGANIZATION {C3D_KEY}")), seed(), err("style_not_accepted", "credentials in the `apikey_organization` style are not accepted here")),
        case("raw orgkey- value", auth("orgkey-7f3a9c"), c3d(), ok(RawKey, None, "orgkey-7f3a9c")),
        case("raw value with surrounding spaces", auth("  orgkey-7f3a9c "), c3d(), ok(RawKey, None, "orgkey-7f3a9c")),
        case("raw value without the prefix is not echoed", auth(C3D_KEY), c3d(), err("unknown_scheme", unrecognised)),
        case("raw value when raw keys are off is not echoed", auth("orgkey-7f3a9c"), seed(), err("unknown_scheme", unrecognised)),
        case("any raw value", auth(SEATS_KEY), Styles { raw_key: Some(vec![]), ..Styles::default() }, ok(RawKey, None, SEATS_KEY)),
        case("raw value of 513 bytes", auth(format!("orgkey-{}", "z".repeat(506))), c3d(), err("key_too_long", "the key is longer than 512 bytes")),
        // --- Bearer ---
        case("Bearer", auth("Bearer kw_3xAmpLe"), bearer(), ok(Bearer, None, "kw_3xAmpLe")),
        case("bearer lowercase", auth("bearer kw_3xAmpLe"), bearer(), ok(Bearer, None, "kw_3xAmpLe")),
        case("Bearer not accepted", auth("Bearer kw_3xAmpLe"), seed(), err("style_not_accepted", "credentials in the `bearer` style are not accepted here")),
        case("Bearer with two tokens", auth("Bearer kw_3xAmpLe kw_other"), bearer(), malformed("more than one token follows `Bearer`")),
        case("Bearer without token", auth("Bearer"), bearer(), err("empty_key", "the key is empty")),
        // --- the Authorization header itself ---
        case("no credential", vec![], everything(), err("missing_credential", no_cred)),
        case(
            "two Authorization headers",
            vec![("authorization", seed_header.into()), ("authorization", seed_header.into())],
            seed(),
            err("multiple_authorization", "the request has 2 `Authorization` headers, expected one"),
        ),
        case(
            "8 KiB + 1",
            auth(format!("Bearer {}", "k".repeat(8 * 1024 + 1 - 7))),
            bearer(),
            err("header_too_long", "the `Authorization` header is 8193 bytes long, the limit is 8192"),
        ),
        case(
            "exactly 8 KiB passes the header check",
            auth(format!("Bearer {}", "k".repeat(8 * 1024 - 7))),
            bearer(),
            err("key_too_long", "the key is longer than 512 bytes"),
        ),
        case("bytes that are not UTF-8", auth(b"Bearer kw_\xff\xfe".to_vec()), bearer(), err("not_utf8", "the `Authorization` header is not valid UTF-8")),
        case("UTF-8 beyond ASCII", auth("Bearer kw_caf\u{e9}"), bearer(), err("invalid_characters", "the `Authorization` header contains a control or non-ASCII character")),
        case(
            "bad byte in the scheme outranks the unknown scheme",
            auth("B\u{e9}arer kw_3xAmpLe"),
            everything(),
            err("invalid_characters", "the `Authorization` header contains a control or non-ASCII character"),
        ),
        case(
            "bad byte after the token outranks the extra token",
            auth(b"Bearer kw_3xAmpLe \xff".to_vec()),
            everything(),
            err("not_utf8", "the `Authorization` header is not valid UTF-8"),
        ),
        case(
            "bad byte in a raw value",
            auth(b"orgkey-\xff".to_vec()),
            c3d(),
            err("not_utf8", "the `Authorization` header is not valid UTF-8"),
        ),
        case("empty header", auth(""), everything(), malformed("the `Authorization` header is empty")),
        case("only whitespace", auth(" \t "), everything(), malformed("the `Authorization` header is empty")),
        case("unknown scheme is echoed", auth("Digest username=\"u\", realm=\"r\""), everything(), err("unknown_scheme", "unrecognised authorization scheme `Digest`")),
        case("well-known scheme with digits is echoed", auth("AWS4-HMAC-SHA256 Credential=x"), everything(), err("unknown_scheme", "unrecognised authorization scheme `AWS4-HMAC-SHA256`")),
        case("key before a space is not echoed", auth(format!("{SEATS_KEY} x")), everything(), err("unknown_scheme", unrecognised)),
        case("long word before a space is not echoed", auth(format!("{} x", "abcdefghijklmnopqrstuvwxyzabcdefg")), everything(), err("unknown_scheme", unrecognised)),
    ]
}

fn header_map(headers: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).expect("test header values are valid for http"),
        );
    }
    map
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} rows", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let headers = header_map(&case.headers);
        let got = extract(&headers, case.query.as_deref(), &case.styles);
        match (&case.expect, &got) {
            (
                Expect::Ok {
                    style,
                    email,
                    key,
                    workspace,
                },
                Ok(p),
            ) => {
                if p.style != *style
                    || p.email.as_deref() != *email
                    || p.key.expose() != key
                    || p.workspace.as_deref() != *workspace
                {
                    failures.push(format!(
                        "{}: got {:?} (key {:?})",
                        case.name,
                        p,
                        p.key.expose()
                    ));
                }
                let debug = format!("{p:?}");
                if debug.contains(key.as_str()) {
                    failures.push(format!("{}: Debug shows the key: {debug}", case.name));
                }
            }
            (Expect::Err { code, message }, Err(e)) => {
                let shown = e.to_string();
                if e.code() != *code || shown != *message {
                    failures.push(format!("{}: got {} {shown:?}", case.name, e.code()));
                }
                for secret in SECRETS {
                    if shown.contains(secret) || format!("{e:?}").contains(secret) {
                        failures.push(format!("{}: error shows a secret: {shown}", case.name));
                    }
                }
            }
            (Expect::Ok { .. }, Err(e)) => {
                failures.push(format!("{}: unexpected error {} {e}", case.name, e.code()))
            }
            (Expect::Err { code, .. }, Ok(p)) => failures.push(format!(
                "{}: expected {code}, got {p:?} (key {:?})",
                case.name,
                p.key.expose()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn seed_example_encodings_differ_between_alphabets() {
    let plain = format!("us~er?xy@example.org:{SEED_KEY}");
    assert_ne!(STANDARD.encode(&plain), URL_SAFE.encode(&plain));
}

#[test]
fn http_refuses_control_bytes_before_extraction_sees_them() {
    // NUL, CR, LF and DEL cannot be in an `http::HeaderValue`, so `extract` never sees them in a
    // header; inside Basic credentials they are covered by the table.
    for bad in [
        &b"Bearer a\0b"[..],
        b"Bearer a\rb",
        b"Bearer a\nb",
        b"Bearer a\x7fb",
    ] {
        assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn from_parts_reads_the_query_from_the_uri() {
    let request = http::Request::get(format!(
        "https://api.example/v1/items?x=1&api_token={API_TOKEN}"
    ))
    .body(())
    .expect("valid request");
    let (parts, ()) = request.into_parts();
    let presented = extract_from_parts(&parts, &tokens()).expect("query token");
    assert_eq!(presented.style, Style::QueryParam);
    assert_eq!(presented.key.expose(), API_TOKEN);
}

#[test]
fn debug_never_shows_the_key() {
    let headers = header_map(&auth(format!(
        "Basic {}",
        STANDARD.encode(format!("a@b.org:{SEED_KEY}"))
    )));
    let presented = extract(&headers, None, &seed()).expect("valid");
    let debug = format!("{presented:?} {presented:#?}");
    assert!(!debug.contains(SEED_KEY), "{debug}");
    assert!(debug.contains("a@b.org"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn codes_are_stable_distinct_snake_case() {
    let all = [
        CredentialError::Missing,
        CredentialError::MultipleAuthorization { count: 2 },
        CredentialError::HeaderTooLong {
            len: 9000,
            max: 8192,
        },
        CredentialError::NotUtf8 {
            part: Part::AuthorizationHeader,
        },
        CredentialError::InvalidCharacters {
            part: Part::BasicCredentials,
        },
        CredentialError::UnknownScheme { scheme: None },
        CredentialError::StyleNotAccepted {
            style: Style::Bearer,
        },
        CredentialError::BadBase64,
        CredentialError::BasicTooLong { max: 1024 },
        CredentialError::Malformed {
            reason: MalformedReason::NoColon,
        },
        CredentialError::EmptyKey,
        CredentialError::KeyTooLong { max: 512 },
        CredentialError::Ambiguous { param: "t".into() },
        CredentialError::MultipleQueryTokens {
            param: "t".into(),
            count: 2,
        },
        CredentialError::BadWorkspaceHeader {
            header: "X-W".into(),
            problem: WorkspaceProblem::Empty,
        },
    ];
    let codes: Vec<&str> = all.iter().map(CredentialError::code).collect();
    assert_eq!(
        codes,
        [
            "missing_credential",
            "multiple_authorization",
            "header_too_long",
            "not_utf8",
            "invalid_characters",
            "unknown_scheme",
            "style_not_accepted",
            "bad_base64",
            "basic_too_long",
            "malformed_credential",
            "empty_key",
            "key_too_long",
            "ambiguous_credential",
            "multiple_query_tokens",
            "bad_workspace_header",
        ]
    );
    for error in &all {
        let message = error.to_string();
        assert!(!message.ends_with('.'), "{message}");
        assert!(!message.starts_with(char::is_uppercase), "{message}");
    }
    let styles: Vec<&str> = Style::ALL.iter().map(|s| s.code()).collect();
    assert_eq!(
        styles,
        [
            "basic_email_key",
            "basic_key",
            "api_token",
            "query_param",
            "apikey_organization",
            "raw_key",
            "bearer"
        ]
    );
}

proptest! {
    /// Arbitrary bytes as the `Authorization` and workspace headers, with any query, never panic,
    /// and an error never repeats a long run of the input.
    #[test]
    fn hostile_headers_never_panic(
        value in proptest::collection::vec(any::<u8>(), 0..600),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"Basic "[..]), Just(&b"bearer "[..]), Just(&b"APIKEY:ORGANIZATION "[..]), Just(&b"apiToken "[..])],
        workspace in proptest::collection::vec(any::<u8>(), 0..40),
        query in ".{0,60}",
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&value);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&workspace) {
            headers.insert("x-workspace-key", v);
        }
        let clean = bytes.iter().all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t');
        for styles in [everything(), seed(), seats(), tokens(), c3d(), bearer(), Styles::default()] {
            let _ = extract(&headers, Some(&query), &styles);
            if extract(&headers, None, &styles).is_ok() && headers.contains_key("authorization") {
                // Only a header of visible ASCII and SP/HTAB can yield a credential.
                prop_assert!(clean, "accepted {:?}", bytes);
            }
        }
    }

    /// Arbitrary text after a scheme word never panics either (reaches deeper than random bytes).
    #[test]
    fn hostile_base64_never_panics(encoded in "[A-Za-z0-9+/_=-]{0,1500}") {
        let headers = header_map(&auth(format!("Basic {encoded}")));
        let _ = extract(&headers, None, &everything());
    }

    /// A non-ASCII character anywhere in a token of any length is caught (every lane position,
    /// including the overlapping last lane).
    #[test]
    fn bad_character_anywhere_in_a_token_is_caught(token in "[!-~]{1,200}", at in any::<prop::sample::Index>()) {
        let at = at.index(token.len() + 1);
        let mut bad = token.clone();
        bad.insert(at, '\u{e9}');
        let headers = header_map(&auth(format!("Bearer {bad}")));
        let e = extract(&headers, None, &everything()).map(|_| ()).map_err(|e| e.code());
        prop_assert_eq!(e, Err("invalid_characters"));
        let headers = header_map(&auth(format!("Bearer {token}")));
        prop_assert!(extract(&headers, None, &everything()).is_ok());
    }

    /// Any email:key pair round-trips through all four base64 variants.
    #[test]
    fn email_key_round_trips(
        local in "[!-9;-?A-~]{1,40}",
        domain in "[a-z0-9.-]{1,40}",
        key in "[!-~]{1,100}",
    ) {
        let email = format!("{local}@{domain}");
        let plain = format!("{email}:{key}");
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let headers = header_map(&auth(format!("Basic {}", engine.encode(&plain))));
            let p = extract(&headers, None, &seed()).map_err(|e| e.to_string());
            let p = p.map_err(|e| TestCaseError::fail(format!("{plain:?}: {e}")))?;
            prop_assert_eq!(p.style, Style::BasicEmailKey);
            prop_assert_eq!(p.email.as_deref(), Some(email.as_str()));
            prop_assert_eq!(p.key.expose(), key.as_str());
        }
    }

    /// Any key:password pair round-trips as a key through all four variants, password ignored.
    #[test]
    fn key_password_round_trips(key in "[!-9;-?A-~]{1,100}", password in "[ -~]{0,30}") {
        let plain = format!("{key}:{password}");
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let headers = header_map(&auth(format!("Basic {}", engine.encode(&plain))));
            let p = extract(&headers, None, &seats()).map_err(|e| TestCaseError::fail(format!("{plain:?}: {e}")))?;
            prop_assert_eq!(p.style, Style::BasicKey);
            prop_assert_eq!(p.key.expose(), key.as_str());
        }
    }
}
