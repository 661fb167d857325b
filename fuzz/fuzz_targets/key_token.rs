//! Arbitrary strings into key-format parsing (`KeyFormat::new`) and checking (`token::classify`): a
//! shape or an error, never a panic; a generated key always classifies as generated, and changing
//! any one character after its prefix makes the checksum (or shape) check fail.
//!
//! Input: the first byte picks the prefix: below 200 one of a fixed list, otherwise the text up to the
//! first `\n` is the prefix candidate; the rest is the token.
#![no_main]

use keyward::token::{classify, display_prefix, KeyFormat, TokenError, TokenShape, MAX_TOKEN_LEN};
use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 4] = ["kw_", "orgkey-", "sk_live_", "a"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let (format, token) = if sel < 200 {
        (
            KeyFormat::new(PREFIXES[sel as usize % PREFIXES.len()]).ok(),
            rest,
        )
    } else {
        let (prefix, token) = rest.split_once('\n').unwrap_or((rest, ""));
        match KeyFormat::new(prefix) {
            Ok(f) => {
                assert!(!prefix.is_empty() && prefix.len() <= 16);
                (Some(f), token)
            }
            Err(TokenError::InvalidPrefix { .. }) => (None, token),
            Err(e) => panic!("unexpected prefix error {e:?}"),
        }
    };
    let Some(format) = format else {
        return;
    };
    match classify(token, &format) {
        Ok(TokenShape::Generated) => {
            assert!(token.starts_with(format.prefix()));
            assert_eq!(token.len(), format.key_len());
            let shown = display_prefix(token, TokenShape::Generated);
            assert!(
                shown.len() < token.len(),
                "display prefix shows the whole key"
            );
        }
        Ok(TokenShape::Opaque) => {
            assert!(!token.starts_with(format.prefix()));
            assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LEN);
            let _ = display_prefix(token, TokenShape::Opaque);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }

    // Generated keys and one-character typos of them.
    let key = format.generate().expect("the OS random source works");
    let key = key.expose();
    assert_eq!(classify(key, &format), Ok(TokenShape::Generated));
    if let Some(&b) = token.as_bytes().first() {
        let pos = format.prefix().len() + (b as usize % (key.len() - format.prefix().len()));
        let orig = key.as_bytes()[pos];
        let subst = token.as_bytes().get(1).copied().unwrap_or(b'x');
        if subst != orig {
            let mut typo = key.as_bytes().to_vec();
            typo[pos] = subst;
            if let Ok(typo) = std::str::from_utf8(&typo) {
                assert!(
                    classify(typo, &format).is_err(),
                    "typo {typo:?} of {key:?} accepted"
                );
            }
        }
    }
});
