//! Arbitrary header maps and query strings into credential extraction: a credential or an error,
//! never a panic, and neither the result's `Debug` nor an error message leaks the key.
//!
//! Input layout (so seeds stay readable text): the first byte selects the accepted styles (one bit
//! each), the rest is split on `\n`; a line starting with `?` is the query string, any other line is
//! `name:value` (bytes after the first `:` form the value, as sent: leading spaces included).
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keyward::credential::{extract, Style, Styles, MAX_KEY_LEN, MAX_WORKSPACE_LEN};
use libfuzzer_sys::fuzz_target;

const RAW_PREFIXES: [&str; 2] = ["orgkey-", "kw_"];

fn styles(bits: u8) -> Styles {
    Styles {
        basic_email_key: bits & 1 != 0,
        basic_key: bits & 2 != 0,
        api_token: bits & 4 != 0,
        query_param: (bits & 8 != 0).then(|| "api_key".to_owned()),
        apikey_organization: bits & 16 != 0,
        raw_key: match bits >> 5 & 3 {
            0 => None,
            1 => Some(vec![]),
            _ => Some(RAW_PREFIXES.iter().map(|p| p.to_string()).collect()),
        },
        bearer: bits & 128 != 0,
        workspace_header: (bits & 96 == 96).then(|| "x-workspace-key".to_owned()),
    }
}

fn accepted(style: Style, s: &Styles) -> bool {
    match style {
        Style::BasicEmailKey => s.basic_email_key,
        Style::BasicKey => s.basic_key,
        Style::ApiToken => s.api_token,
        Style::QueryParam => s.query_param.is_some(),
        Style::ApiKeyOrganization => s.apikey_organization,
        Style::RawKey => s.raw_key.is_some(),
        Style::Bearer => s.bearer,
    }
}

/// Longest run of request bytes an error message may repeat (an echoed scheme word).
const ECHO: usize = 32;

/// True if `msg` repeats more than `ECHO` bytes of `sent` without a space: a key is one token, and
/// the message's own words (which an input may well contain) are shorter. Runs holding a backtick
/// are not counted: messages quote an echoed scheme word (at most `ECHO` bytes) in backticks, and an
/// input with a backtick right after that word made the quote look like a 33rd echoed byte.
fn leaks(msg: &str, sent: &[u8]) -> bool {
    sent.len() > ECHO
        && sent
            .windows(ECHO + 1)
            .filter(|w| !w.iter().any(|&b| b == b' ' || b == b'\t' || b == b'`'))
            .any(|w| msg.as_bytes().windows(w.len()).any(|m| m == w))
}

/// True if `msg` quotes `word` on its own, as `` `word` ``, once the quotes of the scheme words
/// sent (the first word of each value, which messages may echo) are cut out: a scheme word such as
/// `` zation:`kw_x `` is echoed as `` `zation:`kw_x` ``, which ends like a quote of `kw_x` but is
/// not one.
fn echoes(msg: &str, word: &str, schemes: &[&str]) -> bool {
    let mut rest = msg.to_owned();
    for scheme in schemes.iter().filter(|s| **s != word) {
        rest = rest.replace(&format!("`{scheme}`"), "");
    }
    rest.contains(&format!("`{word}`"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&bits, rest)) = data.split_first() else {
        return;
    };
    let styles = styles(bits);
    let mut headers = HeaderMap::new();
    let mut query: Option<String> = None;
    let mut sent: Vec<&[u8]> = Vec::new();
    for line in rest.split(|&b| b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            // `Uri::query()` is always a `&str`.
            query = Some(String::from_utf8_lossy(q).into_owned());
            sent.push(q);
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                continue;
            };
            headers.append(name, value);
            sent.push(&line[colon + 1..]);
        }
    }
    if sent.iter().any(|s| s.len() > 64 * 1024) {
        return;
    }
    match extract(&headers, query.as_deref(), &styles) {
        Ok(p) => {
            assert!(
                accepted(p.style, &styles),
                "{:?} is not accepted by {styles:?}",
                p.style
            );
            let key = p.key.expose();
            assert!(
                !key.is_empty() && key.len() <= MAX_KEY_LEN,
                "key length {}",
                key.len()
            );
            assert!(
                key.bytes().all(|b| b.is_ascii_graphic()),
                "key holds invisible bytes"
            );
            if let Some(email) = &p.email {
                assert_eq!(p.style, Style::BasicEmailKey);
                assert!(!email.contains(':'), "email with a colon: {email:?}");
                assert!(!email.is_empty());
            }
            if let Some(ws) = &p.workspace {
                assert!(styles.workspace_header.is_some());
                assert!(!ws.is_empty() && ws.len() <= MAX_WORKSPACE_LEN);
            }
            if key.len() >= 8 {
                // The email and the workspace are shown (neither is a secret); a key that happens
                // to be part of one of them (`a;KEY@x:KEY`) is not a leak, so they are cut out.
                let mut debug = format!("{p:?}");
                for shown in [&p.email, &p.workspace].into_iter().flatten() {
                    debug = debug.replacen(&format!("{shown:?}"), "", 1);
                }
                assert!(!debug.contains(key), "Debug shows the key: {debug}");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !e.code().is_empty());
            let schemes: Vec<&str> = sent
                .iter()
                .filter_map(|s| {
                    s.split(|&b| b == b' ' || b == b'\t')
                        .find(|w| !w.is_empty())
                        .and_then(|w| std::str::from_utf8(w).ok())
                })
                .collect();
            for s in &sent {
                assert!(!leaks(&msg, s), "error message repeats the request: {msg}");
                // A word that starts like a raw key is a key, however short: never echoed.
                for word in s.split(|&b| b == b' ' || b == b'\t') {
                    let Ok(word) = std::str::from_utf8(word) else { continue };
                    if RAW_PREFIXES.iter().any(|p| word.starts_with(p))
                        && styles.raw_key.as_ref().is_some_and(|p| !p.is_empty())
                    {
                        assert!(!echoes(&msg, word, &schemes), "error message echoes {word:?}: {msg}");
                    }
                }
            }
        }
    }
});
