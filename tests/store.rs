//! Key table and key token tests, through the public API only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keyward::store::{
    decode, encode, Actor, AuditQuery, KeyKind, KeyRecord, KeyTable, NewDenial, NewKey,
    NewPrincipal, Op, PendingDenials, PrincipalId, PrincipalKind, StoreError, StoreOptions,
    Workspace, DENIAL_PATH_MAX, DENIAL_QUEUE_MAX, FORMAT_VERSION, LAYOUT_VERSION,
};
use keyward::token::{
    classify, display_prefix, Hasher, KeyFormat, KeyHash, Secret, TokenError, TokenShape,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SEED_KEY: &str = "b58f12c358606163c7ff1e55122c7517fd32af4b";
const SEATS_KEY: &str = "550e8400-e29b-41d4-a716-446655440000";
const FAR: u64 = 4_000_000_000;

fn table() -> KeyTable {
    match KeyTable::temporary(StoreOptions::default()) {
        Ok(t) => t,
        Err(e) => unreachable!("temporary table: {e}"),
    }
}

fn user(t: &KeyTable, login: &str) -> Result<PrincipalId, StoreError> {
    t.add_principal(
        Actor::Cli,
        NewPrincipal {
            kind: PrincipalKind::User,
            login: login.to_owned(),
            default_workspace: None,
        },
    )
    .map(|p| p.id)
}

fn all_audit(t: &KeyTable) -> Result<Vec<keyward::store::AuditEntry>, StoreError> {
    t.audit(AuditQuery {
        principal: None,
        limit: usize::MAX,
        before: None,
    })
}

// ----- tokens -----

#[test]
fn classify_table() -> TestResult {
    let format = KeyFormat::default();
    let good = format.generate()?;
    let good = good.expose().to_owned();
    // Flip one checksum character.
    let mut bad_check = good.clone();
    let last = bad_check.pop().ok_or("empty key")?;
    bad_check.push(if last == 'A' { 'B' } else { 'A' });
    // Flip one random character (the checksum then no longer matches).
    let mut bad_random = good.clone().into_bytes();
    if let Some(b) = bad_random.get_mut(5) {
        *b = if *b == b'x' { b'y' } else { b'x' };
    }
    let bad_random = String::from_utf8(bad_random)?;
    let too_long = "a".repeat(513);
    let long_generated = format!("{good}x");
    let cases: Vec<(&str, &str, Result<TokenShape, TokenError>)> = vec![
        ("generated", &good, Ok(TokenShape::Generated)),
        ("bad checksum", &bad_check, Err(TokenError::BadChecksum)),
        (
            "changed random part",
            &bad_random,
            Err(TokenError::BadChecksum),
        ),
        (
            "short after prefix",
            "kw_abc",
            Err(TokenError::Malformed {
                reason: "it does not have 28 characters after the prefix",
            }),
        ),
        (
            "long after prefix",
            &long_generated,
            Err(TokenError::Malformed {
                reason: "it does not have 28 characters after the prefix",
            }),
        ),
        (
            "non-base62 after prefix",
            "kw_aaaaaaaaaaaaaaaaaaaaaaaaaaa-",
            Err(TokenError::Malformed {
                reason: "only base62 characters may follow the prefix",
            }),
        ),
        ("SEED hex", SEED_KEY, Ok(TokenShape::Opaque)),
        ("seats.io uuid", SEATS_KEY, Ok(TokenShape::Opaque)),
        ("orgkey", "orgkey-1234abcd", Ok(TokenShape::Opaque)),
        ("empty", "", Err(TokenError::Empty)),
        ("space", "abc def", Err(TokenError::InvalidChar { at: 3 })),
        (
            "leading space",
            " abc",
            Err(TokenError::InvalidChar { at: 0 }),
        ),
        ("tab", "abc\t", Err(TokenError::InvalidChar { at: 3 })),
        ("newline", "abc\n", Err(TokenError::InvalidChar { at: 3 })),
        ("nul", "a\0", Err(TokenError::InvalidChar { at: 1 })),
        (
            "unicode space",
            "a\u{3000}b",
            Err(TokenError::InvalidChar { at: 1 }),
        ),
        ("too long", &too_long, Err(TokenError::TooLong { len: 513 })),
        ("max length", &too_long[..512], Ok(TokenShape::Opaque)),
    ];
    for (name, token, expected) in cases {
        assert_eq!(classify(token, &format), expected, "case {name}");
    }
    Ok(())
}

#[test]
fn generated_keys_have_the_documented_shape() -> TestResult {
    let format = KeyFormat::new("acme-")?;
    let key = format.generate()?;
    let k = key.expose();
    assert!(k.starts_with("acme-"));
    assert_eq!(k.len(), 5 + 22 + 6);
    assert!(k["acme-".len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(classify(k, &format)?, TokenShape::Generated);
    // With the default format the same key is opaque (other prefix).
    assert_eq!(classify(k, &KeyFormat::default())?, TokenShape::Opaque);
    // Two keys differ.
    assert_ne!(format.generate()?.expose(), k);
    Ok(())
}

#[test]
fn key_prefix_validation() {
    for (prefix, ok) in [
        ("kw_", true),
        ("a", true),
        ("orgkey-", true),
        ("0123456789abcdef", true),
        ("0123456789abcdefg", false),
        ("", false),
        ("kw ", false),
        ("kw.", false),
        ("kw\u{e9}_", false),
    ] {
        assert_eq!(KeyFormat::new(prefix).is_ok(), ok, "prefix {prefix:?}");
    }
    let err = KeyFormat::new("a b").err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("invalid key prefix `a b`: only `A-Z`, `a-z`, `0-9`, `_` and `-` are allowed")
    );
}

#[test]
fn secrets_and_hashes_redact_themselves() {
    let s = Secret::new("kw_supersecretvalue");
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    assert_eq!(format!("{s}"), "<redacted>");
    let h = Hasher::new(Some([7; 32]));
    assert!(!format!("{h:?}").contains('7'));
    let kh = KeyHash([0x12; 32]);
    assert_eq!(format!("{kh:?}"), "KeyHash(12121212..)");
}

#[test]
fn pepper_changes_the_hash() {
    let plain = Hasher::new(None);
    let a = Hasher::new(Some([1; 32]));
    let b = Hasher::new(Some([2; 32]));
    assert_eq!(plain.hash(SEED_KEY), plain.hash(SEED_KEY));
    assert_ne!(plain.hash(SEED_KEY), a.hash(SEED_KEY));
    assert_ne!(a.hash(SEED_KEY), b.hash(SEED_KEY));
    assert_eq!(
        plain.hash(SEED_KEY).0,
        *blake3::hash(SEED_KEY.as_bytes()).as_bytes()
    );
}

#[test]
fn pepper_applies_to_the_table() -> TestResult {
    let t = KeyTable::temporary(StoreOptions {
        pepper: Some([9; 32]),
        key_format: KeyFormat::default(),
        ..StoreOptions::default()
    })?;
    let owner = user(&t, "a@example.org")?;
    let rec = t.import_key(Actor::Cli, NewKey::new(owner, "k"), SEED_KEY)?;
    assert_eq!(rec.hash, Hasher::new(Some([9; 32])).hash(SEED_KEY));
    assert_ne!(rec.hash, Hasher::new(None).hash(SEED_KEY));
    assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_some());
    assert!(t.key_by_hash(&Hasher::new(None).hash(SEED_KEY))?.is_none());
    Ok(())
}

#[test]
fn display_prefix_never_reveals_much() {
    assert_eq!(
        display_prefix("kw_AbC1xYZ", TokenShape::Generated),
        "kw_AbC1x"
    );
    assert_eq!(display_prefix(SEED_KEY, TokenShape::Opaque), "b58f12c3");
    assert_eq!(display_prefix("short-secret", TokenShape::Opaque), "sho");
    assert_eq!(display_prefix("abc", TokenShape::Opaque), "");
}

// ----- principals -----

#[test]
fn principals_and_case_insensitive_logins() -> TestResult {
    let t = table();
    let id = user(&t, "User@SEED-platform.org")?;
    let p = t.principal(id)?.ok_or("missing principal")?;
    assert_eq!(p.login, "User@SEED-platform.org");
    assert_eq!(p.kind, PrincipalKind::User);
    for login in [
        "user@seed-platform.org",
        "USER@SEED-PLATFORM.ORG",
        "User@SEED-platform.org",
    ] {
        assert_eq!(
            t.principal_by_login(login)?.map(|p| p.id),
            Some(id),
            "{login}"
        );
    }
    assert!(t.principal_by_login("other@seed-platform.org")?.is_none());
    match user(&t, "USER@seed-platform.ORG") {
        Err(StoreError::Conflict { what }) => {
            assert_eq!(what, "login `USER@seed-platform.ORG` is taken")
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let second = user(&t, "b@example.org")?;
    assert_eq!(second, id + 1);
    let listed: Vec<_> = t.list_principals()?.into_iter().map(|p| p.id).collect();
    assert_eq!(listed, vec![id, second]);
    Ok(())
}

#[test]
fn invalid_logins_are_rejected() {
    let t = table();
    for login in ["", "a b", "a\tb", "a\u{7f}", &"x".repeat(255)] {
        assert!(
            matches!(
                user(&t, login),
                Err(StoreError::InvalidName { what: "login", .. })
            ),
            "{login:?}"
        );
    }
}

#[test]
fn remove_principal_removes_keys_and_bindings() -> TestResult {
    let t = table();
    let a = user(&t, "a@example.org")?;
    let b = user(&t, "b@example.org")?;
    let (k1, s1) = t.create_key(Actor::Cli, NewKey::new(a, "one"))?;
    let k2 = t.import_key(Actor::Cli, NewKey::new(a, "two"), SEED_KEY)?;
    let (kb, _) = t.create_key(Actor::Cli, NewKey::new(b, "one"))?;
    t.bind(Actor::Cli, a, "owner", "organization:6")?;
    t.bind(Actor::Cli, b, "viewer", "organization:6")?;
    let removed = t.remove_principal(Actor::Cli, a)?;
    assert_eq!(removed.id, a);
    assert!(t.principal(a)?.is_none());
    assert!(t.principal_by_login("a@example.org")?.is_none());
    assert!(t.key(k1.id)?.is_none());
    assert!(t.key(k2.id)?.is_none());
    assert!(t.key_by_hash(&t.hash(s1.expose()))?.is_none());
    assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_none());
    assert!(t.bindings_of(a)?.is_empty());
    assert!(matches!(
        t.keys_of(a),
        Err(StoreError::NotFound {
            what: "principal",
            ..
        })
    ));
    // The other principal is untouched.
    assert_eq!(t.keys_of(b)?.len(), 1);
    assert_eq!(t.key(kb.id)?.map(|k| k.owner), Some(b));
    assert_eq!(t.bindings_of(b)?.len(), 1);
    // The login and the key secret can be reused.
    let a2 = user(&t, "A@example.org")?;
    t.import_key(Actor::Cli, NewKey::new(a2, "two"), SEED_KEY)?;
    match t.remove_principal(Actor::Cli, 999) {
        Err(StoreError::NotFound {
            what: "principal",
            id,
        }) => assert_eq!(id, "999"),
        other => return Err(format!("expected not found, got {other:?}").into()),
    }
    Ok(())
}

// ----- keys -----

#[test]
fn create_and_look_up_keys() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let mut new = NewKey::new(owner, "ci deploy");
    new.read_only = true;
    new.permissions = Some(vec!["view".into(), "scene.update".into()]);
    new.scope = Some("organization:6/project:2".into());
    new.expires_at = Some(FAR);
    let (rec, secret) = t.create_key(Actor::Principal(owner), new)?;
    assert_eq!(
        classify(secret.expose(), t.key_format())?,
        TokenShape::Generated
    );
    assert_eq!(rec.owner, owner);
    assert_eq!(rec.name, "ci deploy");
    assert!(rec.active && rec.read_only && !rec.imported);
    assert_eq!(rec.expires_at, Some(FAR));
    assert_eq!(rec.display_prefix, secret.expose()[..8]);
    assert_eq!(rec.hash, t.hash(secret.expose()));
    assert_eq!(t.key(rec.id)?.as_ref(), Some(&rec));
    assert_eq!(t.key_by_hash(&rec.hash)?.as_ref(), Some(&rec));
    assert_eq!(t.keys_of(owner)?, vec![rec.clone()]);
    assert_eq!(t.list_keys()?, vec![rec.clone()]);
    assert!(t.key_by_hash(&t.hash("kw_nope"))?.is_none());
    assert!(t.key(rec.id + 1)?.is_none());
    Ok(())
}

#[test]
fn import_keys_of_every_shape() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let generated = t.key_format().generate()?;
    for (name, secret) in [
        ("seed", SEED_KEY),
        ("seats", SEATS_KEY),
        ("orgkey", "orgkey-0123456789abcdef0123"),
        ("generated", generated.expose()),
    ] {
        let rec = t.import_key(Actor::Cli, NewKey::new(owner, name), secret)?;
        assert!(rec.imported);
        assert_eq!(t.key_by_hash(&t.hash(secret))?.map(|r| r.id), Some(rec.id));
    }
    // Duplicate secret under another name.
    match t.import_key(Actor::Cli, NewKey::new(owner, "again"), SEED_KEY) {
        Err(StoreError::Conflict { what }) => {
            assert_eq!(what, "a key with the same secret already exists")
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    // Bad tokens.
    let bad = [
        ("", StoreError::Token(TokenError::Empty)),
        ("a b", StoreError::Token(TokenError::InvalidChar { at: 1 })),
        (
            "kw_AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            StoreError::Token(TokenError::BadChecksum),
        ),
    ];
    for (secret, expected) in bad {
        let got = t.import_key(Actor::Cli, NewKey::new(owner, "bad"), secret);
        assert_eq!(
            got.err().map(|e| e.to_string()),
            Some(expected.to_string()),
            "{secret:?}"
        );
    }
    Ok(())
}

#[test]
fn key_input_validation() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let long_name = "n".repeat(101);
    let cases: Vec<(&str, NewKey, &str)> =
        vec![
        ("empty name", NewKey::new(owner, ""), "invalid key name ``: it is empty"),
        (
            "long name",
            NewKey::new(owner, long_name.as_str()),
            "it is longer than 100 characters",
        ),
        (
            "control name",
            NewKey::new(owner, "a\u{1}b"),
            "invalid key name `a\\u{1}b`: it holds a control character",
        ),
        ("unknown owner", NewKey::new(77, "k"), "principal `77` not found"),
        (
            "bad scope",
            NewKey {
                scope: Some("Organization:6".into()),
                ..NewKey::new(owner, "k")
            },
            "invalid scope `Organization:6`: the kind of segment 1 must match `[a-z_][a-z0-9_]*`",
        ),
        (
            "bad permission",
            NewKey {
                permissions: Some(vec!["view all".into()]),
                ..NewKey::new(owner, "k")
            },
            "invalid permission `view all`",
        ),
        (
            "duplicate permission",
            NewKey {
                permissions: Some(vec!["view".into(), "view".into()]),
                ..NewKey::new(owner, "k")
            },
            "invalid permission `view`: it is listed twice",
        ),
        (
            "past expiry",
            NewKey {
                expires_at: Some(1),
                ..NewKey::new(owner, "k")
            },
            "invalid expiry 1: it is not in the future",
        ),
    ];
    for (name, new, message) in cases {
        let err = t.create_key(Actor::Cli, new).err().map(|e| e.to_string());
        let err = err.ok_or(format!("case {name}: no error"))?;
        assert!(err.contains(message), "case {name}: {err}");
    }
    assert!(t.list_keys()?.is_empty());
    assert_eq!(t.seq(), 1, "failed mutations commit nothing");
    Ok(())
}

#[test]
fn scope_syntax_table() -> TestResult {
    let t = table();
    let p = user(&t, "a@example.org")?;
    let long_id = format!("project:{}", "x".repeat(129));
    let long_total = vec!["a:b"; 300].join("/");
    let cases = [
        ("organization:6", None),
        ("domain:1/organization:6/project:2/scene:abc-DEF_1", None),
        ("_x:1", None),
        ("organization:a:b", None),
        ("", Some("it is empty")),
        (
            "organization",
            Some("segment 1 is not of the form `kind:id`"),
        ),
        (
            "organization:6/",
            Some("segment 2 is not of the form `kind:id`"),
        ),
        ("organization:", Some("the id of segment 1 is empty")),
        ("9org:1", Some("the kind of segment 1 must match")),
        ("org-x:1", Some("the kind of segment 1 must match")),
        ("org:1 2", Some("the id of segment 1 holds whitespace")),
        (
            long_id.as_str(),
            Some("the id of segment 1 is longer than 128 characters"),
        ),
        (long_total.as_str(), Some("more than the 1024 allowed")),
    ];
    for (scope, expected) in cases {
        let got = t.bind(Actor::Cli, p, "viewer", scope);
        match (expected, got) {
            (None, Ok(b)) => assert_eq!(b.scope, scope),
            (Some(reason), Err(StoreError::InvalidScope { reason: r, .. })) => {
                assert!(r.contains(reason), "{scope}: {r}")
            }
            (e, g) => return Err(format!("{scope}: expected {e:?}, got {g:?}").into()),
        }
    }
    Ok(())
}

#[test]
fn names_are_unique_per_owner() -> TestResult {
    let t = table();
    let a = user(&t, "a@example.org")?;
    let b = user(&t, "b@example.org")?;
    let (ka, _) = t.create_key(Actor::Cli, NewKey::new(a, "prod"))?;
    t.create_key(Actor::Cli, NewKey::new(b, "prod"))?;
    match t.create_key(Actor::Cli, NewKey::new(a, "prod")) {
        Err(StoreError::Conflict { what }) => {
            assert_eq!(
                what,
                format!("principal {a} already has a key named `prod`")
            )
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    // Names are case-sensitive and exact.
    t.create_key(Actor::Cli, NewKey::new(a, "Prod"))?;
    // Renaming to a taken name fails; to a free one works and frees the old name.
    assert!(matches!(
        t.rename_key(Actor::Cli, ka.id, "Prod"),
        Err(StoreError::Conflict { .. })
    ));
    let renamed = t.rename_key(Actor::Cli, ka.id, "production")?;
    assert_eq!(renamed.name, "production");
    assert_eq!(t.key(ka.id)?.map(|k| k.name), Some("production".into()));
    t.create_key(Actor::Cli, NewKey::new(a, "prod"))?;
    // Renaming to the same name is a no-op.
    let seq = t.seq();
    t.rename_key(Actor::Cli, ka.id, "production")?;
    assert_eq!(t.seq(), seq);
    // Deleting frees the name.
    t.delete_key(Actor::Cli, ka.id)?;
    t.create_key(Actor::Cli, NewKey::new(a, "production"))?;
    Ok(())
}

#[test]
fn deactivate_activate_expire_delete() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let (rec, secret) = t.create_key(Actor::Cli, NewKey::new(owner, "k"))?;
    let off = t.set_key_active(Actor::Cli, rec.id, false)?;
    assert!(!off.active);
    assert_eq!(
        t.key_by_hash(&t.hash(secret.expose()))?.map(|k| k.active),
        Some(false)
    );
    let seq = t.seq();
    t.set_key_active(Actor::Cli, rec.id, false)?;
    assert_eq!(t.seq(), seq, "no-op is not a change");
    assert!(t.set_key_active(Actor::Cli, rec.id, true)?.active);
    assert_eq!(
        t.set_key_expiry(Actor::Cli, rec.id, Some(FAR))?.expires_at,
        Some(FAR)
    );
    assert_eq!(t.set_key_expiry(Actor::Cli, rec.id, None)?.expires_at, None);
    assert_eq!(
        t.set_key_expiry(Actor::Cli, rec.id, Some(5))?.expires_at,
        Some(5)
    );
    let deleted = t.delete_key(Actor::Cli, rec.id)?;
    assert_eq!(deleted.id, rec.id);
    assert!(t.key(rec.id)?.is_none());
    assert!(t.key_by_hash(&rec.hash)?.is_none());
    assert!(t.keys_of(owner)?.is_empty());
    for result in [
        t.delete_key(Actor::Cli, rec.id).map(|_| ()),
        t.set_key_active(Actor::Cli, rec.id, true).map(|_| ()),
        t.set_key_expiry(Actor::Cli, rec.id, None).map(|_| ()),
        t.rename_key(Actor::Cli, rec.id, "x").map(|_| ()),
        t.rotate_key(Actor::Cli, rec.id, FAR).map(|_| ()),
        t.regenerate_key(Actor::Cli, rec.id).map(|_| ()),
    ] {
        match result {
            Err(StoreError::NotFound { what: "key", id }) => assert_eq!(id, rec.id.to_string()),
            other => return Err(format!("expected not found, got {other:?}").into()),
        }
    }
    Ok(())
}

#[test]
fn rotate_keeps_the_old_key_until_the_window_ends() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let new = NewKey {
        permissions: Some(vec!["view".into()]),
        scope: Some("organization:6".into()),
        read_only: true,
        kind: KeyKind::Admin,
        expires_at: Some(FAR),
        ..NewKey::new(owner, "prod")
    };
    let (old, old_secret) = t.create_key(Actor::Cli, new)?;
    let until = FAR - 1000;
    let (new, new_secret) = t.rotate_key(Actor::Cli, old.id, until)?;
    assert_ne!(new.id, old.id);
    assert_ne!(new_secret.expose(), old_secret.expose());
    assert_eq!(new.name, "prod");
    assert_eq!(new.permissions, old.permissions);
    assert_eq!(new.scope, old.scope);
    assert_eq!(new.kind, KeyKind::Admin);
    assert!(new.read_only && new.active && !new.imported);
    assert_eq!(
        new.expires_at,
        Some(FAR),
        "rotation never extends a lifetime"
    );
    let old_now = t
        .key_by_hash(&t.hash(old_secret.expose()))?
        .ok_or("old key gone")?;
    assert_eq!(old_now.expires_at, Some(until));
    assert_eq!(old_now.rotated_to, Some(new.id));
    assert_eq!(
        t.key_by_hash(&t.hash(new_secret.expose()))?.map(|k| k.id),
        Some(new.id)
    );
    // The name belongs to the new key now: renames and new keys see it as taken.
    assert!(matches!(
        t.create_key(Actor::Cli, NewKey::new(owner, "prod")),
        Err(StoreError::Conflict { .. })
    ));
    // The old key cannot be rotated or regenerated again.
    match t.rotate_key(Actor::Cli, old.id, until) {
        Err(StoreError::Conflict { what }) => assert_eq!(
            what,
            format!("key {} was already rotated to key {}", old.id, new.id)
        ),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    assert!(matches!(
        t.regenerate_key(Actor::Cli, old.id),
        Err(StoreError::Conflict { .. })
    ));
    // Deleting the old key keeps the new key's name.
    t.delete_key(Actor::Cli, old.id)?;
    assert!(matches!(
        t.create_key(Actor::Cli, NewKey::new(owner, "prod")),
        Err(StoreError::Conflict { .. })
    ));
    // The window takes the earlier of the existing expiry and the requested end.
    let (r, _) = t.rotate_key(Actor::Cli, new.id, FAR + 50)?;
    assert_eq!(t.key(new.id)?.and_then(|k| k.expires_at), Some(FAR));
    assert_eq!(r.expires_at, Some(FAR));
    Ok(())
}

#[test]
fn regenerate_replaces_at_once() -> TestResult {
    let t = table();
    let owner = user(&t, "user@seed-platform.org")?;
    let old = t.import_key(Actor::Cli, NewKey::new(owner, "api"), SEED_KEY)?;
    t.set_key_active(Actor::Cli, old.id, false)?;
    let (new, secret) = t.regenerate_key(Actor::Cli, old.id)?;
    assert!(t.key(old.id)?.is_none());
    assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_none());
    assert_eq!(
        t.key_by_hash(&t.hash(secret.expose()))?.map(|k| k.id),
        Some(new.id)
    );
    assert_eq!(new.name, "api");
    assert!(
        !new.active,
        "settings are copied, including the active flag"
    );
    assert!(!new.imported);
    assert_eq!(t.keys_of(owner)?, vec![new]);
    Ok(())
}

// ----- last used -----

#[test]
fn last_used_is_batched_and_invisible() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let (a, _) = t.create_key(Actor::Cli, NewKey::new(owner, "a"))?;
    let (b, _) = t.create_key(Actor::Cli, NewKey::new(owner, "b"))?;
    let seq = t.seq();
    let audit_len = all_audit(&t)?.len();
    t.record_last_used(&[(a.id, 100), (b.id, 50), (a.id, 120), (a.id, 110), (999, 5)])?;
    assert_eq!(t.key(a.id)?.and_then(|k| k.last_used), Some(120));
    assert_eq!(t.key(b.id)?.and_then(|k| k.last_used), Some(50));
    t.record_last_used(&[(b.id, 10)])?;
    assert_eq!(
        t.key(b.id)?.and_then(|k| k.last_used),
        Some(50),
        "never goes back"
    );
    assert_eq!(t.seq(), seq);
    assert_eq!(all_audit(&t)?.len(), audit_len);
    Ok(())
}

