//! The formatter and the parser agree: for every syntax tree, `syntax::parse(format(p)) == p` with no
//! diagnostic, and formatting is idempotent on the bundled policies.

use keyward::policy::ast::*;
use keyward::policy::format::format;
use keyward::policy::{syntax, Policy as Checked};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Name> {
    // Identifiers, including the language's own words: they are only keywords where one is expected.
    prop_oneof![
        4 => "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
        1 => "[a-z_][a-z0-9_]{60,63}",
        1 => prop::sample::select(vec![
            "scope", "under", "action", "read", "write", "group", "role", "at", "observer",
            "includes", "grant", "on", "self", "deny", "credentials", "keys", "basic", "key",
            "unauthenticated", "status", "redirect", "prefix", "read_only", "manage", "_",
        ])
        .prop_map(str::to_string),
    ]
    .prop_map(Name::new)
}

/// A quoted string's content: anything on one line but `"` and `\`.
fn string() -> impl Strategy<Value = Name> {
    "[ !#-\\[\\]-~é#]{0,24}".prop_map(Name::new)
}

fn names(max: usize) -> impl Strategy<Value = Vec<Name>> {
    prop::collection::vec(name(), 1..=max)
}

fn action_list() -> impl Strategy<Value = ActionList> {
    prop_oneof![
        1 => Just(ActionList::All(Loc::default())),
        4 => names(4).prop_map(ActionList::Names),
    ]
}

fn grant() -> impl Strategy<Value = Grant> {
    (action_list(), prop::collection::vec(name(), 0..3)).prop_map(|(actions, on)| Grant {
        actions,
        on,
        span: Loc::default(),
    })
}

fn credential() -> impl Strategy<Value = CredentialDecl> {
    let l = || Just(Loc::default());
    prop_oneof![
        l().prop_map(CredentialDecl::BasicEmailKey),
        l().prop_map(CredentialDecl::BasicKey),
        l().prop_map(CredentialDecl::ApiToken),
        string().prop_map(CredentialDecl::Query),
        l().prop_map(CredentialDecl::ApiKeyOrganization),
        prop::collection::vec(string(), 0..3)
            .prop_map(|p| CredentialDecl::RawKey(p, Loc::default())),
        l().prop_map(CredentialDecl::Bearer),
        string().prop_map(CredentialDecl::WorkspaceHeader),
    ]
}

fn key_rule() -> impl Strategy<Value = KeyRule> {
    prop_oneof![
        string().prop_map(KeyRule::Prefix),
        name().prop_map(KeyRule::Scope),
        Just(KeyRule::ReadOnlyByDefault(Loc::default())),
        name().prop_map(KeyRule::Manage),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (name(), prop::option::of(name()))
            .prop_map(|(name, parent)| Item::Scope(ScopeDecl { name, parent })),
        (
            names(4),
            prop::option::of(prop_oneof![Just(Access::Read), Just(Access::Write)])
        )
            .prop_map(|(names, access)| Item::Action(ActionDecl { names, access })),
        (name(), names(4)).prop_map(|(name, members)| Item::Group(GroupDecl { name, members })),
        (
            name(),
            name(),
            any::<bool>(),
            prop::collection::vec(name(), 0..3),
            prop::collection::vec(grant(), 0..4)
        )
            .prop_map(|(name, kind, observer, includes, grants)| {
                Item::Role(RoleDecl {
                    name,
                    kind,
                    observer,
                    includes,
                    grants,
                })
            }),
        (action_list(), name())
            .prop_map(|(actions, kind)| Item::SelfAccess(SelfDecl { actions, kind })),
        (name(), action_list(), prop::collection::vec(name(), 0..3))
            .prop_map(|(name, actions, on)| Item::Deny(DenyDecl { name, actions, on })),
        prop::collection::vec(credential(), 0..5).prop_map(|styles| {
            Item::Credentials(CredentialsDecl {
                styles,
                span: Loc::default(),
            })
        }),
        prop::collection::vec(key_rule(), 0..5).prop_map(|rules| Item::Keys(KeysDecl {
            rules,
            span: Loc::default()
        })),
        (0u16..1000)
            .prop_map(|c| Item::Unauthenticated(UnauthenticatedDecl::Status(c, Loc::default()))),
        string().prop_map(|n| Item::Unauthenticated(UnauthenticatedDecl::Redirect(n))),
        (
            prop_oneof![name(), Just(Name::new("*"))],
            string(),
            name(),
            string()
        )
            .prop_map(|(method, path, action, resource)| Item::Route(RouteDecl {
                method,
                path,
                action,
                resource,
            })),
    ]
}

