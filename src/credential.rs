//! Credential extraction: finds the API key a request presents, in the styles a deployment accepts.
//!
//! [`extract`] reads the `Authorization` header, the query string and the optional workspace header
//! of one request and returns the [`Presented`] credential, or a [`CredentialError`] that says
//! exactly what was wrong, with a stable [`CredentialError::code`]. It does no lookup: whether the
//! key exists, is active or is an admin key is the engine's business.
//!
//! Accepted forms (each only when [`Styles`] enables it; scheme words are case-insensitive):
//!
//! | style | request |
//! |---|---|
//! | [`Style::BasicEmailKey`] | `Authorization: Basic base64(email:key)` (SEED Platform) |
//! | [`Style::BasicKey`] | `Authorization: Basic base64(key:)`, password ignored (seats.io, `curl -u KEY:`) |
//! | [`Style::ApiToken`] | `Authorization: apiToken <token>` |
//! | [`Style::ApiKeyOrganization`] | `Authorization: APIKEY:ORGANIZATION <key>` (Cognitive3D) |
//! | [`Style::Bearer`] | `Authorization: Bearer <key>` |
//! | [`Style::RawKey`] | `Authorization: <key>`, the whole value, optionally only with given prefixes |
//! | [`Style::QueryParam`] | `?<name>=<token>` |
//!
//! Decisions worth knowing:
//!
//! - **Basic decoding** accepts the standard and the URL-safe base64 alphabet, padded or not
//!   (Python `requests` sends standard padded, the SEED document's own example is URL-safe). The
//!   alphabet is chosen by the input: if it contains `-` or `_` it is URL-safe, otherwise standard;
//!   a mix of both alphabets is rejected. Padding is all or nothing (`YWI=` or `YWI`, not `YWJjZA=`),
//!   and non-canonical trailing bits are rejected.
//! - **Basic splitting** happens at the *first* `:`, as RFC 7617 prescribes (a user-id cannot
//!   contain a colon, a password can). An email containing `:` (`"a:b"@example.org`, or the
//!   invalid `a:b@example.org`) therefore cannot be sent in Basic and is rejected as
//!   [`MalformedReason::ColonInEmail`] rather than misread.
//! - **Which Basic style**: if the part before the colon contains `@` and
//!   [`Styles::basic_email_key`] is on, it is an email and the key is the part after the colon;
//!   otherwise, if [`Styles::basic_key`] is on, the part before the colon is the key and the password
//!   is ignored; otherwise [`CredentialError::StyleNotAccepted`]. Basic credentials are decoded
//!   before the style is checked, because the style depends on the decoded content.
//! - **Header and query** both carrying a credential is [`CredentialError::Ambiguous`]: nothing is
//!   guessed. The query string is looked at only when [`Styles::query_param`] is set.
//! - **Never echoed**: keys, tokens and workspace values never appear in an error message or in
//!   `Debug` output. An unknown scheme word is echoed only when it cannot plausibly be a key: a
//!   well-known scheme name, or at most 32 bytes without a digit; a value without a space is never
//!   echoed at all.
//! - **Speed**: a valid header is scanned once, by a vectorised pass over its token (the whole
//!   value is re-checked only to choose the error when something is wrong). Basic decodes into a
//!   stack buffer, allocates only the returned strings, and wipes the decoded bytes before
//!   returning.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{DecodeSliceError, Engine as _};
use http::header::AUTHORIZATION;
use http::HeaderMap;
use zeroize::Zeroize;

use crate::token::Secret;

/// Longest accepted `Authorization` header value, in bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// Longest accepted key or token, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Longest accepted workspace header value, in bytes.
pub const MAX_WORKSPACE_LEN: usize = 256;
/// Longest accepted decoded Basic credentials (`user:password`), in bytes.
pub const MAX_BASIC_DECODED_LEN: usize = 1024;
/// Longest accepted email in Basic credentials, in bytes (RFC 5321: 64 + `@` + 255).
pub const MAX_EMAIL_LEN: usize = 320;