// ----- bindings and workspaces -----

#[test]
fn bindings() -> TestResult {
    let t = table();
    let p = user(&t, "a@example.org")?;
    t.bind(Actor::Cli, p, "owner", "organization:6")?;
    t.bind(Actor::Cli, p, "viewer", "organization:7")?;
    t.bind(Actor::Cli, p, "member", "organization:6/project:1")?;
    match t.bind(Actor::Cli, p, "owner", "organization:6") {
        Err(StoreError::Conflict { what }) => assert_eq!(
            what,
            format!("principal {p} already has role `owner` at `organization:6`")
        ),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let roles: Vec<_> = t
        .bindings_of(p)?
        .into_iter()
        .map(|b| format!("{}@{}", b.role, b.scope))
        .collect();
    assert_eq!(
        roles,
        [
            "member@organization:6/project:1",
            "owner@organization:6",
            "viewer@organization:7"
        ]
    );
    t.unbind(Actor::Cli, p, "owner", "organization:6")?;
    match t.unbind(Actor::Cli, p, "owner", "organization:6") {
        Err(StoreError::NotFound {
            what: "binding",
            id,
        }) => assert_eq!(
            id,
            format!("role `owner` at `organization:6` of principal {p}")
        ),
        other => return Err(format!("expected not found, got {other:?}").into()),
    }
    assert_eq!(t.bindings_of(p)?.len(), 2);
    assert!(matches!(
        t.bind(Actor::Cli, 42, "owner", "organization:6"),
        Err(StoreError::NotFound {
            what: "principal",
            ..
        })
    ));
    for role in ["", "1x", "a b", "a\0b", "rôle"] {
        assert!(
            matches!(
                t.bind(Actor::Cli, p, role, "organization:6"),
                Err(StoreError::InvalidName { what: "role", .. })
            ),
            "{role:?}"
        );
    }
    Ok(())
}

#[test]
fn workspaces() -> TestResult {
    let t = table();
    let company = t
        .add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::Company,
                login: "acme".into(),
                default_workspace: None,
            },
        )?
        .id;
    let ws = Workspace {
        public_key: "pub-ws-1".into(),
        name: "Main".into(),
        scope: "company:acme/workspace:1".into(),
        company: Some(company),
    };
    t.add_workspace(Actor::Cli, ws.clone())?;
    assert!(matches!(
        t.add_workspace(Actor::Cli, ws.clone()),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(t.workspace("pub-ws-1")?.as_ref(), Some(&ws));
    assert!(t.workspace("nope")?.is_none());
    let admin = t.add_principal(
        Actor::Cli,
        NewPrincipal {
            kind: PrincipalKind::ServiceAccount,
            login: "acme-admin".into(),
            default_workspace: Some("pub-ws-1".into()),
        },
    )?;
    assert_eq!(admin.default_workspace.as_deref(), Some("pub-ws-1"));
    assert!(matches!(
        t.add_principal(
            Actor::Cli,
            NewPrincipal {
                kind: PrincipalKind::User,
                login: "x".into(),
                default_workspace: Some("missing".into()),
            },
        ),
        Err(StoreError::NotFound {
            what: "workspace",
            ..
        })
    ));
    // Referenced workspaces and companies cannot be removed.
    assert!(matches!(
        t.remove_workspace(Actor::Cli, "pub-ws-1"),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        t.remove_principal(Actor::Cli, company),
        Err(StoreError::Conflict { .. })
    ));
    t.set_default_workspace(Actor::Cli, admin.id, None)?;
    let removed = t.remove_workspace(Actor::Cli, "pub-ws-1")?;
    assert_eq!(removed, ws);
    assert!(t.list_workspaces()?.is_empty());
    assert!(matches!(
        t.remove_workspace(Actor::Cli, "pub-ws-1"),
        Err(StoreError::NotFound {
            what: "workspace",
            ..
        })
    ));
    assert!(matches!(
        t.add_workspace(
            Actor::Cli,
            Workspace {
                public_key: "has space".into(),
                ..ws.clone()
            }
        ),
        Err(StoreError::InvalidName {
            what: "workspace key",
            ..
        })
    ));
    t.remove_principal(Actor::Cli, company)?;
    Ok(())
}

// ----- audit and change log -----

#[test]
fn audit_newest_first_by_principal_and_paged() -> TestResult {
    let t = table();
    let a = user(&t, "a@example.org")?; // 1
    let b = user(&t, "b@example.org")?; // 2
    let (ka, _) = t.create_key(Actor::Principal(a), NewKey::new(a, "k"))?; // 3
    t.bind(Actor::Principal(a), b, "viewer", "organization:1")?; // 4
    t.rename_key(Actor::System, ka.id, "k2")?; // 5
    t.create_key(Actor::Cli, NewKey::new(b, "k"))?; // 6
    let all = all_audit(&t)?;
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2, 1]);
    assert_eq!(
        all.last().map(|e| &e.op),
        Some(&Op::PrincipalAdded {
            id: a,
            login: "a@example.org".into()
        })
    );
    assert_eq!(all.get(1).map(|e| e.actor), Some(Actor::System));
    let q = |principal, limit, before| {
        t.audit(AuditQuery {
            principal,
            limit,
            before,
        })
        .map(|v| v.into_iter().map(|e| e.seq).collect::<Vec<_>>())
    };
    assert_eq!(
        q(Some(a), 100, None)?,
        [5, 4, 3, 1],
        "a acted in 4, key of a in 5"
    );
    assert_eq!(q(Some(b), 100, None)?, [6, 4, 2]);
    assert_eq!(q(None, 2, None)?, [6, 5]);
    assert_eq!(q(None, 2, Some(5))?, [4, 3]);
    assert_eq!(q(None, 2, Some(3))?, [2, 1]);
    assert_eq!(q(None, 2, Some(1))?, Vec::<u64>::new());
    assert_eq!(q(Some(a), 2, Some(5))?, [4, 3]);
    assert_eq!(q(Some(a), 0, None)?, Vec::<u64>::new());
    assert_eq!(q(Some(999), 10, None)?, Vec::<u64>::new());
    assert_eq!(q(Some(u64::MAX), 10, None)?, Vec::<u64>::new());
    // The change log is the audit log read forwards.
    assert_eq!(t.seq(), 6);
    let since: Vec<u64> = t.changes_since(3, 2)?.into_iter().map(|e| e.seq).collect();
    assert_eq!(since, [4, 5]);
    assert!(t.changes_since(6, 10)?.is_empty());
    assert!(t.changes_since(u64::MAX, 10)?.is_empty());
    assert_eq!(t.changes_since(0, 100)?.len(), 6);
    Ok(())
}

