//! The `.policy` parser, written with `nom` 8 over `nom_locate` spans.
//!
//! Parsing never fails as a whole: [`parse`] returns the items it could read and a diagnostic for each
//! definition it could not, then carries on at the next line that starts a definition. Once a keyword
//! commits to a definition, a mistake inside it is a hard failure at that spot (no backtracking), so the
//! message names exactly what was expected there.
//!
//! **Invariant:** the grammar has no recursive rule, so no input can make the parser recurse deeply.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{not, peek, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::sequence::pair;
use nom::{IResult, Parser};
use nom_locate::LocatedSpan;

use super::ast::*;
use crate::diag::{Diagnostic, Span};

/// Input type: the text with its byte offset.
type In<'a> = LocatedSpan<&'a str>;

/// A parse error: where, and what was expected there.
#[derive(Debug)]
struct PErr<'a> {
    at: In<'a>,
    expected: Cow<'static, str>,
}

impl<'a> ParseError<In<'a>> for PErr<'a> {
    fn from_error_kind(input: In<'a>, _kind: ErrorKind) -> Self {
        PErr {
            at: input,
            expected: Cow::Borrowed("valid syntax"),
        }
    }

    fn append(_input: In<'a>, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        if other.at.location_offset() >= self.at.location_offset() {
            other
        } else {
            self
        }
    }
}

type PResult<'a, O> = IResult<In<'a>, O, PErr<'a>>;

/// The words that start a top-level definition; recovery resumes at a line starting with one.
pub const TOP_LEVEL_KEYWORDS: &[&str] = &[
    "scope",
    "action",
    "group",
    "role",
    "self",
    "deny",
    "credentials",
    "keys",
    "unauthenticated",
    "route",
];

/// Longest quoted string accepted, in bytes.
const MAX_STRING: usize = 256;
/// Longest name accepted, in bytes.
const MAX_NAME: usize = 64;

/// Parses a whole policy text. Returns every definition that parsed and a diagnostic per one that did not.
pub fn parse(text: &str) -> (Policy, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut comments = Vec::new();
    let mut scanned = 0;
    let mut diags = Vec::new();
    let mut input = In::new(text);
    loop {
        input = match ws(input) {
            Ok((rest, ())) => rest,
            Err(_) => break,
        };
        if input.fragment().is_empty() {
            break;
        }
        match item(input) {
            Ok((rest, it)) => {
                let end = rest.location_offset();
                for c in comments_in(&text[scanned..end]) {
                    comments.push((items.len(), c));
                }
                scanned = end;
                items.push(it);
                input = rest;
            }
            Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
                diags.push(to_diagnostic(text, &e));
                let resume = recover(
                    text,
                    e.at.location_offset().max(input.location_offset() + 1),
                );
                input = slice_from(text, resume);
            }
            Err(nom::Err::Incomplete(_)) => {
                diags.push(Diagnostic::error(
                    "unexpected end of file",
                    text.len()..text.len(),
                ));
                break;
            }
        }
    }
    if diags.is_empty() {
        for c in comments_in(&text[scanned..]) {
            comments.push((items.len(), c));
        }
    }
    (Policy { items, comments }, diags)
}

/// The `#` comments in a stretch of policy text (outside strings), without the `#` and trimmed.
fn comments_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '\n' => in_string = false,
            '#' if !in_string => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.push(text[i + 1..end].trim().to_string());
                for _ in text[i + 1..end].chars() {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    out
}

/// A span-carrying input starting at byte `offset` of `text`.
fn slice_from(text: &str, offset: usize) -> In<'_> {
    let offset = offset.min(text.len());
    let mut s = In::new(text);
    if offset > 0 {
        if let Ok((rest, _)) =
            nom::bytes::complete::take::<usize, In<'_>, PErr<'_>>(text[..offset].chars().count())(s)
        {
            s = rest;
        }
    }
    s
}

/// The byte offset of the next line (after `from`) that starts with a top-level keyword, or the end.
fn recover(text: &str, from: usize) -> usize {
    let mut pos = from.min(text.len());
    while !text.is_char_boundary(pos) {
        pos += 1;
    }
    loop {
        let Some(nl) = text[pos..].find('\n') else {
            return text.len();
        };
        pos += nl + 1;
        let line = text[pos..].trim_start_matches([' ', '\t']);
        let word: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if TOP_LEVEL_KEYWORDS.contains(&word.as_str()) {
            return pos;
        }
    }
}

