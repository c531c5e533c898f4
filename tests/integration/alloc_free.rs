//! The capping path allocates nothing per token: a counting global allocator (this test
//! binary's) sees the same number of Rust heap allocations for decode steps with and without
//! capping, and that number is zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use acap::{AxisFile, AxisSet, AxisWriter, CapConfig, QuantType, Session, SessionParams, Special};

use crate::common::load;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations made by the current thread while counting is on.
pub struct CountingAllocator;

fn count() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Rust heap allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn decode_steps_allocate_nothing_with_or_without_capping() {
    let m = load(QuantType::Q8_0);
    let mut w = AxisWriter::new();
    for l in 1..=7u32 {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l), 256))
            .with_threshold(l, -1e6);
    }
    let axes = AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap();
    let tokens = m
        .tokenize(&"the cat sat on the mat ".repeat(20), Special::PROMPT)
        .unwrap();
    // One thread: the eval callback and the graph run on this (counted) thread.
    let params = SessionParams::default().with_n_ctx(256).with_threads(1);
    let mut counts = Vec::new();
    for cap in [None, Some(CapConfig::new(axes))] {
        let capping = cap.is_some();
        let mut p = params.clone();
        p.capping = cap;
        let mut s = Session::new(&m, p).unwrap();
        s.prefill(&tokens[..8]).unwrap();
        let n = allocations(|| {
            for k in 9..=40 {
                s.prefill(&tokens[..k]).unwrap();
            }
        });
        if capping {
            let rows: u64 = s.cap_stats().iter().map(|(_, st)| st.rows_capped).sum();
            assert!(rows >= 32 * 7, "the cap ran ({rows} rows capped)");
        }
        counts.push(n);
    }
    assert_eq!(
        counts,
        [0, 0],
        "Rust heap allocations in 32 decode steps: [uncapped, capped]"
    );
}