#[test]
fn change_hook_sees_the_new_seq_and_what_is_stale() -> TestResult {
    let t = Arc::new(table());
    let seen: Arc<Mutex<Vec<(u64, u64, keyward::store::Change)>>> = Arc::default();
    {
        let seen = Arc::clone(&seen);
        let weak = Arc::downgrade(&t);
        t.subscribe(Box::new(move |c| {
            let seq_now = weak.upgrade().map_or(0, |t| t.seq());
            if let Ok(mut s) = seen.lock() {
                s.push((seq_now, c.seq, c.clone()));
            }
        }));
    }
    let p = user(&t, "a@example.org")?;
    let (k, _) = t.create_key(Actor::Cli, NewKey::new(p, "k"))?;
    let (k2, _) = t.rotate_key(Actor::Cli, k.id, FAR)?;
    t.bind(Actor::Cli, p, "owner", "organization:1")?;
    t.add_workspace(
        Actor::Cli,
        Workspace {
            public_key: "pk".into(),
            name: "w".into(),
            scope: "workspace:1".into(),
            company: None,
        },
    )?;
    t.remove_principal(Actor::Cli, p)?;
    // A failed mutation and a last-used update notify nobody.
    assert!(t.delete_key(Actor::Cli, 12345).is_err());
    let seen = seen.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(seen.len(), 6);
    for (i, (seq_in_hook, seq, _)) in seen.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(seq_in_hook, seq, "seq() is bumped before subscribers run");
    }
    let changes: Vec<_> = seen.into_iter().map(|(_, _, c)| c).collect();
    assert_eq!(changes[0].principals, [p]);
    assert_eq!(changes[1].keys, [k.hash]);
    assert_eq!(changes[2].keys, [k.hash, k2.hash]);
    assert_eq!(changes[3].principals, [p]);
    assert_eq!(changes[4].workspaces, ["pk"]);
    assert_eq!(changes[5].principals, [p]);
    assert_eq!(changes[5].keys, [k.hash, k2.hash]);
    Ok(())
}

