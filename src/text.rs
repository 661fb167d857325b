//! Small text helpers shared by the engine's cache and the HTTP front: decimal digits without
//! `core::fmt`, and the civil date of a unix time.

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