/// Longest scheme word echoed in [`CredentialError::UnknownScheme`].
const MAX_ECHOED_SCHEME_LEN: usize = 32;

/// Base64 engines for Basic credentials: padding, if any, must be canonical (partial padding such
/// as `Yw=` is rejected, as Python's decoder does).
const STANDARD_PADDED: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, pad_mode(true));
const STANDARD_UNPADDED: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, pad_mode(false));
const URL_SAFE_PADDED: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, pad_mode(true));
const URL_SAFE_UNPADDED: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, pad_mode(false));

const fn pad_mode(padded: bool) -> GeneralPurposeConfig {
    GeneralPurposeConfig::new().with_decode_padding_mode(if padded {
        DecodePaddingMode::RequireCanonical
    } else {
        DecodePaddingMode::RequireNone
    })
}

/// Which credential styles a deployment accepts (the policy's `credentials { ... }` block compiles
/// into this). The default accepts nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Styles {
    /// `Authorization: Basic base64(email:key)` (SEED Platform).
    pub basic_email_key: bool,
    /// `Authorization: Basic base64(key:)`, the password is ignored (seats.io).
    pub basic_key: bool,
    /// `Authorization: apiToken <token>`.
    pub api_token: bool,
    /// `?<name>=<token>` in the query string; off unless a name is declared, because keys in URLs
    /// end up in access logs.
    pub query_param: Option<String>,
    /// `Authorization: APIKEY:ORGANIZATION <key>` (Cognitive3D).
    pub apikey_organization: bool,
    /// The whole `Authorization` value is the key. `Some(vec![])` accepts any single token,
    /// `Some(prefixes)` only a value starting with one of them (for example `orgkey-`).
    pub raw_key: Option<Vec<String>>,
    /// `Authorization: Bearer <key>`.
    pub bearer: bool,
    /// Name of a header naming the workspace a request acts on (for example `X-Workspace-Key`).
    pub workspace_header: Option<String>,
}

/// How the key arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// `Authorization: Basic base64(email:key)`.
    BasicEmailKey,
    /// `Authorization: Basic base64(key:password)`, password ignored.
    BasicKey,
    /// `Authorization: apiToken <token>`.
    ApiToken,
    /// `?<name>=<token>`.
    QueryParam,
    /// `Authorization: APIKEY:ORGANIZATION <key>`.
    ApiKeyOrganization,
    /// `Authorization: <key>`.
    RawKey,
    /// `Authorization: Bearer <key>`.
    Bearer,
}

impl Style {
    /// Every style, in declaration order.
    pub const ALL: [Style; 7] = [
        Style::BasicEmailKey,
        Style::BasicKey,
        Style::ApiToken,
        Style::QueryParam,
        Style::ApiKeyOrganization,
        Style::RawKey,
        Style::Bearer,
    ];

    /// A stable snake_case name, the same as the field of [`Styles`] that enables it.
    pub const fn code(self) -> &'static str {
        match self {
            Style::BasicEmailKey => "basic_email_key",
            Style::BasicKey => "basic_key",
            Style::ApiToken => "api_token",
            Style::QueryParam => "query_param",
            Style::ApiKeyOrganization => "apikey_organization",
            Style::RawKey => "raw_key",
            Style::Bearer => "bearer",
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A credential taken from a request. `Debug` shows the key as `<redacted>`.
#[derive(Clone, Debug)]
pub struct Presented {
    /// How the key arrived.
    pub style: Style,
    /// The email, only for [`Style::BasicEmailKey`], as sent (the engine lowercases to compare).
    pub email: Option<String>,
    /// The key or token.
    pub key: Secret,
    /// The value of the workspace header, if [`Styles::workspace_header`] is declared and the
    /// request carries it.
    pub workspace: Option<String>,
}

/// Where a value that is not valid UTF-8 or has forbidden characters was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The raw `Authorization` header value.
    AuthorizationHeader,
    /// The base64-decoded Basic credentials.
    BasicCredentials,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::AuthorizationHeader => "the `Authorization` header",
            Part::BasicCredentials => "the decoded basic credential",
        })
    }
}