#[test]
fn subscribers_cannot_deadlock_the_table() -> TestResult {
    let t = Arc::new(table());
    let result: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let weak = Arc::downgrade(&t);
        let result = Arc::clone(&result);
        t.subscribe(Box::new(move |_| {
            if let Some(t) = weak.upgrade() {
                let r = user(&t, "nested@example.org").err().map(|e| e.to_string());
                if let Ok(mut slot) = result.lock() {
                    *slot = r;
                }
            }
        }));
    }
    user(&t, "a@example.org")?;
    let got = result.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(
        got.as_deref(),
        Some("the key table is already being written by this thread; inside `bulk` use the `Bulk` handle")
    );
    Ok(())
}

#[test]
fn bulk_mode_commits_everything_and_flushes_once() -> TestResult {
    let t = table();
    let count = Arc::new(AtomicU64::new(0));
    {
        let count = Arc::clone(&count);
        t.subscribe(Box::new(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let owner = user(&t, "a@example.org")?;
    let ids = t.bulk(|b| {
        let mut ids = Vec::new();
        for i in 0..50 {
            let secret = format!("{:040x}", i);
            ids.push(
                b.import_key(Actor::System, NewKey::new(owner, format!("k{i}")), &secret)?
                    .id,
            );
        }
        // The table itself refuses to be written from inside the closure.
        assert!(matches!(user(b.table(), "x"), Err(StoreError::Reentrant)));
        // Checks inside the bulk see the mutations not yet applied.
        assert!(matches!(
            b.import_key(Actor::System, NewKey::new(owner, "k7"), "fresh-secret"),
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            b.import_key(
                Actor::System,
                NewKey::new(owner, "other"),
                &format!("{:040x}", 3)
            ),
            Err(StoreError::Conflict { .. })
        ));
        Ok(ids)
    })?;
    assert_eq!(ids.len(), 50);
    assert_eq!(t.keys_of(owner)?.len(), 50);
    assert_eq!(count.load(Ordering::SeqCst), 51);
    assert_eq!(t.seq(), 51);
    // An error inside bulk keeps what was committed before it.
    let r = t.bulk(|b| {
        b.bind(Actor::Cli, owner, "owner", "organization:1")?;
        b.bind(Actor::Cli, owner, "owner", "organization:1")
    });
    assert!(matches!(r, Err(StoreError::Conflict { .. })));
    assert_eq!(t.bindings_of(owner)?.len(), 1);
    // After bulk, the table is writable again.
    user(&t, "b@example.org")?;
    Ok(())
}

#[test]
fn large_bulk_applies_in_chunks_and_notifies_in_order() -> TestResult {
    let t = table();
    let seqs: Arc<Mutex<Vec<u64>>> = Arc::default();
    {
        let seqs = Arc::clone(&seqs);
        t.subscribe(Box::new(move |c| {
            if let Ok(mut s) = seqs.lock() {
                s.push(c.seq);
            }
        }));
    }
    let owner = user(&t, "a@example.org")?;
    // Enough keys for several applied chunks; then a failure: everything before it is kept.
    let n = 5000u64;
    let r = t.bulk(|b| {
        for i in 0..n {
            b.import_key(
                Actor::System,
                NewKey::new(owner, format!("k{i}")),
                &format!("s{i:039}"),
            )?;
        }
        b.import_key(Actor::System, NewKey::new(owner, "k0"), "another")
    });
    assert!(matches!(r, Err(StoreError::Conflict { .. })));
    assert_eq!(t.keys_of(owner)?.len() as u64, n);
    assert_eq!(t.seq(), n + 1);
    let seen = seqs.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(seen, (1..=n + 1).collect::<Vec<_>>());
    assert!(t
        .key_by_hash(&t.hash(&format!("s{:039}", n - 1)))?
        .is_some());
    // Removing a principal inside a bulk sees its pending keys.
    let other = user(&t, "b@example.org")?;
    t.bulk(|b| {
        b.create_key(Actor::Cli, NewKey::new(other, "x"))?;
        b.bind(Actor::Cli, other, "owner", "organization:1")?;
        b.remove_principal(Actor::Cli, other)
    })?;
    assert!(t.principal(other)?.is_none());
    assert!(t.list_keys()?.iter().all(|k| k.owner != other));
    assert!(t.bindings_of(other)?.is_empty());
    Ok(())
}

// ----- secrets never stored -----

#[test]
fn secrets_are_never_in_records_or_debug_output() -> TestResult {
    let t = table();
    let owner = user(&t, "a@example.org")?;
    let (rec, secret) = t.create_key(Actor::Cli, NewKey::new(owner, "k"))?;
    let imported = t.import_key(Actor::Cli, NewKey::new(owner, "seed"), SEED_KEY)?;
    let (rotated, rsecret) = t.rotate_key(Actor::Cli, rec.id, FAR)?;
    for (r, s) in [
        (&rec, secret.expose()),
        (&imported, SEED_KEY),
        (&rotated, rsecret.expose()),
    ] {
        let bytes = encode(r)?;
        let tail = &s[8..];
        assert!(
            !bytes.windows(tail.len()).any(|w| w == tail.as_bytes()),
            "secret bytes in the encoded record"
        );
        assert!(!format!("{r:?}").contains(tail));
    }
    assert!(!format!("{secret:?} {secret} {t:?}").contains(&secret.expose()[8..]));
    for entry in all_audit(&t)? {
        let dbg = format!("{entry:?}");
        assert!(!dbg.contains(&secret.expose()[8..]) && !dbg.contains(&SEED_KEY[8..]));
    }
    Ok(())
}

// ----- codec -----

fn sample_record() -> KeyRecord {
    KeyRecord {
        id: 1,
        owner: 2,
        name: "k".into(),
        hash: KeyHash([3; 32]),
        display_prefix: "kw_ab".into(),
        created_at: 10,
        expires_at: Some(20),
        active: true,
        last_used: None,
        read_only: false,
        permissions: Some(vec!["view".into()]),
        scope: Some("organization:6".into()),
        kind: KeyKind::Standard,
        imported: false,
        rotated_to: None,
    }
}

#[test]
fn codec_round_trip_and_errors() -> TestResult {
    let rec = sample_record();
    let bytes = encode(&rec)?;
    assert_eq!(bytes.first(), Some(&FORMAT_VERSION));
    assert_eq!(decode::<KeyRecord>(&bytes)?, rec);

    let mut future = bytes.clone();
    future[0] = FORMAT_VERSION + 1;
    match decode::<KeyRecord>(&future) {
        Err(
            e @ StoreError::UnsupportedVersion {
                found, supported, ..
            },
        ) => {
            assert_eq!((found, supported), (u32::from(FORMAT_VERSION) + 1, 1));
            assert_eq!(
                e.to_string(),
                "key record has format version 2, this build reads version 1 only"
            );
        }
        other => return Err(format!("expected unsupported version, got {other:?}").into()),
    }
    let truncated = &bytes[..bytes.len() - 3];
    match decode::<KeyRecord>(truncated) {
        Err(
            e @ StoreError::Corrupt {
                what: "key record", ..
            },
        ) => {
            assert!(
                e.to_string()
                    .starts_with("corrupt key record: cannot decode"),
                "{e}"
            )
        }
        other => return Err(format!("expected corrupt, got {other:?}").into()),
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    match decode::<KeyRecord>(&trailing) {
        Err(e) => assert_eq!(
            e.to_string(),
            "corrupt key record: 1 trailing bytes after the record"
        ),
        Ok(_) => return Err("trailing bytes accepted".into()),
    }
    assert_eq!(
        decode::<KeyRecord>(&[]).err().map(|e| e.to_string()),
        Some("corrupt key record: the record is empty".into())
    );
    // A huge length prefix must not allocate or panic.
    let huge = [FORMAT_VERSION, 1, 2, 1, 0xfc, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        decode::<KeyRecord>(&huge),
        Err(StoreError::Corrupt { .. })
    ));
    Ok(())
}

#[test]
fn decode_never_panics_on_prefixes_and_flips() -> TestResult {
    let bytes = encode(&sample_record())?;
    for len in 0..bytes.len() {
        let _ = decode::<KeyRecord>(&bytes[..len]);
    }
    for i in 1..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let _ = decode::<KeyRecord>(&b);
            let _ = decode::<keyward::store::AuditEntry>(&b);
        }
    }
    Ok(())
}

// ----- persistence and opening -----

#[test]
fn reopen_finds_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let (key_id, secret, owner) = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        let owner = user(&t, "a@example.org")?;
        let (rec, secret) = t.create_key(Actor::Cli, NewKey::new(owner, "k"))?;
        t.bind(Actor::Cli, owner, "owner", "organization:6")?;
        t.import_key(Actor::Cli, NewKey::new(owner, "seed"), SEED_KEY)?;
        (rec.id, secret, owner)
    };
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert_eq!(t.path(), Some(path.as_path()));
    assert_eq!(t.seq(), 4);
    assert_eq!(
        t.principal_by_login("A@EXAMPLE.ORG")?.map(|p| p.id),
        Some(owner)
    );
    assert_eq!(
        t.key_by_hash(&t.hash(secret.expose()))?.map(|k| k.id),
        Some(key_id)
    );
    assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_some());
    assert_eq!(t.bindings_of(owner)?.len(), 1);
    assert_eq!(all_audit(&t)?.len(), 4);
    // Counters continue where they were.
    let next = user(&t, "b@example.org")?;
    assert_eq!(next, owner + 1);
    assert_eq!(t.seq(), 5);
    Ok(())
}

