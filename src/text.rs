//! Small text helpers shared by the engine's cache, the decision tables and the HTTP front: text
//! kept inline when short, decimal digits without `core::fmt`, and the civil date of a unix time.

use std::fmt;
use std::sync::Arc;

/// Text inline up to `N` bytes, shared beyond: reading a short one (a binding's scope, a login)
/// touches its owner's own cache lines instead of another allocation, and `as_str` re-checks no
/// UTF-8 (`arrayvec`'s string).
#[derive(Clone)]
pub(crate) enum InlineStr<const N: usize> {
    Inline(arrayvec::ArrayString<N>),
    Shared(Arc<str>),
}

impl<const N: usize> InlineStr<N> {
    pub(crate) fn new(s: &str) -> Self {
        match arrayvec::ArrayString::from(s) {
            Ok(inline) => InlineStr::Inline(inline),
            Err(_) => InlineStr::Shared(Arc::from(s)),
        }
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            InlineStr::Inline(s) => s,
            InlineStr::Shared(s) => s,
        }
    }
}

impl<const N: usize> PartialEq for InlineStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineStr<N> {}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Bytes a [`Name`] holds inline.
const NAME_INLINE: usize = 38;

/// A role name, a scope instance, an action or a resource in a decision, read as `str`: inline up
/// to 38 bytes, shared beyond. A decision hands out fresh ones: copying a short name inline costs
/// less than allocating one, and far less than cloning an `Arc` whose count every thread deciding
/// for the same role writes (that line would move between cores on every decision).
#[derive(Clone, PartialEq, Eq)]
pub struct Name(InlineStr<NAME_INLINE>);

impl Name {
    /// `s` as a name.
    pub fn new(s: &str) -> Self {
        Name(InlineStr::new(s))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A [`Name`] being written in pieces (a route's resource, a self-access scope): on the stack
/// while it fits inline.
pub(crate) enum NameBuf {
    Inline(arrayvec::ArrayString<NAME_INLINE>),
    Heap(String),
}

impl NameBuf {
    pub(crate) fn new() -> Self {
        NameBuf::Inline(arrayvec::ArrayString::new())
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        match self {
            NameBuf::Inline(a) => {
                if a.try_push_str(s).is_err() {
                    let mut heap = String::with_capacity(a.len() + s.len() + 32);
                    heap.push_str(a);
                    heap.push_str(s);
                    *self = NameBuf::Heap(heap);
                }
            }
            NameBuf::Heap(h) => h.push_str(s),
        }
    }

    pub(crate) fn finish(self) -> Name {
        match self {
            NameBuf::Inline(a) => Name(InlineStr::Inline(a)),
            NameBuf::Heap(h) => Name(InlineStr::Shared(h.into())),
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name::new(&s)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Writes the decimal digits of `v` at the end of `buf`; returns them.
pub(crate) fn decimal(v: u64, buf: &mut [u8; 20]) -> &str {
    let mut n = v;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // INVARIANT: `buf[i..]` holds ASCII digits only.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// `(year, month, day, hour, minute, second)` of unix seconds `secs` (UTC, proleptic Gregorian;
/// Howard Hinnant's days-to-civil algorithm).
#[cfg(any(feature = "server", feature = "admin"))]
pub(crate) fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3_600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_whatever_their_length() {
        for len in [0, 1, NAME_INLINE - 1, NAME_INLINE, NAME_INLINE + 1, 300] {
            let text: String = "abcdefghij".chars().cycle().take(len).collect();
            assert_eq!(Name::new(&text).as_str(), text);
            assert_eq!(Name::from(text.clone()), text.as_str());
            // Written in pieces, crossing the inline limit anywhere.
            for cut in [0, len / 3, len / 2, len] {
                let mut buf = NameBuf::new();
                buf.push_str(&text[..cut]);
                buf.push_str(&text[cut..]);
                buf.push_str("/x");
                let name = buf.finish();
                assert_eq!(name, format!("{text}/x").as_str(), "{len} {cut}");
                assert_eq!(name, Name::from(format!("{text}/x")));
            }
        }
    }
}
