//! Arbitrary bytes into the record codec: an error, never a panic or a huge allocation. Whatever does
//! decode re-encodes to bytes that decode to the same value.
//!
//! The first byte picks the record type; the rest is the stored value (version byte first).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::store::{
    decode, encode, AuditEntry, Binding, KeyRecord, Principal, Record, Workspace, MAX_RECORD_LEN,
};
use libfuzzer_sys::fuzz_target;

/// Records the largest single allocation made while decoding.
struct Watch;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Watch = Watch;

/// No decode may allocate more than this at once, whatever the input claims: serde pre-allocates a list
/// from its claimed length up to 1 MiB (`size_hint::cautious`) before reading its elements (see
/// `store::codec`); everything else is bounded by bincode's `MAX_RECORD_LEN` limit.
const LIMIT: usize = (1 << 20) + MAX_RECORD_LEN;

fn check<T: Record + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    LARGEST.store(0, Ordering::Relaxed);
    let decoded = decode::<T>(bytes);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= LIMIT,
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    match decoded {
        Ok(value) => {
            let again = encode(&value).expect("a decoded record encodes");
            assert_eq!(decode::<T>(&again).expect("re-decodes"), value);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => check::<KeyRecord>(bytes),
        1 => check::<Principal>(bytes),
        2 => check::<Binding>(bytes),
        3 => check::<Workspace>(bytes),
        _ => check::<AuditEntry>(bytes),
    }
});