fn to_diagnostic(text: &str, e: &PErr<'_>) -> Diagnostic {
    let start = e.at.location_offset().min(text.len());
    let found = describe_token(&text[start..]);
    let (len, found_text) = match found {
        Found::Token(t) => (t.len(), format!("`{t}`")),
        Found::EndOfLine => (0, "the end of the line".to_string()),
        Found::Eof => (0, "the end of the file".to_string()),
    };
    Diagnostic::error(
        format!("expected {}, found {found_text}", e.expected),
        start..start + len,
    )
    .with_label(format!("expected {}", e.expected))
}

enum Found {
    Token(String),
    EndOfLine,
    Eof,
}

/// The token at the start of `rest`, for messages: a word, a string, or one character.
fn describe_token(rest: &str) -> Found {
    let Some(c) = rest.chars().next() else {
        return Found::Eof;
    };
    if c.is_alphanumeric() || c == '_' {
        let w: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        Found::Token(w)
    } else if c == '"' {
        let end = rest[1..].find(['"', '\n']).map_or(rest.len(), |i| i + 2);
        let s = &rest[..end.min(rest.len())];
        let s: String = s.chars().take(40).collect();
        Found::Token(s)
    } else if c == '\n' || c == '\r' {
        Found::EndOfLine
    } else {
        Found::Token(c.to_string())
    }
}

fn span_of(i: &In<'_>, len: usize) -> Span {
    i.location_offset()..i.location_offset() + len
}

/// Turns a recoverable error into a failure: used after a keyword has committed to a definition.
fn must<T>(r: PResult<'_, T>) -> PResult<'_, T> {
    r.map_err(|e| match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    })
}

/// Replaces a recoverable error of `r` with "expected WHAT" at `at`; a committed failure keeps its own.
fn expected<'a, T>(at: In<'a>, what: &'static str, r: PResult<'a, T>) -> PResult<'a, T> {
    r.map_err(|e| match e {
        nom::Err::Error(_) => nom::Err::Error(PErr {
            at,
            expected: Cow::Borrowed(what),
        }),
        other => other,
    })
}