/// Why a credential is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedReason {
    /// The `Authorization` header is empty or only whitespace.
    EmptyHeader,
    /// More than one token follows the scheme word.
    ExtraToken {
        /// The scheme, as this crate spells it.
        scheme: &'static str,
    },
    /// Decoded Basic credentials have no `:` between user and password.
    NoColon,
    /// The username looks like an email that was cut at a `:` of its own (the rest, up to the next
    /// `:`, holds the `@`).
    ColonInEmail,
    /// The email has no local part or no domain around its `@`.
    NotAnEmail,
    /// The email is longer than [`MAX_EMAIL_LEN`].
    EmailTooLong,
    /// The email contains a control character.
    EmailCharacters,
    /// The key contains a byte that is not visible ASCII.
    KeyCharacters,
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedReason::EmptyHeader => f.write_str("the `Authorization` header is empty"),
            MalformedReason::ExtraToken { scheme } => {
                write!(f, "more than one token follows `{scheme}`")
            }
            MalformedReason::NoColon => f.write_str("basic credentials have no `:`"),
            MalformedReason::ColonInEmail => f.write_str(
                "the email contains `:`, which basic credentials cannot carry in a username",
            ),
            MalformedReason::NotAnEmail => {
                f.write_str("the email needs text on both sides of its `@`")
            }
            MalformedReason::EmailTooLong => {
                write!(f, "the email is longer than {MAX_EMAIL_LEN} bytes")
            }
            MalformedReason::EmailCharacters => {
                f.write_str("the email contains a control character")
            }
            MalformedReason::KeyCharacters => {
                f.write_str("the key contains a character that is not visible ASCII")
            }
        }
    }
}

/// Why a workspace header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkspaceProblem {
    /// The header appears more than once.
    Repeated,
    /// The value is empty or only whitespace.
    Empty,
    /// The value is longer than [`MAX_WORKSPACE_LEN`].
    TooLong,
    /// The value contains a byte that is not visible ASCII.
    Characters,
}

impl fmt::Display for WorkspaceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkspaceProblem::Repeated => f.write_str("appears more than once"),
            WorkspaceProblem::Empty => f.write_str("is empty"),
            WorkspaceProblem::TooLong => write!(f, "is longer than {MAX_WORKSPACE_LEN} bytes"),
            WorkspaceProblem::Characters => {
                f.write_str("contains a character that is not visible ASCII")
            }
        }
    }
}