/// A comment's text as the parser keeps it: one line, trimmed.
fn comment() -> impl Strategy<Value = String> {
    "[ -~é]{0,30}".prop_map(|s| s.trim().to_string())
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::collection::vec(item(), 0..12).prop_flat_map(|items| {
        let n = items.len();
        prop::collection::vec((0..=n, comment()), 0..6).prop_map(move |mut comments| {
            comments.sort_by_key(|(i, _)| *i);
            Policy {
                items: items.clone(),
                comments,
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_format_is_identity(p in policy()) {
        let text = format(&p);
        let (back, diags) = syntax::parse(&text);
        prop_assert!(diags.is_empty(), "diagnostics on formatted text:\n{}\n{:?}", text, diags);
        prop_assert_eq!(&back, &p, "formatted text:\n{}", text);
        prop_assert_eq!(format(&back), text);
    }
}

#[test]
fn format_is_idempotent_on_bundled_policies() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().is_none_or(|e| e != "policy") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let policy = Checked::parse(&path.display().to_string(), &text)
            .unwrap_or_else(|r| panic!("{}", r.render()));
        let once = policy.formatted();
        let twice = Checked::parse("<formatted>", &once)
            .unwrap_or_else(|r| panic!("{}", r.render()))
            .formatted();
        assert_eq!(once, twice, "{}", path.display());
        // Same meaning, comments included.
        let (reparsed, diags) = syntax::parse(&once);
        assert!(diags.is_empty());
        assert_eq!(reparsed, policy.ast, "{}", path.display());
        seen += 1;
    }
    assert_eq!(seen, 4, "expected the four bundled policies in {dir}");
}

/// Pieces of policy text, glued at random: the parser and checker must never panic, and every
/// diagnostic must point inside the text.
fn noisy_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "scope ",
            "under ",
            "action ",
            ": read",
            ": write",
            "group ",
            " = ",
            "role ",
            " at ",
            " observer",
            " includes ",
            "{",
            "}",
            "grant ",
            " on ",
            "self ",
            "deny ",
            "credentials ",
            "keys ",
            "unauthenticated ",
            "status ",
            "redirect ",
            "basic ",
            "email_key",
            "raw_key ",
            "query ",
            "prefix ",
            "manage ",
            "read_only",
            ";",
            ",",
            "*",
            "\n",
            "    ",
            "#",
            "\"",
            "\\",
            "é",
            "\u{0}",
            "\r\n",
            "401",
            "a",
            "b",
            "organization",
            "project",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,5}",
        "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_and_spans_stay_inside(text in noisy_text()) {
        let (_, diags) = syntax::parse(&text);
        for d in &diags {
            prop_assert!(d.span.start <= d.span.end && d.span.end <= text.len(), "{:?}", d);
            prop_assert!(text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end));
        }
        match Checked::parse("<noise>", &text) {
            Ok(p) => {
                // Whatever loads also formats to text that loads to the same tree.
                let (again, diags) = syntax::parse(&p.formatted());
                prop_assert!(diags.is_empty());
                prop_assert_eq!(again, p.ast);
            }
            Err(r) => {
                prop_assert!(r.has_errors());
                prop_assert!(!r.render().is_empty());
            }
        }
    }
}