/// Skips whitespace and `#` comments.
fn ws(i: In<'_>) -> PResult<'_, ()> {
    let mut i = i;
    loop {
        let (rest, _) = take_while(|c: char| c.is_whitespace())(i)?;
        i = rest;
        if i.fragment().starts_with('#') {
            let (rest, _) = take_while(|c: char| c != '\n')(i)?;
            i = rest;
        } else {
            return Ok((i, ()));
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// An identifier: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes.
fn ident_raw(i: In<'_>) -> PResult<'_, Name> {
    let (i, _) = ws(i)?;
    let start = i;
    let (rest, word) =
        recognize(pair(take_while1(is_ident_start), take_while(is_ident_char))).parse(i)?;
    if word.fragment().len() > MAX_NAME {
        return Err(nom::Err::Failure(PErr {
            at: start,
            expected: Cow::Owned(format!("a name of at most {MAX_NAME} characters")),
        }));
    }
    Ok((
        rest,
        Name {
            text: word.fragment().to_string(),
            span: span_of(&start, word.fragment().len()),
        },
    ))
}

/// An identifier, with "expected WHAT" on failure.
fn ident<'a>(i: In<'a>, what: &'static str) -> PResult<'a, Name> {
    let at = ws(i)?.0;
    expected(at, what, ident_raw(i))
}

/// The exact keyword `w` (not a prefix of a longer word).
fn kw<'a>(i: In<'a>, w: &'static str) -> PResult<'a, Span> {
    let (i, _) = ws(i)?;
    let start = i;
    let (rest, _) = (tag(w), not(peek(take_while1(is_ident_char)))).parse(i)?;
    Ok((rest, span_of(&start, w.len())))
}

/// The punctuation `c`, with "expected `c`" (or WHAT) on failure.
fn sym<'a>(i: In<'a>, c: char, what: &'static str) -> PResult<'a, ()> {
    let (after_ws, _) = ws(i)?;
    // A missing `;` or `{` is reported at the end of the line that lacks it, not on the next line.
    let skipped = &i.fragment()[..after_ws.location_offset() - i.location_offset()];
    let at = if skipped.contains('\n') { i } else { after_ws };
    let (rest, _) = expected(at, what, char(c).parse(after_ws))?;
    Ok((rest, ()))
}

/// True if the next token is the punctuation `c`.
fn peek_sym(i: In<'_>, c: char) -> bool {
    matches!(ws(i), Ok((rest, ())) if rest.fragment().starts_with(c))
}

/// A double-quoted string without escapes or line breaks, at most 256 bytes.
fn string<'a>(i: In<'a>, what: &'static str) -> PResult<'a, Name> {
    let (i, _) = ws(i)?;
    let start = i;
    let (rest, _) = expected(start, what, char('"').parse(i))?;
    let (rest, body) = take_while(|c: char| c != '"' && c != '\n' && c != '\\')(rest)?;
    if rest.fragment().starts_with('\\') {
        return Err(nom::Err::Failure(PErr {
            at: rest,
            expected: Cow::Borrowed("a closing `\"` (strings have no escapes)"),
        }));
    }
    let (rest, _) = must(expected(rest, "a closing `\"`", char('"').parse(rest)))?;
    if body.fragment().len() > MAX_STRING {
        return Err(nom::Err::Failure(PErr {
            at: start,
            expected: Cow::Owned(format!("a string of at most {MAX_STRING} bytes")),
        }));
    }
    Ok((
        rest,
        Name {
            text: body.fragment().to_string(),
            span: span_of(&start, body.fragment().len() + 2),
        },
    ))
}

/// `NAME (, NAME)*`
fn name_list<'a>(i: In<'a>, what: &'static str) -> PResult<'a, Vec<Name>> {
    let (mut i, first) = ident(i, what)?;
    let mut names = vec![first];
    while peek_sym(i, ',') {
        let (rest, ()) = sym(i, ',', "`,`")?;
        let (rest, n) = must(ident(rest, what))?;
        names.push(n);
        i = rest;
    }
    Ok((i, names))
}

/// `*` or a list of action/group names.
fn action_list(i: In<'_>) -> PResult<'_, ActionList> {
    let (i, _) = ws(i)?;
    if i.fragment().starts_with('*') {
        let span = span_of(&i, 1);
        let (rest, _) = char('*').parse(i)?;
        return Ok((rest, ActionList::All(Loc(span))));
    }
    let (rest, names) = name_list(i, "an action, a group or `*`")?;
    Ok((rest, ActionList::Names(names)))
}

/// Optional `on KIND, ...`.
fn on_kinds(i: In<'_>) -> PResult<'_, Vec<Name>> {
    match kw(i, "on") {
        Ok((rest, _)) => must(name_list(rest, "a scope kind")),
        Err(nom::Err::Error(_)) => Ok((i, Vec::new())),
        Err(e) => Err(e),
    }
}

fn semi(i: In<'_>) -> PResult<'_, ()> {
    must(sym(i, ';', "`;`"))
}

fn item(i: In<'_>) -> PResult<'_, Item> {
    let at = ws(i)?.0;
    let r = alt((
        scope_decl,
        action_decl,
        group_decl,
        role_decl,
        self_decl,
        deny_decl,
        credentials_decl,
        keys_decl,
        unauthenticated_decl,
        route_decl,
    ))
    .parse(i);
    expected(
        at,
        "a definition (`scope`, `action`, `group`, `role`, `self`, `deny`, `credentials`, `keys`, `unauthenticated` or `route`)",
        r,
    )
}

fn scope_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "scope")?;
    let (i, name) = must(ident(i, "a scope kind name"))?;
    let (i, parent) = match kw(i, "under") {
        Ok((rest, _)) => {
            let (rest, p) = must(ident(rest, "the parent scope kind"))?;
            (rest, Some(p))
        }
        Err(nom::Err::Error(_)) => (i, None),
        Err(e) => return Err(e),
    };
    let (i, ()) = must(sym(i, ';', "`under` or `;`"))?;
    Ok((i, Item::Scope(ScopeDecl { name, parent })))
}

fn action_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "action")?;
    let (i, names) = must(name_list(i, "an action name"))?;
    if peek_sym(i, ';') {
        // `action x;` parses; the checker reports the missing `read` or `write` with its own message.
        let (i, ()) = semi(i)?;
        return Ok((
            i,
            Item::Action(ActionDecl {
                names,
                access: None,
            }),
        ));
    }
    let (i, ()) = must(sym(i, ':', "`:` and then `read` or `write`"))?;
    let (i, access) = if let Ok((rest, _)) = kw(i, "read") {
        (rest, Access::Read)
    } else if let Ok((rest, _)) = kw(i, "write") {
        (rest, Access::Write)
    } else {
        let at = ws(i)?.0;
        return Err(nom::Err::Failure(PErr {
            at,
            expected: Cow::Borrowed("`read` or `write`"),
        }));
    };
    let (i, ()) = semi(i)?;
    Ok((
        i,
        Item::Action(ActionDecl {
            names,
            access: Some(access),
        }),
    ))
}

fn group_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "group")?;
    let (i, name) = must(ident(i, "a group name"))?;
    let (i, ()) = must(sym(i, '=', "`=`"))?;
    let (i, members) = must(name_list(i, "an action or group name"))?;
    let (i, ()) = semi(i)?;
    Ok((i, Item::Group(GroupDecl { name, members })))
}

fn role_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "role")?;
    let (i, name) = must(ident(i, "a role name"))?;
    let (i, _) = must(expected(
        ws(i)?.0,
        "`at` and the scope kind the role is bound at",
        kw(i, "at"),
    ))?;
    let (i, kind) = must(ident(i, "a scope kind"))?;
    let (i, observer) = match kw(i, "observer") {
        Ok((rest, _)) => (rest, true),
        Err(_) => (i, false),
    };
    let (i, includes) = match kw(i, "includes") {
        Ok((rest, _)) => must(name_list(rest, "a role name"))?,
        Err(_) => (i, Vec::new()),
    };
    let (mut i, ()) = must(sym(
        i,
        '{',
        if observer {
            "`includes` or `{`"
        } else {
            "`observer`, `includes` or `{`"
        },
    ))?;
    let mut grants = Vec::new();
    loop {
        if peek_sym(i, '}') {
            let (rest, ()) = sym(i, '}', "`}`")?;
            i = rest;
            break;
        }
        let start = ws(i)?.0;
        let (rest, _) = must(expected(start, "`grant` or `}`", kw(i, "grant")))?;
        let (rest, actions) = must(action_list(rest))?;
        let (rest, on) = on_kinds(rest)?;
        let (rest, ()) = must(sym(rest, ';', "`on` or `;`"))?;
        grants.push(Grant {
            actions,
            on,
            span: Loc(start.location_offset()..rest.location_offset()),
        });
        i = rest;
    }
    Ok((
        i,
        Item::Role(RoleDecl {
            name,
            kind,
            observer,
            includes,
            grants,
        }),
    ))
}

fn self_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "self")?;
    let (i, actions) = must(action_list(i))?;
    let (i, _) = must(expected(
        ws(i)?.0,
        "`on` and the account's scope kind",
        kw(i, "on"),
    ))?;
    let (i, kind) = must(ident(i, "a scope kind"))?;
    let (i, ()) = semi(i)?;
    Ok((i, Item::SelfAccess(SelfDecl { actions, kind })))
}