/// Why no credential could be taken from a request. No variant holds a key, a token or any part
/// of one. [`CredentialError::code`] gives a stable snake_case code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Neither the `Authorization` header nor an enabled query parameter carries a credential.
    #[error("no credential in the request")]
    Missing,
    /// The request has more than one `Authorization` header.
    #[error("the request has {count} `Authorization` headers, expected one")]
    MultipleAuthorization {
        /// How many.
        count: usize,
    },
    /// The `Authorization` value is longer than [`MAX_AUTHORIZATION_LEN`].
    #[error("the `Authorization` header is {len} bytes long, the limit is {max}")]
    HeaderTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value is not valid UTF-8.
    #[error("{part} is not valid UTF-8")]
    NotUtf8 {
        /// Which value.
        part: Part,
    },
    /// A value is valid UTF-8 but contains a control or non-ASCII character.
    #[error("{part} contains a control or non-ASCII character")]
    InvalidCharacters {
        /// Which value.
        part: Part,
    },
    /// The `Authorization` value uses a scheme this crate does not know, or is a single token that
    /// no enabled raw-key rule accepts.
    #[error("{}", unknown_scheme_message(.scheme.as_deref()))]
    UnknownScheme {
        /// The scheme word, only when it cannot plausibly be a key (see the module docs).
        scheme: Option<String>,
    },
    /// The credential uses a style the policy does not enable.
    #[error("credentials in the `{style}` style are not accepted here")]
    StyleNotAccepted {
        /// The style the request used.
        style: Style,
    },
    /// The Basic credentials are not valid base64.
    #[error("the basic credentials are not valid base64")]
    BadBase64,
    /// The decoded Basic credentials are longer than [`MAX_BASIC_DECODED_LEN`].
    #[error("the basic credentials decode to more than {max} bytes")]
    BasicTooLong {
        /// The limit.
        max: usize,
    },
    /// The credential does not have the expected shape.
    #[error("malformed credential: {reason}")]
    Malformed {
        /// What is wrong.
        reason: MalformedReason,
    },
    /// The key or token is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The key or token is longer than [`MAX_KEY_LEN`].
    #[error("the key is longer than {max} bytes")]
    KeyTooLong {
        /// The limit.
        max: usize,
    },
    /// Both the `Authorization` header and the query parameter carry a credential.
    #[error("the request carries a credential both in the `Authorization` header and in the `{param}` query parameter")]
    Ambiguous {
        /// The query parameter's name (from the policy).
        param: String,
    },
    /// The query parameter appears more than once.
    #[error("the `{param}` query parameter appears {count} times, expected once")]
    MultipleQueryTokens {
        /// The query parameter's name (from the policy).
        param: String,
        /// How many times it appears.
        count: usize,
    },
    /// The declared workspace header is present but unusable.
    #[error("the `{header}` header {problem}")]
    BadWorkspaceHeader {
        /// The header's name (from the policy).
        header: String,
        /// What is wrong.
        problem: WorkspaceProblem,
    },
}

fn unknown_scheme_message(scheme: Option<&str>) -> String {
    match scheme {
        Some(scheme) => format!("unrecognised authorization scheme `{scheme}`"),
        None => "unrecognised credential".to_owned(),
    }
}

impl CredentialError {
    /// A stable snake_case code for this error, suitable for logs, metrics and JSON bodies.
    pub const fn code(&self) -> &'static str {
        match self {
            CredentialError::Missing => "missing_credential",
            CredentialError::MultipleAuthorization { .. } => "multiple_authorization",
            CredentialError::HeaderTooLong { .. } => "header_too_long",
            CredentialError::NotUtf8 { .. } => "not_utf8",
            CredentialError::InvalidCharacters { .. } => "invalid_characters",
            CredentialError::UnknownScheme { .. } => "unknown_scheme",
            CredentialError::StyleNotAccepted { .. } => "style_not_accepted",
            CredentialError::BadBase64 => "bad_base64",
            CredentialError::BasicTooLong { .. } => "basic_too_long",
            CredentialError::Malformed { .. } => "malformed_credential",
            CredentialError::EmptyKey => "empty_key",
            CredentialError::KeyTooLong { .. } => "key_too_long",
            CredentialError::Ambiguous { .. } => "ambiguous_credential",
            CredentialError::MultipleQueryTokens { .. } => "multiple_query_tokens",
            CredentialError::BadWorkspaceHeader { .. } => "bad_workspace_header",
        }
    }
}

