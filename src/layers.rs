//! Which decoder blocks are capped (spec section 2).

use std::ops::RangeInclusive;

/// A `--acap-layer-range START END` as the user gave it: 0-based block indices, both ends
/// inclusive. `START <= 0` means 1 (block 0 is never capped) and `END <= 0` means "through the
/// last block".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerRange {
    /// First block as given (`<= 0` for the default).
    pub start: i64,
    /// Last block as given (`<= 0` for the default).
    pub end: i64,
}

impl LayerRange {
    /// A range from the two numbers of `--acap-layer-range`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// The blocks of a model with `n_layer` blocks that this range caps. Empty when it caps
    /// nothing (for example `START > END`, or a one-block model).
    pub fn blocks(&self, n_layer: u32) -> RangeInclusive<u32> {
        let n_layer = i64::from(n_layer);
        let start = if self.start <= 0 { 1 } else { self.start };
        let end = if self.end <= 0 { n_layer } else { self.end };
        // Blocks at or beyond n_layer do not exist and are ignored.
        let end = end.min(n_layer - 1);
        if end < start {
            // An empty range of the right type: 1..=0.
            #[allow(clippy::reversed_empty_ranges)]
            return 1..=0;
        }
        // 1 <= start <= end < n_layer <= u32::MAX, so both fit.
        (start as u32)..=(end as u32)
    }
}
