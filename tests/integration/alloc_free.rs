//! The capping path allocates nothing per token: counted per thread, decode steps make no
//! Rust heap allocation, and as many C/C++ heap allocations (llama.cpp's own, counted by the
//! `malloc` family this binary defines over glibc's) capped as uncapped, on the host loop
//! and on the graph path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;

use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, CapPath, QuantType, Session, SessionParams, Special,
};

use crate::common::load;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static C_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations made by the current thread while counting is on.
pub struct CountingAllocator;

fn count(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = counter.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

// glibc's own allocator entry points: the functions below count, then forward to them, so
// the process keeps one allocator (and `free` stays glibc's).
unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

/// `malloc` for the whole process (llama.cpp, libstdc++'s `operator new`, Rust's `System`).
///
/// # Safety
/// glibc's `malloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    count(&C_ALLOCATIONS);
    // SAFETY: forwarded unchanged to glibc's allocator.
    unsafe { __libc_malloc(size) }
}

/// `calloc`, counted.
///
/// # Safety
/// glibc's `calloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    count(&C_ALLOCATIONS);
    // SAFETY: forwarded unchanged to glibc's allocator.
    unsafe { __libc_calloc(n, size) }
}

/// `realloc`, counted.
///
/// # Safety
/// glibc's `realloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    count(&C_ALLOCATIONS);
    // SAFETY: forwarded unchanged to glibc's allocator.
    unsafe { __libc_realloc(ptr, size) }
}

/// `posix_memalign` (ggml's aligned buffers), counted.
///
/// # Safety
/// glibc's `posix_memalign` contract: `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    count(&C_ALLOCATIONS);
    if !align.is_power_of_two() || align % std::mem::size_of::<usize>() != 0 {
        return 22; // EINVAL
    }
    // SAFETY: forwarded to glibc's allocator; `out` is writable by the caller's contract.
    unsafe {
        let p = __libc_memalign(align, size);
        if p.is_null() && size != 0 {
            return 12; // ENOMEM
        }
        *out = p;
    }
    0
}

/// `aligned_alloc`, counted.
///
/// # Safety
/// glibc's `aligned_alloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    count(&C_ALLOCATIONS);
    // SAFETY: forwarded unchanged to glibc's allocator.
    unsafe { __libc_memalign(align, size) }
}

/// Rust and C heap allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> (u64, u64) {
    ALLOCATIONS.with(|n| n.set(0));
    C_ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.with(Cell::get), C_ALLOCATIONS.with(Cell::get))
}

#[test]
fn the_c_allocator_is_counted() {
    // The `malloc` above is the one llama.cpp and libstdc++ call: without it the comparison
    // below would compare zero with zero.
    let m = load(QuantType::Q8_0);
    let (_, c) = allocations(|| {
        let mut s =
            Session::new(&m, SessionParams::default().with_n_ctx(64).with_threads(1)).unwrap();
        s.prefill(&[1, 2, 3]).unwrap();
    });
    assert!(c > 10, "{c} C allocations for a new session");
}

/// Blocks capped (or observed) in the counting test.
const BLOCKS: [u32; 7] = [1, 2, 3, 4, 5, 6, 7];
/// Decode steps counted.
const STEPS: u64 = 32;

#[test]
fn decode_steps_allocate_nothing_with_or_without_capping() {
    let m = load(QuantType::Q8_0);
    let mut w = AxisWriter::new();
    for l in BLOCKS {
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
    // (path, capping, observing the capped blocks without capping them)
    let runs = [
        (CapPath::Host, false, false),
        (CapPath::Host, false, true),
        (CapPath::Host, true, false),
        (CapPath::Graph, true, false),
    ];
    let mut counts = Vec::new();
    for (path, capping, observing) in runs {
        let mut p = params.clone().with_cap_path(path);
        if capping {
            p.capping = Some(CapConfig::new(axes.clone()));
        }
        let mut s = Session::new(&m, p).unwrap();
        if observing {
            s.set_observer(&BLOCKS, |_| {});
        }
        s.prefill(&tokens[..8]).unwrap();
        let n = allocations(|| {
            for k in 9..9 + STEPS as usize {
                s.prefill(&tokens[..k]).unwrap();
            }
        });
        if capping {
            let rows: u64 = s.cap_stats().iter().map(|(_, st)| st.rows_capped).sum();
            assert!(
                rows >= STEPS * 7,
                "the cap ran on {path} ({rows} rows capped)"
            );
        }
        counts.push(n);
    }
    let rust: Vec<u64> = counts.iter().map(|c| c.0).collect();
    assert_eq!(
        rust, [0; 4],
        "Rust heap allocations in {STEPS} decode steps: \
         [uncapped, observed, host loop, graph path]"
    );
    let [plain, observed, host, graph] = [0, 1, 2, 3].map(|i| counts[i].1);
    // Asking for a block's output cuts llama.cpp's graph there, and ggml allocates for every
    // piece it computes (its CPU init and a throw-away thread pool): the same whether the
    // callback observes or caps.
    assert!(observed > plain, "cutting the graph: {observed} vs {plain}");
    assert_eq!(host, observed, "C heap allocations the host loop adds");
    // The graph path's only ones: ggml_graph_compute's own CPU init (a ggml_init/ggml_free
    // pair, 2 allocations) for each graph. GPU backends do not have it.
    let per_graph = (graph - observed) as f64 / (STEPS * BLOCKS.len() as u64) as f64;
    assert_eq!(
        graph - observed,
        2 * STEPS * BLOCKS.len() as u64,
        "C heap allocations the graph path adds: {per_graph} per capped block and step"
    );
}