/// Takes the credential from a request's headers and query string (without the leading `?`).
///
/// Checks, in order: at most one `Authorization` header; the query parameter (only when
/// [`Styles::query_param`] is set) at most once; not both; then parses whichever is present;
/// then the workspace header, if declared.
///
/// # Example
///
/// ```
/// use keyward::credential::{extract, Style, Styles};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert(
///     http::header::AUTHORIZATION,
///     http::HeaderValue::from_static("Basic NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAwOg=="),
/// );
/// let styles = Styles { basic_key: true, ..Styles::default() };
/// let presented = extract(&headers, None, &styles).unwrap();
/// assert_eq!(presented.style, Style::BasicKey);
/// assert_eq!(presented.key.expose(), "550e8400-e29b-41d4-a716-446655440000");
/// ```
pub fn extract(
    headers: &HeaderMap,
    query: Option<&str>,
    styles: &Styles,
) -> Result<Presented, CredentialError> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let header = authorization.next();
    if header.is_some() {
        let more = authorization.count();
        if more > 0 {
            return Err(CredentialError::MultipleAuthorization { count: more + 1 });
        }
    }

    let from_query = match (styles.query_param.as_deref(), query) {
        (Some(param), Some(query)) => query_token(query, param)?,
        _ => None,
    };

    let (style, email, key) = match (header, from_query) {
        (Some(_), Some(_)) => {
            return Err(CredentialError::Ambiguous {
                param: styles.query_param.clone().unwrap_or_default(),
            })
        }
        (None, None) => return Err(CredentialError::Missing),
        (None, Some(token)) => {
            check_key(token.expose())?;
            (Style::QueryParam, None, token)
        }
        (Some(value), None) => parse_authorization(value.as_bytes(), styles)?,
    };

    let workspace = match styles.workspace_header.as_deref() {
        Some(name) => workspace(headers, name)?,
        None => None,
    };

    Ok(Presented {
        style,
        email,
        key,
        workspace,
    })
}

/// [`extract`] from a request's head, with the query string taken from its URI.
pub fn extract_from_parts(
    parts: &http::request::Parts,
    styles: &Styles,
) -> Result<Presented, CredentialError> {
    extract(&parts.headers, parts.uri.query(), styles)
}

/// The named parameter's value, if it appears exactly once. It is wrapped in a [`Secret`] at once
/// so that the decoded copy is wiped however this ends.
fn query_token(query: &str, param: &str) -> Result<Option<Secret>, CredentialError> {
    let mut found = None;
    let mut count = 0usize;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == param {
            count += 1;
            if found.is_none() {
                found = Some(Secret::new(value.into_owned()));
            }
        }
    }
    if count > 1 {
        return Err(CredentialError::MultipleQueryTokens {
            param: param.to_owned(),
            count,
        });
    }
    Ok(found)
}

