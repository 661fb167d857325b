//! A hint to the processor: start loading the cache line at an address that a decision reads
//! soon, so that its miss overlaps other work instead of stalling the decision.
//!
//! With 100,000 keys, 10,000 of them in turn, a remembered credential's decision reads four cache
//! lines that are mostly out of the processor's caches (the memo's set, the key entry, the
//! principal entry's header and first binding), one after the other: each is a trip to memory.
//! The memo's set is known as soon as the credential's tag is, before the proxy's headers are read;
//! the key entry and the principal's two lines as soon as the set is read (it keeps the address of
//! each entry's owner), before the route is resolved: by the decision all four are in the caches.

/// Asks the processor to load the cache line holding `p` into all its caches. Does nothing on
/// targets without a stable prefetch instruction.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is only a hint: it never faults, whatever the address (null, unmapped
    // or freed included), reads nothing into the program and changes no architectural state. SSE,
    // the feature the intrinsic is declared with, is part of every x86_64 processor.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
