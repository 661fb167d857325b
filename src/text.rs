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
