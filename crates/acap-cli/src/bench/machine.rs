//! What the machine can do and what the process uses: memory read bandwidth, resident memory.

use std::hint::black_box;
use std::time::Instant;

/// Memory read bandwidth in bytes per second: `threads` threads each sum their share of a
/// buffer far larger than the caches; the best of `reps` passes.
pub fn read_bandwidth(bytes: usize, threads: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads);
    let mut best = 0f64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in buf.chunks(chunk) {
                s.spawn(move || {
                    // Eight independent sums so the loop is limited by loads, not by one add
                    // chain; the compiler vectorises it.
                    let mut acc = [0u64; 8];
                    for block in part.chunks_exact(8) {
                        for i in 0..8 {
                            acc[i] = acc[i].wrapping_add(block[i]);
                        }
                    }
                    black_box(acc);
                });
            }
        });
        best = best.max((n * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// Resident memory of this process, from `/proc/self/status` (Linux), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rss {
    /// Peak resident set since the last [`reset_peak`] (`VmHWM`).
    pub peak: u64,
    /// Anonymous memory (heap, copies) (`RssAnon`).
    pub anon: u64,
    /// File-backed pages, e.g. a memory-mapped model (`RssFile`).
    pub file: u64,
}

/// Reads [`Rss`]; zeros where `/proc` is unavailable.
pub fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Rss {
        peak: field("VmHWM:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// Resets the peak resident set to the current one (Linux `clear_refs` 5), so a model's peak
/// is measured on its own.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Whether `path` is memory-mapped into this process (`/proc/self/maps`).
pub fn is_mapped(path: &std::path::Path) -> bool {
    let Ok(canonical) = path.canonicalize() else {
        return false;
    };
    let needle = canonical.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/maps")
        .is_ok_and(|maps| maps.lines().any(|l| l.ends_with(needle.as_str())))
}

/// The CPU's model name, for the report.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_is_plausible() {
        let bw = read_bandwidth(64 << 20, 1, 2);
        // Between 100 MB/s and 1 TB/s on anything that runs these tests.
        assert!((1e8..1e12).contains(&bw), "{bw}");
    }

    #[test]
    fn rss_sees_a_touched_allocation() {
        reset_peak();
        let before = rss();
        let v = vec![1u8; 64 << 20];
        black_box(&v);
        let after = rss();
        assert!(
            after.anon >= before.anon + (48 << 20),
            "{before:?} -> {after:?}"
        );
        assert!(after.peak >= after.anon);
    }
}
