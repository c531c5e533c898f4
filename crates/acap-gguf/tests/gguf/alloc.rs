//! Hostile counts must not cause large allocations: a tracking allocator records the largest
//! single allocation made by the current thread while a parse runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use acap_gguf::GgufFile;

use crate::common::Bytes;

struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with` because the allocator also runs while thread-locals are torn down.
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; recording
// only touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The largest single allocation made while parsing `bytes`.
fn peak_allocation(bytes: Vec<u8>) -> usize {
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let result = GgufFile::from_bytes(bytes);
    TRACKING.with(|t| t.set(false));
    assert!(result.is_err(), "hostile input was accepted");
    drop(result);
    PEAK.with(Cell::get)
}

#[test]
fn claimed_counts_never_drive_allocation_beyond_file_size() {
    // Each claims as many elements as the remaining bytes could hold at the minimum encoded
    // size, so the up-front count check passes and parsing fails only later.
    let filler = vec![0xffu8; 4096];
    let cases: Vec<(&str, Bytes)> = vec![
        ("kv count", Bytes::header(3, 0, 4096 / 13).raw(&filler)),
        ("tensor count", Bytes::header(3, 4096 / 24, 0).raw(&filler)),
        (
            "string array",
            Bytes::header(3, 0, 1)
                .kv("k", 9)
                .u32(8)
                .u64(4096 / 8)
                .raw(&filler),
        ),
        (
            "nested array",
            Bytes::header(3, 0, 1)
                .kv("k", 9)
                .u32(9)
                .u64(4096 / 12)
                .raw(&filler),
        ),
        (
            "bool array",
            Bytes::header(3, 0, 1)
                .kv("k", 9)
                .u32(7)
                .u64(4096)
                .raw(&filler),
        ),
        (
            "u64 array",
            Bytes::header(3, 0, 1)
                .kv("k", 9)
                .u32(10)
                .u64(4096 / 8 + 1)
                .raw(&filler),
        ),
    ];
    for (what, b) in cases {
        let len = b.len();
        let peak = peak_allocation(b.0);
        assert!(
            peak <= len,
            "{what}: allocated {peak} bytes for a {len}-byte input"
        );
    }
}
