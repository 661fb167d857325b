//! API key secrets: the plaintext type that redacts itself, the generated key format, and hashing at rest.

use std::fmt;
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