#[test]
fn second_open_is_in_use() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let _first = KeyTable::open(&path, StoreOptions::default())?;
    match KeyTable::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::InUse { .. }) => assert_eq!(
            e.to_string(),
            format!("database `{}` is in use by another process", path.display())
        ),
        other => return Err(format!("expected in use, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn foreign_directories_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A directory with other files.
    let other = dir.path().join("photos");
    std::fs::create_dir(&other)?;
    std::fs::write(other.join("cat.jpg"), b"meow")?;
    match KeyTable::open(&other, StoreOptions::default()) {
        Err(e @ StoreError::NotKeyward { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "`{}` is not a keyward database: the directory is not empty and holds no database",
                other.display()
            )
        ),
        other => return Err(format!("expected not keyward, got {other:?}").into()),
    }
    assert!(!other.join("conf").exists(), "nothing was written");
    // A file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x")?;
    assert!(matches!(
        KeyTable::open(&file, StoreOptions::default()),
        Err(StoreError::NotKeyward { .. })
    ));
    // Garbage sled files.
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage)?;
    std::fs::write(garbage.join("db"), vec![0xa5; 4096])?;
    std::fs::write(garbage.join("conf"), vec![0x5a; 64])?;
    match KeyTable::open(&garbage, StoreOptions::default()) {
        Err(
            StoreError::Corrupt { .. } | StoreError::NotKeyward { .. } | StoreError::Backend { .. },
        ) => {}
        other => return Err(format!("expected a clear error, got {other:?}").into()),
    }
    // A foreign `db` file without sled's `conf`.
    let lone = dir.path().join("lone");
    std::fs::create_dir(&lone)?;
    std::fs::write(lone.join("db"), vec![0xa5; 4096])?;
    match KeyTable::open(&lone, StoreOptions::default()) {
        Err(e @ StoreError::NotKeyward { .. }) => {
            assert!(
                e.to_string()
                    .ends_with("its `db` file was not written by sled"),
                "{e}"
            )
        }
        other => return Err(format!("expected not keyward, got {other:?}").into()),
    }
    assert_eq!(
        std::fs::read(lone.join("db"))?,
        vec![0xa5; 4096],
        "left untouched"
    );
    // A sled database written by someone else.
    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign)?;
        db.insert(b"hello", b"world")?;
        db.flush()?;
    }
    match KeyTable::open(&foreign, StoreOptions::default()) {
        Err(e @ StoreError::NotKeyward { .. }) => {
            assert!(
                e.to_string()
                    .ends_with("it holds data but no keyward marker"),
                "{e}"
            )
        }
        other => return Err(format!("expected not keyward, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn unknown_layout_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    drop(KeyTable::open(&path, StoreOptions::default())?);
    {
        let db = sled_reopen(&path)?;
        let mut magic = b"keyward".to_vec();
        magic.extend_from_slice(&99u32.to_be_bytes());
        db.insert(b"\x00magic", magic)?;
        db.flush()?;
    }
    match KeyTable::open(&path, StoreOptions::default()) {
        Err(StoreError::UnsupportedVersion {
            what,
            found,
            supported,
        }) => {
            assert_eq!(
                (what, found, supported),
                ("database layout", 99, LAYOUT_VERSION)
            )
        }
        other => return Err(format!("expected unsupported version, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn corrupt_stored_record_is_reported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let key_id = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        let owner = user(&t, "a@example.org")?;
        t.create_key(Actor::Cli, NewKey::new(owner, "k"))?.0.id
    };
    {
        let db = sled_reopen(&path)?;
        // Layout 2: the record lives under its hash, which the id index (0x03) holds.
        let mut k = vec![0x03];
        k.extend_from_slice(&key_id.to_be_bytes());
        let hash = db.get(&k)?.ok_or("no id index entry")?;
        let mut rk = vec![0x04];
        rk.extend_from_slice(&hash);
        db.insert(rk, vec![FORMAT_VERSION, 1])?;
        db.flush()?;
    }
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert!(matches!(
        t.key(key_id),
        Err(StoreError::Corrupt {
            what: "key record",
            ..
        })
    ));
    Ok(())
}

#[test]
fn stale_generating_snapshot_is_removed_on_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let owner = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        user(&t, "a@example.org")?
    };
    // A half-written snapshot, named so that it sorts after every complete one.
    let stale = path.join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&stale, vec![0x42; 100])?;
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert!(!stale.exists());
    assert_eq!(
        t.principal(owner)?.map(|p| p.login),
        Some("a@example.org".into())
    );
    Ok(())
}

#[test]
fn table_is_shared_across_threads() -> TestResult {
    let t = Arc::new(table());
    let owner = user(&t, "a@example.org")?;
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || -> Result<(), StoreError> {
                for i in 0..25 {
                    t.create_key(Actor::System, NewKey::new(owner, format!("t{n}-{i}")))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    assert_eq!(t.keys_of(owner)?.len(), 100);
    assert_eq!(t.seq(), 101);
    let seqs: Vec<u64> = t.changes_since(0, 1000)?.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=101).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn counters_survive_a_bulk_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let owner = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        let owner = user(&t, "a@example.org")?;
        t.bulk(|b| {
            for i in 0..3 {
                b.create_key(Actor::Cli, NewKey::new(owner, format!("k{i}")))?;
            }
            Ok(())
        })?;
        owner
    };
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert_eq!(t.seq(), 4);
    let (rec, _) = t.create_key(Actor::Cli, NewKey::new(owner, "k3"))?;
    assert_eq!(rec.id, 4);
    assert_eq!(t.seq(), 5);
    assert_eq!(all_audit(&t)?.len(), 5);
    Ok(())
}

// ----- import_keys: many keys, one mutation -----

#[test]
fn import_keys_is_one_audited_mutation_naming_every_key() -> TestResult {
    let t = table();
    let changes: Arc<Mutex<Vec<keyward::store::Change>>> = Arc::default();
    {
        let changes = Arc::clone(&changes);
        t.subscribe(Box::new(move |c| {
            if let Ok(mut v) = changes.lock() {
                v.push(c.clone());
            }
        }));
    }
    let a = user(&t, "a@example.org")?;
    let b = user(&t, "b@example.org")?;
    let before = t.seq();
    let keys: Vec<(NewKey, String)> = (0..300u64)
        .map(|i| {
            let owner = if i % 3 == 0 { b } else { a };
            (NewKey::new(owner, format!("k{i}")), format!("{i:040x}"))
        })
        .collect();
    let recs = t.import_keys(Actor::Cli, keys)?;
    assert_eq!(recs.len(), 300);
    assert_eq!(t.seq(), before + 1);
    let first = recs.first().ok_or("no record")?.id;
    let last = recs.last().ok_or("no record")?.id;
    assert_eq!(last - first, 299);
    for (i, r) in recs.iter().enumerate() {
        assert!(r.imported);
        assert_eq!(r.id, first + i as u64);
        assert_eq!(r.name, format!("k{i}"));
        assert_eq!(
            t.key_by_hash(&t.hash(&format!("{i:040x}")))?.as_ref(),
            Some(r)
        );
        assert_eq!(t.key(r.id)?.as_ref(), Some(r));
    }
    assert_eq!(t.keys_of(a)?.len(), 200);
    assert_eq!(t.keys_of(b)?.len(), 100);
    // One audit entry with the id range and both owners, found under each owner.
    let log = all_audit(&t)?;
    let newest = log.first().ok_or("empty audit log")?;
    assert_eq!(newest.seq, before + 1);
    assert_eq!(
        newest.op,
        Op::KeysImported {
            first,
            last,
            owners: vec![a, b]
        }
    );
    for p in [a, b] {
        let mine = t.audit(AuditQuery {
            principal: Some(p),
            limit: 1,
            before: None,
        })?;
        assert_eq!(mine.first().map(|e| e.seq), Some(before + 1));
    }
    assert_eq!(t.changes_since(before, 10)?.len(), 1);
    // One change naming every key hash.
    let seen = changes.lock().map_err(|_| "poisoned")?.clone();
    let change = seen.last().ok_or("no change")?;
    assert_eq!(change.seq, before + 1);
    assert_eq!(change.keys.len(), 300);
    assert!(recs.iter().zip(&change.keys).all(|(r, h)| r.hash == *h));
    // Single-key mutations go on after it.
    let (next, _) = t.create_key(Actor::Cli, NewKey::new(a, "after"))?;
    assert_eq!(next.id, last + 1);
    assert_eq!(t.seq(), before + 2);
    Ok(())
}

#[test]
fn import_keys_writes_nothing_when_any_key_fails() -> TestResult {
    let t = table();
    let a = user(&t, "a@example.org")?;
    t.import_key(Actor::Cli, NewKey::new(a, "taken"), SEED_KEY)?;
    let seq = t.seq();
    let ok = |i: u64| (NewKey::new(a, format!("k{i}")), format!("{i:040x}"));
    let cases: Vec<(&str, Vec<(NewKey, String)>)> = vec![
        (
            "secret already stored",
            vec![ok(1), (NewKey::new(a, "x"), SEED_KEY.to_owned())],
        ),
        (
            "secret twice in the call",
            vec![ok(1), (NewKey::new(a, "x"), format!("{:040x}", 1))],
        ),
        (
            "name already stored",
            vec![ok(1), (NewKey::new(a, "taken"), "fresh".to_owned())],
        ),
        (
            "name twice in the call",
            vec![ok(1), (NewKey::new(a, "k1"), "fresh".to_owned())],
        ),
        (
            "unknown owner",
            vec![ok(1), (NewKey::new(999, "x"), "fresh".to_owned())],
        ),
        (
            "bad name",
            vec![ok(1), (NewKey::new(a, ""), "fresh".to_owned())],
        ),
        (
            "bad secret",
            vec![ok(1), (NewKey::new(a, "x"), "".to_owned())],
        ),
    ];
    for (what, keys) in cases {
        // The indexed forms name the key refused, the second; the check writes nothing either.
        let e = t
            .check_import_keys(keys.clone())
            .err()
            .ok_or(format!("{what}: the check accepted"))?;
        assert_eq!(e.index, Some(1), "{what}: {e}");
        assert!(e.to_string().starts_with("item 1: "), "{what}: {e}");
        let e = t
            .import_keys_indexed(Actor::Cli, keys.clone())
            .err()
            .ok_or(format!("{what}: accepted"))?;
        assert_eq!(e.index, Some(1), "{what}: {e}");
        let r = t.import_keys(Actor::Cli, keys);
        assert!(r.is_err(), "{what}: accepted");
        assert_eq!(t.seq(), seq, "{what}: a mutation was committed");
        assert_eq!(t.keys_of(a)?.len(), 1, "{what}: keys were written");
        assert!(
            t.key_by_hash(&t.hash(&format!("{:040x}", 1)))?.is_none(),
            "{what}"
        );
    }
    assert!(t.import_keys::<String>(Actor::Cli, Vec::new())?.is_empty());
    assert_eq!(t.seq(), seq);
    // A batch that passes the check is not written by it.
    t.check_import_keys(vec![ok(1), ok(2)])?;
    assert_eq!(t.seq(), seq);
    assert_eq!(t.keys_of(a)?.len(), 1);
    Ok(())
}

#[test]
fn import_keys_inside_bulk_sees_pending_mutations_and_survives_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let (a, first) = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        let a = user(&t, "a@example.org")?;
        let first = t.bulk(|b| {
            b.import_key(Actor::Cli, NewKey::new(a, "pending"), SEED_KEY)?;
            // The pending key's secret and name are both seen by import_keys.
            let dup = b.import_keys(Actor::Cli, vec![(NewKey::new(a, "x"), SEED_KEY)]);
            assert!(matches!(dup, Err(StoreError::Conflict { .. })));
            let dup = b.import_keys(Actor::Cli, vec![(NewKey::new(a, "pending"), "fresh")]);
            assert!(matches!(dup, Err(StoreError::Conflict { .. })));
            let recs = b.import_keys(
                Actor::Cli,
                (0..20u64)
                    .map(|i| (NewKey::new(a, format!("k{i}")), format!("{i:040x}")))
                    .collect(),
            )?;
            // A single-key import after it sees it too.
            let dup = b.import_key(Actor::Cli, NewKey::new(a, "k3"), "other");
            assert!(matches!(dup, Err(StoreError::Conflict { .. })));
            b.import_key(Actor::Cli, NewKey::new(a, "later"), SEATS_KEY)?;
            Ok(recs.first().map(|r| r.id).unwrap_or(0))
        })?;
        assert_eq!(t.seq(), 4);
        (a, first)
    };
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert_eq!(t.seq(), 4);
    assert_eq!(t.keys_of(a)?.len(), 22);
    assert_eq!(
        t.key_by_hash(&t.hash(&format!("{:040x}", 19)))?
            .map(|r| r.id),
        Some(first + 19)
    );
    assert!(t.key_by_hash(&t.hash(SEATS_KEY))?.is_some());
    let (next, _) = t.create_key(Actor::Cli, NewKey::new(a, "new"))?;
    assert_eq!(next.id, first + 21);
    Ok(())
}

