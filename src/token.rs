//! API key secrets: the plaintext type that redacts itself, the generated key format, and hashing at rest.
//!
//! A generated key reads `{prefix}{random}{check}`: the configurable prefix (`kw_` by default), 22 base62
//! characters drawn from the OS random source (about 131 bits), and 6 base62 characters of the CRC32 of
//! everything before them. The checksum lets [`classify`] reject a mistyped or forged key without touching
//! storage. Keys imported from elsewhere (40-hex SEED keys, UUIDs, ...) are accepted as opaque tokens.
//!
//! Only a [`KeyHash`] (BLAKE3, keyed with a server-side pepper when one is configured) and a short display
//! prefix are ever stored.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A plaintext API key. It exists only on its way in (from a request) or out (shown once at creation);
/// it is never stored. `Debug` and `Display` redact it, and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a plaintext key.
    pub fn new(plain: impl Into<String>) -> Self {
        Secret(plain.into())
    }

    /// The plaintext. Call it only to hash the key or to show it to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The longest token [`classify`] accepts, in bytes.
pub const MAX_TOKEN_LEN: usize = 512;
/// The longest key prefix [`KeyFormat::new`] accepts, in characters.
pub const MAX_PREFIX_LEN: usize = 16;
/// Number of random base62 characters in a generated key.
pub const RANDOM_LEN: usize = 22;
/// Number of base62 checksum characters at the end of a generated key.
pub const CHECK_LEN: usize = 6;
/// Number of characters of a secret kept for display in listings (at most; see [`display_prefix`]).
pub const DISPLAY_PREFIX_LEN: usize = 8;
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "kw_";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a token or a key prefix was rejected. Messages never repeat the token itself: it may be a real key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is empty.
    #[error("the key is empty")]
    Empty,
    /// The token is longer than [`MAX_TOKEN_LEN`] bytes.
    #[error("the key is {len} bytes long, more than the {max} allowed", max = MAX_TOKEN_LEN)]
    TooLong {
        /// Length of the token in bytes.
        len: usize,
    },
    /// The token holds whitespace or a control character.
    #[error("the key holds whitespace or a control character at byte {at}")]
    InvalidChar {
        /// Byte offset of the offending character.
        at: usize,
    },
    /// The token starts with the key prefix but does not have the generated shape.
    #[error("the key starts like a generated key but is malformed: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token has the generated shape but its checksum does not match: mistyped or forged.
    #[error("the key's checksum does not match: it was mistyped or forged")]
    BadChecksum,
    /// A configured key prefix is not allowed.
    #[error("invalid key prefix `{prefix}`: {reason}")]
    InvalidPrefix {
        /// The rejected prefix.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system's random source failed.
    #[error("the system random source failed: {reason}")]
    Random {
        /// The error reported by the random source.
        reason: String,
    },
}

/// The shape of a syntactically acceptable token, as found by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// A generated key (`{prefix}{random}{check}`) with a valid checksum.
    Generated,
    /// Any other token, e.g. an imported key. Only a lookup can tell whether it is valid.
    Opaque,
}

/// The format of generated keys: for now only their prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

impl KeyFormat {
    /// A format with the given prefix: 1 to [`MAX_PREFIX_LEN`] characters of `A-Z a-z 0-9 _ -`.
    /// Ending it with `_` or `-` is recommended, so that generated keys read well and opaque imported keys
    /// (hex, UUIDs) cannot start with it by chance.
    pub fn new(prefix: impl Into<String>) -> Result<Self, TokenError> {
        let prefix = prefix.into();
        let reason = if prefix.is_empty() {
            Some("it is empty")
        } else if prefix.len() > MAX_PREFIX_LEN {
            Some("it is longer than 16 characters")
        } else if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Some("only `A-Z`, `a-z`, `0-9`, `_` and `-` are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TokenError::InvalidPrefix { prefix, reason }),
            None => Ok(KeyFormat { prefix }),
        }
    }

    /// The prefix of generated keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Length in bytes of every key this format generates.
    pub fn key_len(&self) -> usize {
        self.prefix.len() + RANDOM_LEN + CHECK_LEN
    }