fn deny_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "deny")?;
    let (i, name) = must(ident(i, "the deny rule's name"))?;
    let (i, ()) = must(sym(i, ':', "`:` after the rule's name"))?;
    let (i, actions) = must(action_list(i))?;
    let (i, on) = on_kinds(i)?;
    let (i, ()) = must(sym(i, ';', "`on` or `;`"))?;
    Ok((i, Item::Deny(DenyDecl { name, actions, on })))
}

fn credentials_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, span) = kw(i, "credentials")?;
    let (mut i, ()) = must(sym(i, '{', "`{`"))?;
    let mut styles = Vec::new();
    loop {
        if peek_sym(i, '}') {
            let (rest, ()) = sym(i, '}', "`}`")?;
            i = rest;
            break;
        }
        let (rest, word) = must(ident(i, "a credential style or `}`"))?;
        let sp = Loc(word.span.clone());
        let (rest, style) = match word.text.as_str() {
            "basic" => {
                let (rest, what) = must(ident(rest, "`email_key` or `key`"))?;
                match what.text.as_str() {
                    "email_key" => (rest, CredentialDecl::BasicEmailKey(sp)),
                    "key" => (rest, CredentialDecl::BasicKey(sp)),
                    _ => {
                        return Err(nom::Err::Failure(PErr {
                            at: ws(i)?.0,
                            expected: Cow::Borrowed("`basic email_key` or `basic key`"),
                        }))
                    }
                }
            }
            "api_token" => (rest, CredentialDecl::ApiToken(sp)),
            "query" => {
                let (rest, n) = must(string(rest, "the query parameter's name in quotes"))?;
                (rest, CredentialDecl::Query(n))
            }
            "apikey_organization" => (rest, CredentialDecl::ApiKeyOrganization(sp)),
            "raw_key" => {
                let mut prefixes = Vec::new();
                let mut r = rest;
                while let Ok((after, p)) = string(r, "a key prefix in quotes") {
                    prefixes.push(p);
                    r = after;
                    match sym(r, ',', "`,`") {
                        Ok((after, ())) => r = after,
                        Err(_) => break,
                    }
                }
                (r, CredentialDecl::RawKey(prefixes, sp))
            }
            "bearer" => (rest, CredentialDecl::Bearer(sp)),
            "workspace_header" => {
                let (rest, n) = must(string(rest, "the header's name in quotes"))?;
                (rest, CredentialDecl::WorkspaceHeader(n))
            }
            _ => {
                return Err(nom::Err::Failure(PErr {
                    at: ws(i)?.0,
                    expected: Cow::Borrowed(
                        "a credential style (`basic`, `api_token`, `query`, `apikey_organization`, `raw_key`, `bearer`, `workspace_header`) or `}`",
                    ),
                }))
            }
        };
        let (rest, ()) = semi(rest)?;
        styles.push(style);
        i = rest;
    }
    Ok((
        i,
        Item::Credentials(CredentialsDecl {
            styles,
            span: Loc(span),
        }),
    ))
}

