//! Wall-clock time on the server's hot path, from the monotonic readings it takes anyway.
//!
//! A forward-auth request reads the monotonic clock when it starts and when its decision is made
//! (for the decision's duration). It also needs the time of day twice: unix seconds for the key's
//! expiry, and the decision line's timestamp. On this VM a clock reading costs 30–50 ns (the
//! `vDSO` and `rdtsc`), so each thread keeps one pair of readings (monotonic, wall) and derives the
//! wall time of a monotonic reading from it, reading the wall clock again after [`ANCHOR_FOR`] so a
//! change to the system's time shows within that.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread's pair of readings serves.
pub(crate) const ANCHOR_FOR: Duration = Duration::from_millis(250);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The time since the Unix epoch at the monotonic reading `at` (taken by this thread moments ago).
pub(crate) fn since_epoch(at: Instant) -> Duration {
    if let Ok(Some((mono, wall))) = ANCHOR.try_with(Cell::get) {
        if let Some(after) = at.checked_duration_since(mono) {
            if after < ANCHOR_FOR {
                return wall + after;
            }
        }
    }
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mono = Instant::now();
    let _ = ANCHOR.try_with(|a| a.set(Some((mono, wall))));
    match at.checked_duration_since(mono) {
        Some(after) => wall + after,
        None => wall.saturating_sub(mono.duration_since(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_time_is_the_wall_clock() {
        for _ in 0..3 {
            let at = Instant::now();
            let derived = since_epoch(at);
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970");
            assert!(
                derived <= wall + Duration::from_millis(5),
                "{derived:?} {wall:?}"
            );
            assert!(
                wall - derived < Duration::from_millis(50),
                "{derived:?} {wall:?}"
            );
            std::thread::sleep(ANCHOR_FOR / 2);
        }
        // A reading taken before the thread's pair (an older `Instant`) counts back from it.
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let _ = since_epoch(Instant::now() + ANCHOR_FOR); // renews the pair
        let derived = since_epoch(before);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        assert!(derived < wall && wall - derived < Duration::from_millis(100));
    }
}