/// Whitespace allowed around and between the parts of an `Authorization` value.
const fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Visible ASCII: `!` to `~`.
const fn is_visible(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// The error for a header value with a byte that is neither visible ASCII nor SP/HTAB, if any.
fn header_char_error(bytes: &[u8]) -> Option<CredentialError> {
    if bytes.iter().all(|&b| is_visible(b) || is_space(b)) {
        return None;
    }
    let part = Part::AuthorizationHeader;
    Some(match std::str::from_utf8(bytes) {
        Err(_) => CredentialError::NotUtf8 { part },
        Ok(_) => CredentialError::InvalidCharacters { part },
    })
}

/// Bits of [`classify`]. `NOT_VISIBLE` is any byte outside `!`..=`~`, SP and HTAB included.
const NOT_VISIBLE: u8 = 1;
const SPACE: u8 = 2;
const URL_SAFE_ONLY: u8 = 4;

/// The [`classify`] bits of one byte, without branches.
#[inline(always)]
const fn class(b: u8) -> u8 {
    // `!` (0x21) to `~` (0x7e) are visible: 0x5e values from 0x21 up.
    let not_visible = (b.wrapping_sub(0x21) >= 0x5e) as u8;
    let space = ((b == b' ') | (b == b'\t')) as u8;
    let url_safe_only = ((b == b'-') | (b == b'_')) as u8;
    (not_visible * NOT_VISIBLE) | (space * SPACE) | (url_safe_only * URL_SAFE_ONLY)
}

/// One pass over a token: whether it has bytes that are not visible ASCII, SP/HTAB, or characters
/// only the URL-safe base64 alphabet has. Written as fixed 16-byte lanes so that the compiler
/// vectorises it: this runs over every `Authorization` header.
fn classify(bytes: &[u8]) -> u8 {
    const LANES: usize = 16;
    let Some(last) = bytes
        .len()
        .checked_sub(LANES)
        .and_then(|at| bytes.get(at..))
    else {
        return bytes.iter().fold(0, |flags, &b| flags | class(b));
    };
    let mut lanes = [0u8; LANES];
    // Full lanes, then the last 16 bytes again (overlapping is harmless for an OR, and reads the
    // input directly instead of a padded copy, which stalls on store forwarding).
    for chunk in bytes.chunks_exact(LANES).chain([last]) {
        for (lane, &b) in lanes.iter_mut().zip(chunk) {
            *lane |= class(b);
        }
    }
    lanes.iter().fold(0, |flags, &lane| flags | lane)
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// The scheme words this crate knows, as it spells them in messages.
const BASIC: &str = "Basic";
const API_TOKEN: &str = "apiToken";
const APIKEY_ORGANIZATION: &str = "APIKEY:ORGANIZATION";
const BEARER: &str = "Bearer";

fn known_scheme(word: &[u8]) -> Option<&'static str> {
    [BASIC, API_TOKEN, APIKEY_ORGANIZATION, BEARER]
        .into_iter()
        .find(|known| known.as_bytes().eq_ignore_ascii_case(word))
}

/// The visible-ASCII bytes of a token as text.
fn ascii_text(bytes: &[u8]) -> Result<&str, CredentialError> {
    // Callers have checked every byte is visible ASCII, so this cannot fail; no unwrap all the same.
    std::str::from_utf8(bytes).map_err(|_| malformed(MalformedReason::KeyCharacters))
}

fn parse_authorization(
    bytes: &[u8],
    styles: &Styles,
) -> Result<(Style, Option<String>, Secret), CredentialError> {
    if bytes.len() > MAX_AUTHORIZATION_LEN {
        return Err(CredentialError::HeaderTooLong {
            len: bytes.len(),
            max: MAX_AUTHORIZATION_LEN,
        });
    }
    // A bad byte anywhere in the header outranks whatever else is wrong; checked here, off the
    // success path, so that a valid header is scanned only once.
    parse_value(bytes, styles).map_err(|e| header_char_error(bytes).unwrap_or(e))
}

/// INVARIANT: returns `Ok` only if every byte of `bytes` is visible ASCII or SP/HTAB: trimmed
/// bytes are SP/HTAB, a matched scheme word is ASCII, the gap after it is SP/HTAB, and the token
/// (or the whole value, for a raw key) is checked by [`classify`].
fn parse_value(
    bytes: &[u8],
    styles: &Styles,
) -> Result<(Style, Option<String>, Secret), CredentialError> {
    let value = trim_spaces(bytes);
    if value.is_empty() {
        return Err(malformed(MalformedReason::EmptyHeader));
    }

    let split = value.iter().position(|&b| is_space(b));
    let Some((word, rest)) = split.and_then(|at| value.split_at_checked(at)) else {
        // A single token: a known scheme with nothing after it, or a raw key.
        if known_scheme(value).is_some() {
            return Err(CredentialError::EmptyKey);
        }
        if classify(value) & NOT_VISIBLE != 0 {
            return Err(CredentialError::InvalidCharacters {
                part: Part::AuthorizationHeader,
            });
        }
        return raw_key(ascii_text(value)?, styles);
    };
    let token = trim_spaces(rest);

    let Some(scheme) = known_scheme(word) else {
        // INVARIANT: a word starting like a raw key is a (broken) key, not a scheme; never echo it.
        let raw_key_like = styles.raw_key.as_ref().is_some_and(|prefixes| {
            prefixes
                .iter()
                .any(|p| !p.is_empty() && word.starts_with(p.as_bytes()))
        });
        return Err(CredentialError::UnknownScheme {
            scheme: if raw_key_like {
                None
            } else {
                echoable_scheme(word)
            },
        });
    };
    let flags = classify(token);
    if flags & SPACE != 0 {
        return Err(malformed(MalformedReason::ExtraToken { scheme }));
    }
    if flags & NOT_VISIBLE != 0 {
        return Err(CredentialError::InvalidCharacters {
            part: Part::AuthorizationHeader,
        });
    }
    let style = match scheme {
        BASIC => return basic(token, flags & URL_SAFE_ONLY != 0, styles),
        API_TOKEN => accepted(Style::ApiToken, styles.api_token)?,
        APIKEY_ORGANIZATION => accepted(Style::ApiKeyOrganization, styles.apikey_organization)?,
        _ => accepted(Style::Bearer, styles.bearer)?,
    };
    Ok((style, None, key(ascii_text(token)?)?))
}

fn accepted(style: Style, enabled: bool) -> Result<Style, CredentialError> {
    if enabled {
        Ok(style)
    } else {
        Err(CredentialError::StyleNotAccepted { style })
    }
}

fn raw_key(
    value: &str,
    styles: &Styles,
) -> Result<(Style, Option<String>, Secret), CredentialError> {
    let matches = match &styles.raw_key {
        None => false,
        Some(prefixes) => {
            prefixes.is_empty() || prefixes.iter().any(|p| value.starts_with(p.as_str()))
        }
    };
    if !matches {
        // INVARIANT: a value without a space may be a key; never echo it.
        return Err(CredentialError::UnknownScheme { scheme: None });
    }
    Ok((Style::RawKey, None, key(value)?))
}

/// The scheme word, if echoing it cannot leak a key sent before a space.
fn echoable_scheme(word: &[u8]) -> Option<String> {
    /// Registered or widespread schemes that contain digits.
    const WITH_DIGITS: [&str; 4] = ["AWS4-HMAC-SHA256", "SCRAM-SHA-1", "SCRAM-SHA-256", "OAuth2"];
    let well_known = WITH_DIGITS
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word));
    let wordlike = word.len() <= MAX_ECHOED_SCHEME_LEN && !word.iter().any(u8::is_ascii_digit);
    if !(well_known || wordlike) || word.iter().any(|&b| !is_visible(b)) {
        return None;
    }
    std::str::from_utf8(word).ok().map(str::to_owned)
}