#[test]
fn cache_capacity_is_an_option() -> TestResult {
    let options = StoreOptions {
        cache_capacity: 8 * 1024 * 1024,
        ..StoreOptions::default()
    };
    assert_eq!(
        StoreOptions::default().cache_capacity,
        keyward::store::DEFAULT_CACHE_CAPACITY
    );
    let t = KeyTable::temporary(options)?;
    let a = user(&t, "a@example.org")?;
    t.import_keys(Actor::Cli, vec![(NewKey::new(a, "k"), SEED_KEY)])?;
    assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_some());
    Ok(())
}

/// A table with a rotated generated key and an imported one; its keys as listed.
fn table_to_migrate(
    path: &std::path::Path,
) -> Result<(u64, Vec<KeyRecord>), Box<dyn std::error::Error>> {
    let t = KeyTable::open(path, StoreOptions::default())?;
    let owner = user(&t, "a@example.org")?;
    t.import_key(Actor::Cli, NewKey::new(owner, "seed"), SEED_KEY)?;
    let (old, _) = t.create_key(Actor::Cli, NewKey::new(owner, "gen"))?;
    t.rotate_key(Actor::Cli, old.id, FAR)?;
    Ok((owner, t.list_keys()?))
}

/// Rewrites the current layout's key entries as layout `version` (1 or 2) wrote them.
/// `sled::open` on a database this test dropped a moment ago: sled's background threads can hold
/// its file lock a little longer (`KeyTable::open` waits for it the same way, ~200 ms; a loaded
/// machine can take longer).
fn sled_reopen(path: &std::path::Path) -> sled::Result<sled::Db> {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 250 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn rewrite_as_layout(
    path: &std::path::Path,
    before: &[KeyRecord],
    version: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = sled_reopen(path)?;
    for rec in before {
        let mut id_key = vec![0x03];
        id_key.extend_from_slice(&rec.id.to_be_bytes());
        let mut short_key = vec![0x04];
        short_key.extend_from_slice(&rec.hash.0[..16]);
        let mut full_key = vec![0x04];
        full_key.extend_from_slice(&rec.hash.0);
        let bytes = db.remove(&short_key)?.ok_or("no record")?;
        if version == 1 {
            // Records under their id, the hash index holding ids.
            db.insert(id_key, bytes)?;
            db.insert(full_key, rec.id.to_be_bytes().to_vec())?;
        } else {
            // Records under the whole hash, the id index holding whole hashes.
            db.insert(id_key, rec.hash.0.to_vec())?;
            db.insert(full_key, bytes)?;
        }
    }
    let mut magic = b"keyward".to_vec();
    magic.extend_from_slice(&version.to_be_bytes());
    db.insert(b"\x00magic", magic)?;
    db.flush()?;
    Ok(())
}

#[test]
fn older_layouts_are_migrated_on_open() -> TestResult {
    for version in [1, 2] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db");
        let (owner, before) = table_to_migrate(&path)?;
        rewrite_as_layout(&path, &before, version)?;
        let t = KeyTable::open(&path, StoreOptions::default())?;
        assert_eq!(t.list_keys()?, before, "layout {version}");
        assert_eq!(t.keys_of(owner)?, before, "layout {version}");
        for rec in &before {
            assert_eq!(t.key(rec.id)?.as_ref(), Some(rec), "layout {version}");
            assert_eq!(
                t.key_by_hash(&rec.hash)?.as_ref(),
                Some(rec),
                "layout {version}"
            );
        }
        let seed = t.key_by_hash(&t.hash(SEED_KEY))?.ok_or("seed key lost")?;
        t.delete_key(Actor::Cli, seed.id)?;
        assert!(t.key_by_hash(&t.hash(SEED_KEY))?.is_none());
        // Importing the same secret again is refused as before.
        let again = t.import_key(Actor::Cli, NewKey::new(owner, "again"), SEED_KEY)?;
        assert!(t
            .import_key(Actor::Cli, NewKey::new(owner, "twice"), SEED_KEY)
            .is_err());
        t.delete_key(Actor::Cli, again.id)?;
        drop(t);
        // Migrated once: reopening finds the current layout, with nothing of the old one left over.
        let t = KeyTable::open(&path, StoreOptions::default())?;
        assert_eq!(t.list_keys()?.len(), before.len() - 1, "layout {version}");
        drop(t);
        let db = sled_reopen(&path)?;
        let stray = db
            .scan_prefix([0x04])
            .keys()
            .filter(|k| k.as_ref().map_or(true, |k| k.len() != 17))
            .count();
        assert_eq!(stray, 0, "layout {version}: old key entries left behind");
    }
    Ok(())
}

