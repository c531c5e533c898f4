//! The capping operation on rows of the residual stream (spec section 1).

/// Lanes of independent f32 accumulators: enough for the compiler to fill AVX-512 registers.
const LANES: usize = 16;

/// `dot(a, h)` in f32, accumulated in 16 independent lanes so it vectorises.
#[inline]
pub fn dot(a: &[f32], h: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), h.len());
    let n = a.len().min(h.len());
    let (a, h) = (&a[..n], &h[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut ch = h.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut ch) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(ch.remainder()) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// Caps one row in place: `h' = h - alpha * max(0, dot(a, h) - tau) * a`. Returns the excess
/// `dot(a, h) - tau` when it was positive (the row changed), `None` when the row is left
/// bit-identical.
#[inline]
pub fn cap_row(row: &mut [f32], axis: &[f32], tau: f32, alpha: f32) -> Option<f32> {
    let excess = dot(axis, row) - tau;
    // `excess > 0` is false for NaN too: such a row is left alone rather than poisoned.
    if excess > 0.0 {
        let k = alpha * excess;
        // alpha 0 must leave the row bit-identical (`-0.0 - 0.0 * a` could flip a zero's sign).
        if k != 0.0 {
            let n = axis.len().min(row.len());
            for (h, a) in row[..n].iter_mut().zip(&axis[..n]) {
                *h -= k * a;
            }
        }
        Some(excess)
    } else {
        None
    }
}

/// Per-layer capping telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerStats {
    /// Rows (tokens) the cap looked at.
    pub rows_seen: u64,
    /// Rows whose projection exceeded `tau` and were pulled back.
    pub rows_capped: u64,
    /// Sum of the excess over capped rows.
    pub sum_excess: f64,
    /// Largest excess seen.
    pub max_excess: f32,
    /// Time spent capping this block's rows inside the eval callback (projections and
    /// updates), in nanoseconds: the callback's own cost.
    pub nanos: u64,
}

impl LayerStats {
    /// Mean excess over capped rows (0 when none were capped).
    pub fn mean_excess(&self) -> f64 {
        if self.rows_capped == 0 {
            0.0
        } else {
            self.sum_excess / self.rows_capped as f64
        }
    }

    /// Fraction of rows capped.
    pub fn capped_fraction(&self) -> f64 {
        if self.rows_seen == 0 {
            0.0
        } else {
            self.rows_capped as f64 / self.rows_seen as f64
        }
    }
}

/// Caps every row of `data` (rows of `axis.len()` values) and updates `stats`.
pub fn cap_rows(data: &mut [f32], axis: &[f32], tau: f32, alpha: f32, stats: &mut LayerStats) {
    if axis.is_empty() {
        return;
    }
    for row in data.chunks_exact_mut(axis.len()) {
        stats.rows_seen += 1;
        if let Some(excess) = cap_row(row, axis, tau, alpha) {
            stats.rows_capped += 1;
            stats.sum_excess += f64::from(excess);
            stats.max_excess = stats.max_excess.max(excess);
        }
    }
}