    /// Generates a new key from the OS random source.
    pub fn generate(&self) -> Result<Secret, TokenError> {
        let mut random = [0u8; RANDOM_LEN];
        let mut filled = 0;
        let mut pool = [0u8; 64];
        while filled < RANDOM_LEN {
            getrandom::fill(&mut pool).map_err(|e| TokenError::Random {
                reason: e.to_string(),
            })?;
            // Rejection sampling: 248 = 4 * 62, so `b % 62` is uniform for `b < 248`.
            for &b in pool.iter().filter(|&&b| b < 248) {
                if let Some(slot) = random.get_mut(filled) {
                    *slot = base62_digit(u32::from(b % 62));
                    filled += 1;
                } else {
                    break;
                }
            }
        }
        pool.zeroize();
        let check = checksum(&self.prefix, &random);
        let mut plain = String::with_capacity(self.key_len());
        plain.push_str(&self.prefix);
        // Both arrays hold ASCII base62 digits only.
        plain.extend(random.iter().map(|&b| char::from(b)));
        plain.extend(check.iter().map(|&b| char::from(b)));
        random.zeroize();
        Ok(Secret(plain))
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        KeyFormat {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

fn base62_digit(v: u32) -> u8 {
    // `v` is always below 62 here; fall back to `0` rather than panic.
    BASE62.get(v as usize).copied().unwrap_or(b'0')
}

/// CRC32 of `prefix + random`, as 6 zero-padded base62 digits (62^6 > 2^32).
fn checksum(prefix: &str, random: &[u8]) -> [u8; CHECK_LEN] {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(random);
    let mut v = h.finalize();
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = base62_digit(v % 62);
        v /= 62;
    }
    out
}

/// Checks a presented token's syntax without allocating. A token that starts with the format's prefix must be
/// a well-formed generated key with a valid checksum; any other non-empty token of printable, non-whitespace
/// characters up to [`MAX_TOKEN_LEN`] bytes is [`TokenShape::Opaque`].
pub fn classify(token: &str, format: &KeyFormat) -> Result<TokenShape, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { len: token.len() });
    }
    // ASCII (every real key) is checked a byte at a time; anything else takes the Unicode path.
    let bad = if token.is_ascii() {
        token.bytes().position(|b| b <= b' ' || b == 0x7f)
    } else {
        token
            .char_indices()
            .find(|(_, c)| c.is_control() || c.is_whitespace())
            .map(|(at, _)| at)
    };
    if let Some(at) = bad {
        return Err(TokenError::InvalidChar { at });
    }
    let Some(rest) = token.strip_prefix(format.prefix()) else {
        return Ok(TokenShape::Opaque);
    };
    if rest.len() != RANDOM_LEN + CHECK_LEN {
        return Err(TokenError::Malformed {
            reason: "it does not have 28 characters after the prefix",
        });
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenError::Malformed {
            reason: "only base62 characters may follow the prefix",
        });
    }
    let (random, check) = rest.as_bytes().split_at(RANDOM_LEN);
    let expected = checksum(format.prefix(), random);
    if bool::from(expected.ct_eq(check)) {
        Ok(TokenShape::Generated)
    } else {
        Err(TokenError::BadChecksum)
    }
}

/// The part of a secret kept for display in listings. A generated key shows its first
/// [`DISPLAY_PREFIX_LEN`] characters (`kw_` plus 5 of its 22 random characters). An opaque key shows as many
/// when it has at least 32 characters, and otherwise only a quarter of its characters, so a short imported
/// key is never mostly revealed.
pub fn display_prefix(secret: &str, shape: TokenShape) -> String {
    let total = secret.chars().count();
    let keep = match shape {
        TokenShape::Generated => DISPLAY_PREFIX_LEN,
        TokenShape::Opaque if total >= 32 => DISPLAY_PREFIX_LEN,
        TokenShape::Opaque => total / 4,
    };
    secret.chars().take(keep).collect()
}

/// The hash of a key as stored at rest. Comparison is constant-time; `Debug` shows the first 4 bytes only.
#[derive(Clone, Copy, Eq, Serialize, Deserialize)]
pub struct KeyHash(pub [u8; 32]);

impl PartialEq for KeyHash {
    /// Constant time: the four 64-bit words are XOR-folded without branching, and the fold is
    /// compared with `subtle`.
    fn eq(&self, other: &Self) -> bool {
        let mut diff = 0u64;
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            let mut wa = [0u8; 8];
            let mut wb = [0u8; 8];
            wa.copy_from_slice(a);
            wb.copy_from_slice(b);
            diff |= u64::from_le_bytes(wa) ^ u64::from_le_bytes(wb);
        }
        bool::from(diff.ct_eq(&0))
    }
}

impl Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(")?;
        for b in self.0.iter().take(4) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

/// Hashes keys for storage and lookup: BLAKE3 keyed with the 32-byte pepper when one is configured, plain
/// BLAKE3 otherwise. The pepper is wiped on drop and never printed.
#[derive(Clone, Default)]
pub struct Hasher {
    pepper: Option<[u8; 32]>,
}

impl Hasher {
    /// A hasher with an optional server-side pepper.
    pub fn new(pepper: Option<[u8; 32]>) -> Self {
        Hasher { pepper }
    }

    /// Whether a pepper is configured.
    pub fn has_pepper(&self) -> bool {
        self.pepper.is_some()
    }

    /// The hash of a key. Allocation-free.
    pub fn hash(&self, secret: &str) -> KeyHash {
        let h = match &self.pepper {
            Some(key) => blake3::keyed_hash(key, secret.as_bytes()),
            None => blake3::hash(secret.as_bytes()),
        };
        KeyHash(*h.as_bytes())
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if let Some(p) = self.pepper.as_mut() {
            p.zeroize();
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pepper = if self.pepper.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        f.debug_struct("Hasher").field("pepper", &pepper).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_classify_as_generated() {
        let format = KeyFormat::default();
        for _ in 0..100 {
            let key = format.generate().map_err(|e| e.to_string());
            let key = match key {
                Ok(k) => k,
                Err(e) => unreachable!("{e}"),
            };
            assert_eq!(key.expose().len(), format.key_len());
            assert_eq!(classify(key.expose(), &format), Ok(TokenShape::Generated));
        }
    }

    #[test]
    fn checksum_is_zero_padded() {
        let c = checksum("", b"");
        assert_eq!(c, *b"000000");
    }

    #[test]
    fn hash_debug_is_short() {
        let h = KeyHash([0xab; 32]);
        assert_eq!(format!("{h:?}"), "KeyHash(abababab..)");
    }
}