#[test]
fn a_hash_sharing_only_the_record_key_prefix_finds_nothing() -> TestResult {
    let t = KeyTable::temporary(StoreOptions::default())?;
    let a = user(&t, "a@example.org")?;
    let rec = t.import_key(Actor::Cli, NewKey::new(a, "seed"), SEED_KEY)?;
    // Records are stored under the hash's first 16 bytes; the rest must match too.
    for i in [16, 31] {
        let mut other = rec.hash;
        other.0[i] ^= 1;
        assert_eq!(t.key_by_hash(&other)?, None, "byte {i} differs");
    }
    assert_eq!(t.key_by_hash(&rec.hash)?, Some(rec));
    Ok(())
}

// ----- refused calls in the audit log -----

fn refusal<'a>(actor: Actor, status: u16, code: &'a str, path: &'a str) -> NewDenial<'a> {
    NewDenial {
        actor,
        status,
        code,
        method: "GET",
        path,
        key: None,
    }
}

#[test]
fn refusals_are_queued_then_written_as_entries_that_are_not_changes() -> TestResult {
    let t = table();
    let notified = Arc::new(AtomicU64::new(0));
    {
        let notified = Arc::clone(&notified);
        t.subscribe(Box::new(move |_| {
            notified.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let p = user(&t, "a@example.org")?;
    let seq = t.seq();
    assert_eq!(notified.load(Ordering::Relaxed), 1);

    assert!(t.record_denial(refusal(Actor::Anonymous, 401, "no_credential", "/v1/keys")));
    let long = format!("/v1/\u{7}{}", "é".repeat(400));
    assert!(t.record_denial(NewDenial {
        method: "POST",
        key: Some(7),
        ..refusal(Actor::Principal(p), 403, "no_role", &long)
    }));
    // Queued only: nothing written, nothing moved, nobody told.
    assert_eq!(t.seq(), seq);
    assert_eq!(all_audit(&t)?.len(), 1);
    assert_eq!(
        t.pending_denials(),
        PendingDenials {
            queued: 2,
            dropped: 0
        }
    );

    assert_eq!(t.write_denials()?, 2);
    assert_eq!(t.seq(), seq + 2, "refusals take sequence numbers");
    assert_eq!(notified.load(Ordering::Relaxed), 1, "but notify nobody");
    assert_eq!(t.pending_denials(), PendingDenials::default());
    assert_eq!(t.write_denials()?, 0);
    assert_eq!(t.seq(), seq + 2);

    let log = all_audit(&t)?;
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].seq, seq + 1);
    assert_eq!(log[1].actor, Actor::Anonymous);
    assert_eq!(
        log[1].op,
        Op::AccessDenied {
            status: 401,
            code: "no_credential".into(),
            method: "GET".into(),
            path: "/v1/keys".into(),
            key: None,
        }
    );
    assert!(!log[1].op.is_change() && log[1].op.is_denial());
    assert!(log[2].op.is_change());
    assert_eq!(log[0].actor, Actor::Principal(p));
    let Op::AccessDenied { path, key, .. } = &log[0].op else {
        return Err(format!("expected a refusal, got {:?}", log[0].op).into());
    };
    assert_eq!(*key, Some(7));
    assert!(path.len() <= DENIAL_PATH_MAX, "{}", path.len());
    assert!(
        path.starts_with("/v1/\u{fffd}é") && path.ends_with("é..."),
        "{path}"
    );
    assert!(!path.chars().any(char::is_control));
    // Indexed under the principal refused; read back by the change log too.
    let mine = t.audit(AuditQuery {
        principal: Some(p),
        limit: 10,
        before: None,
    })?;
    assert_eq!(mine.len(), 2);
    let since = t.changes_since(seq, 10)?;
    assert_eq!(since.len(), 2);
    assert!(since.iter().all(|e| !e.op.is_change()));
    // The next mutation takes the next number and is the only one subscribers hear of.
    user(&t, "b@example.org")?;
    assert_eq!(t.seq(), seq + 3);
    assert_eq!(notified.load(Ordering::Relaxed), 2);
    Ok(())
}

#[test]
fn the_refusal_queue_is_bounded_and_counts_what_it_drops() -> TestResult {
    let t = table();
    for i in 0..DENIAL_QUEUE_MAX + 300 {
        let queued = t.record_denial(refusal(Actor::Anonymous, 401, "unknown_key", "/v1/keys"));
        assert_eq!(queued, i < DENIAL_QUEUE_MAX);
    }
    assert_eq!(
        t.pending_denials(),
        PendingDenials {
            queued: DENIAL_QUEUE_MAX,
            dropped: 300
        }
    );
    assert_eq!(t.write_denials()?, DENIAL_QUEUE_MAX + 1);
    let log = all_audit(&t)?;
    assert_eq!(log.len(), DENIAL_QUEUE_MAX + 1);
    assert_eq!(log[0].actor, Actor::System);
    assert_eq!(log[0].op, Op::DenialsNotRecorded { count: 300 });
    assert!(!log[0].op.is_change());
    assert!(log[1..]
        .iter()
        .all(|e| matches!(e.op, Op::AccessDenied { .. })));
    // Drained: the next refusal is queued again, and no second summary follows it.
    assert!(t.record_denial(refusal(Actor::Anonymous, 401, "unknown_key", "/v1/keys")));
    assert_eq!(t.write_denials()?, 1);
    assert!(matches!(all_audit(&t)?[0].op, Op::AccessDenied { .. }));
    Ok(())
}

#[test]
fn refusals_survive_reopening_after_a_flush_and_are_written_on_drop() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let p = {
        let t = KeyTable::open(&path, StoreOptions::default())?;
        let p = user(&t, "a@example.org")?;
        t.record_denial(refusal(Actor::Principal(p), 403, "no_role", "/v1/audit"));
        t.flush()?;
        assert_eq!(t.pending_denials(), PendingDenials::default());
        assert_eq!(t.seq(), 2);
        // Still queued when the table is dropped: written then.
        t.record_denial(refusal(Actor::Anonymous, 401, "no_credential", "/v1/keys"));
        p
    };
    let t = KeyTable::open(&path, StoreOptions::default())?;
    assert_eq!(t.seq(), 3);
    let log = all_audit(&t)?;
    let ops: Vec<(u64, &Op)> = log.iter().map(|e| (e.seq, &e.op)).collect();
    assert!(
        matches!(
            ops.as_slice(),
            [
                (3, Op::AccessDenied { status: 401, .. }),
                (2, Op::AccessDenied { status: 403, .. }),
                (1, Op::PrincipalAdded { .. }),
            ]
        ),
        "{ops:?}"
    );
    assert_eq!(log[1].actor, Actor::Principal(p));
    // Counters continue after them.
    user(&t, "b@example.org")?;
    assert_eq!(t.seq(), 4);
    Ok(())
}

/// New variants are appended: entries written before them keep their bytes and meaning (no format
/// version bump), and the new ones take the next variant indices.
#[test]
fn audit_entry_variants_keep_their_indices() -> TestResult {
    use keyward::store::AuditEntry;
    let old = AuditEntry {
        seq: 1,
        at: 2,
        actor: Actor::Cli,
        op: Op::WorkspaceRemoved {
            public_key: "pk".into(),
            company: None,
        },
    };
    // version, seq, at, actor Cli (2), op WorkspaceRemoved (16), "pk", None
    let bytes = [FORMAT_VERSION, 1, 2, 2, 16, 2, b'p', b'k', 0];
    assert_eq!(encode(&old)?, bytes);
    assert_eq!(decode::<AuditEntry>(&bytes)?, old);
    let denied = AuditEntry {
        seq: 1,
        at: 2,
        actor: Actor::Anonymous,
        op: Op::AccessDenied {
            status: 7,
            code: "c".into(),
            method: "m".into(),
            path: "p".into(),
            key: None,
        },
    };
    let bytes = [FORMAT_VERSION, 1, 2, 3, 17, 7, 1, b'c', 1, b'm', 1, b'p', 0];
    assert_eq!(encode(&denied)?, bytes);
    assert_eq!(decode::<AuditEntry>(&bytes)?, denied);
    let summary = AuditEntry {
        seq: 1,
        at: 2,
        actor: Actor::System,
        op: Op::DenialsNotRecorded { count: 5 },
    };
    assert_eq!(encode(&summary)?, [FORMAT_VERSION, 1, 2, 0, 18, 5]);
    Ok(())
}