fn malformed(reason: MalformedReason) -> CredentialError {
    CredentialError::Malformed { reason }
}

/// Checks a key's length and characters.
fn check_key(key: &str) -> Result<(), CredentialError> {
    if key.is_empty() {
        return Err(CredentialError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(CredentialError::KeyTooLong { max: MAX_KEY_LEN });
    }
    if classify(key.as_bytes()) & NOT_VISIBLE != 0 {
        return Err(malformed(MalformedReason::KeyCharacters));
    }
    Ok(())
}

fn key(key: &str) -> Result<Secret, CredentialError> {
    check_key(key)?;
    Ok(Secret::new(key))
}

/// Most Basic credentials decode into this many bytes; only longer ones pay for zeroing the
/// [`MAX_BASIC_DECODED_LEN`] buffer.
const SMALL_BASIC_LEN: usize = 128;

fn basic(
    encoded: &[u8],
    url_safe: bool,
    styles: &Styles,
) -> Result<(Style, Option<String>, Secret), CredentialError> {
    let engine = match (url_safe, encoded.last() == Some(&b'=')) {
        (false, true) => &STANDARD_PADDED,
        (false, false) => &STANDARD_UNPADDED,
        (true, true) => &URL_SAFE_PADDED,
        (true, false) => &URL_SAFE_UNPADDED,
    };
    // The decoder writes at most this many bytes.
    let estimate = base64::decoded_len_estimate(encoded.len());
    let mut small = [0u8; SMALL_BASIC_LEN];
    let mut large;
    let buf: &mut [u8] = if estimate <= SMALL_BASIC_LEN {
        &mut small
    } else {
        large = [0u8; MAX_BASIC_DECODED_LEN];
        &mut large
    };
    let result = match engine.decode_slice(encoded, buf) {
        Ok(len) => match buf.get(..len) {
            Some(decoded) => split_basic(decoded, styles),
            None => Err(CredentialError::BasicTooLong {
                max: MAX_BASIC_DECODED_LEN,
            }),
        },
        Err(DecodeSliceError::OutputSliceTooSmall) => Err(CredentialError::BasicTooLong {
            max: MAX_BASIC_DECODED_LEN,
        }),
        Err(DecodeSliceError::DecodeError(_)) => Err(CredentialError::BadBase64),
    };
    // Wipe the decoded bytes (they hold the key) before the stack frame is reused.
    let written = estimate.min(buf.len());
    if let Some(used) = buf.get_mut(..written) {
        used.zeroize();
    }
    result
}

fn split_basic(
    decoded: &[u8],
    styles: &Styles,
) -> Result<(Style, Option<String>, Secret), CredentialError> {
    let text = std::str::from_utf8(decoded).map_err(|_| CredentialError::NotUtf8 {
        part: Part::BasicCredentials,
    })?;
    // RFC 7617: the user-id cannot contain `:`, the password can.
    let Some((user, password)) = text.split_once(':') else {
        return Err(malformed(MalformedReason::NoColon));
    };
    let at = user.bytes().rposition(|b| b == b'@');
    if let (Some(at), true) = (at, styles.basic_email_key) {
        check_email(user, at)?;
        return Ok((Style::BasicEmailKey, Some(user.to_owned()), key(password)?));
    }
    if styles.basic_email_key
        && password
            .split_once(':')
            .is_some_and(|(rest_of_email, _)| rest_of_email.contains('@'))
    {
        // `a:b@example.org:key` or `"a:b"@example.org:key`, split at the email's own colon.
        return Err(malformed(MalformedReason::ColonInEmail));
    }
    if styles.basic_key {
        return Ok((Style::BasicKey, None, key(user)?));
    }
    Err(CredentialError::StyleNotAccepted {
        style: if at.is_some() {
            Style::BasicEmailKey
        } else {
            Style::BasicKey
        },
    })
}

/// Checks an email whose last `@` is at byte `at`.
fn check_email(email: &str, at: usize) -> Result<(), CredentialError> {
    if email.len() > MAX_EMAIL_LEN {
        return Err(malformed(MalformedReason::EmailTooLong));
    }
    let ascii_control = email.bytes().any(|b| b < 0x20 || b == 0x7f);
    if ascii_control || (!email.is_ascii() && email.chars().any(char::is_control)) {
        return Err(malformed(MalformedReason::EmailCharacters));
    }
    if at == 0 || at + 1 >= email.len() {
        return Err(malformed(MalformedReason::NotAnEmail));
    }
    Ok(())
}

fn workspace(headers: &HeaderMap, name: &str) -> Result<Option<String>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let problem = |problem| CredentialError::BadWorkspaceHeader {
        header: name.to_owned(),
        problem,
    };
    if values.next().is_some() {
        return Err(problem(WorkspaceProblem::Repeated));
    }
    let trimmed = trim_spaces(value.as_bytes());
    if trimmed.is_empty() {
        return Err(problem(WorkspaceProblem::Empty));
    }
    if trimmed.len() > MAX_WORKSPACE_LEN {
        return Err(problem(WorkspaceProblem::TooLong));
    }
    match std::str::from_utf8(trimmed) {
        Ok(text) if classify(trimmed) & (NOT_VISIBLE | SPACE) == 0 => Ok(Some(text.to_owned())),
        _ => Err(problem(WorkspaceProblem::Characters)),
    }
}
