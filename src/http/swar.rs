//! Bytes eight at a time in a `u64` ("SIMD within a register"): the checks a request's path and a
//! log line's values go through on every decision, a word per step instead of a table lookup per
//! byte.

/// `b` in every byte lane.
pub(crate) const fn lanes(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The eight bytes of `chunk` (which has at least eight) as a word, first byte lowest.
#[inline]
pub(crate) fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&chunk[..8]);
    u64::from_le_bytes(w)
}

/// True if some byte of `v` is zero (exact: the borrow can only mark lanes above a zero lane).
#[inline]
pub(crate) fn has_zero(v: u64) -> bool {
    v.wrapping_sub(lanes(1)) & !v & lanes(0x80) != 0
}

/// The top bit of every lane of `v` that is zero, and no other bit (no borrow crosses lanes).
#[inline]
pub(crate) fn zero_lanes(v: u64) -> u64 {
    !(((v & lanes(0x7f)).wrapping_add(lanes(0x7f))) | v) & lanes(0x80)
}

/// True if every byte of `v` is visible ASCII (`!` to `~`): the first test both the path check and
/// the log's value check make.
#[inline]
pub(crate) fn all_visible(v: u64) -> bool {
    // Below `!`: a lane minus 0x21 borrows into its top bit unless it was >= 0x21 (lanes >= 0x80
    // are refused by the second test, so their top bit cannot mislead); then DEL.
    let below = v.wrapping_sub(lanes(0x21)) & !v & lanes(0x80) != 0;
    !(below || v & lanes(0x80) != 0 || has_zero(v ^ lanes(0x7f)))
}

/// The position of the first `b` in `bytes` (for short texts: `memchr`'s setup cost more than
/// the search on a request's URI).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn find(bytes: &[u8], b: u8) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let hits = zero_lanes(word(chunk) ^ lanes(b));
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_alone() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut bytes = [b'a'; 8];
                bytes[at] = b;
                let v = word(&bytes);
                assert_eq!(has_zero(v), b == 0, "{b:#x} at {at}");
                assert_eq!(zero_lanes(v), if b == 0 { 0x80 << (8 * at) } else { 0 });
                assert_eq!(all_visible(v), (0x21..0x7f).contains(&b), "{b:#x} at {at}");
            }
        }
        // Every zero lane is marked, whatever its neighbours.
        let v = word(&[0, 1, 0, 0xff, 0, 0x80, 0x7f, 0]);
        assert_eq!(zero_lanes(v), 0x80 | 0x80 << 16 | 0x80 << 32 | 0x80 << 56);
    }

    proptest::proptest! {
        #[test]
        fn find_agrees_with_position(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), b: u8) {
            proptest::prop_assert_eq!(find(&bytes, b), bytes.iter().position(|&c| c == b));
        }
    }
}