fn keys_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, span) = kw(i, "keys")?;
    let (mut i, ()) = must(sym(i, '{', "`{`"))?;
    let mut rules = Vec::new();
    loop {
        if peek_sym(i, '}') {
            let (rest, ()) = sym(i, '}', "`}`")?;
            i = rest;
            break;
        }
        let (rest, word) = must(ident(i, "a key rule or `}`"))?;
        let (rest, rule) = match word.text.as_str() {
            "prefix" => {
                let (rest, p) = must(string(rest, "the key prefix in quotes"))?;
                (rest, KeyRule::Prefix(p))
            }
            "scope" => {
                let (rest, k) = must(ident(rest, "a scope kind"))?;
                (rest, KeyRule::Scope(k))
            }
            "read_only" => (rest, KeyRule::ReadOnlyByDefault(Loc(word.span.clone()))),
            "manage" => {
                let (rest, a) = must(ident(rest, "an action name"))?;
                (rest, KeyRule::Manage(a))
            }
            _ => {
                return Err(nom::Err::Failure(PErr {
                    at: ws(i)?.0,
                    expected: Cow::Borrowed(
                        "a key rule (`prefix`, `scope`, `read_only`, `manage`) or `}`",
                    ),
                }))
            }
        };
        let (rest, ()) = semi(rest)?;
        rules.push(rule);
        i = rest;
    }
    Ok((
        i,
        Item::Keys(KeysDecl {
            rules,
            span: Loc(span),
        }),
    ))
}

fn unauthenticated_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "unauthenticated")?;
    if let Ok((rest, _)) = kw(i, "redirect") {
        let (rest, target) = must(string(rest, "the redirect target in quotes"))?;
        let (rest, ()) = semi(rest)?;
        return Ok((
            rest,
            Item::Unauthenticated(UnauthenticatedDecl::Redirect(target)),
        ));
    }
    let (i, _) = must(expected(
        ws(i)?.0,
        "`status` or `redirect`",
        kw(i, "status"),
    ))?;
    let at = ws(i)?.0;
    let (rest, digits) = must(expected(at, "an HTTP status code", digit1(at)))?;
    let code: u16 = digits.fragment().parse().unwrap_or(0);
    let (rest, ()) = semi(rest)?;
    Ok((
        rest,
        Item::Unauthenticated(UnauthenticatedDecl::Status(
            code,
            Loc(span_of(&at, digits.fragment().len())),
        )),
    ))
}

fn route_decl(i: In<'_>) -> PResult<'_, Item> {
    let (i, _) = kw(i, "route")?;
    let (i, method) = {
        let (after, _) = ws(i)?;
        if after.fragment().starts_with('*') {
            let span = span_of(&after, 1);
            let (rest, _) = char('*').parse(after)?;
            (
                rest,
                Name {
                    text: "*".to_string(),
                    span,
                },
            )
        } else {
            must(ident(i, "an HTTP method such as `GET`, or `*`"))?
        }
    };
    let (i, path) = must(string(i, "the path in quotes, e.g. `\"/api/orgs/{org}\"`"))?;
    let (i, _) = must(expected(ws(i)?.0, "`=>`", tag("=>").parse(ws(i)?.0)))?;
    let (i, action) = must(ident(i, "an action name"))?;
    let (i, _) = must(expected(
        ws(i)?.0,
        "`on` and the resource in quotes",
        kw(i, "on"),
    ))?;
    let (i, resource) = must(string(
        i,
        "the resource in quotes, e.g. `\"organization:{org}\"`",
    ))?;
    let (i, ()) = semi(i)?;
    Ok((
        i,
        Item::Route(RouteDecl {
            method,
            path,
            action,
            resource,
        }),
    ))
}
