//! Deterministic mode's rule for reusing cached keys and values.
//!
//! The vendored CPU kernels do not compute a row the same way in every batch shape: a
//! quantised matrix product takes rows in groups (repacked Q4_K multiplies four rows at a
//! time, one row alone on another path), and attention sums over cache cells in SIMD lanes,
//! so where a sequence's keys sit in the cache changes the rounding. A token's keys and
//! values therefore depend on how it was batched, and every later token inherits that.
//!
//! A request run alone on a fresh process batches its prompt as whole physical batches
//! (`n_ubatch` tokens) starting at position 0, then decodes one token at a time. In
//! deterministic mode every request is batched exactly so, whatever ran before or beside it,
//! and cached keys and values are reused only for the leading whole physical batches that
//! were computed that way (as prompt, from position 0): those are bit-identical to what a
//! fresh run computes, so reusing them cannot change the result. Tokens decoded one at a
//! time during generation are never reused, since a fresh run would batch them as prompt.

/// How much of a sequence's cache deterministic mode may reuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CanonicalPrefix {
    /// The physical batch size; 0 when deterministic mode is off (everything is reusable).
    ubatch: usize,
    /// Leading cached tokens computed as whole physical batches aligned at position 0.
    len: usize,
}

impl CanonicalPrefix {
    /// The rule for a context with physical batch `n_ubatch`, on when `deterministic`.
    pub(crate) fn new(deterministic: bool, n_ubatch: u32) -> Self {
        Self {
            ubatch: if deterministic { n_ubatch as usize } else { 0 },
            len: 0,
        }
    }

    /// Whether deterministic mode is on.
    pub(crate) fn is_on(&self) -> bool {
        self.ubatch > 0
    }

    /// Of `common` tokens shared with the cache, how many may be reused.
    pub(crate) fn reusable(&self, common: usize) -> usize {
        if self.is_on() {
            common.min(self.len) / self.ubatch * self.ubatch
        } else {
            common
        }
    }

    /// The cache was cut to its first `n` tokens.
    pub(crate) fn truncate(&mut self, n: usize) {
        if self.is_on() {
            self.len = self.len.min(n) / self.ubatch * self.ubatch;
        }
    }

    /// How many of `pending` prompt tokens go into the next decode call, at most `limit`:
    /// in deterministic mode one physical batch (the prompt starts on a batch boundary, so
    /// every chunk but the last is whole).
    pub(crate) fn chunk(&self, pending: usize, limit: usize) -> usize {
        if self.is_on() {
            pending.min(self.ubatch)
        } else {
            pending.min(limit)
        }
    }

    /// `n` prompt tokens starting at position `start` were decoded as one call: a whole
    /// physical batch right after the canonical prefix extends it.
    pub(crate) fn decoded_prompt(&mut self, start: usize, n: usize) {
        if self.is_on() && start == self.len && n == self.ubatch {
            self.len += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_reuses_everything() {
        let mut c = CanonicalPrefix::new(false, 4);
        assert_eq!(c.reusable(7), 7);
        c.decoded_prompt(0, 4);
        assert_eq!((c.reusable(7), c.chunk(10, 6)), (7, 6));
    }

    #[test]
    fn on_reuses_whole_aligned_prompt_batches_only() {
        let mut c = CanonicalPrefix::new(true, 4);
        assert_eq!(c.reusable(7), 0, "nothing computed yet");
        c.decoded_prompt(0, 4);
        c.decoded_prompt(4, 4);
        c.decoded_prompt(8, 3); // the prompt's partial last batch
        c.decoded_prompt(11, 1); // a generated token
        assert_eq!(c.reusable(20), 8);
        assert_eq!(c.reusable(7), 4, "rounded down to a batch boundary");
        assert_eq!(c.chunk(10, 100), 4);
        c.truncate(5);
        assert_eq!(c.reusable(20), 4);
        c.decoded_prompt(5, 4); // not right after the prefix: not canonical
        assert_eq!(c.reusable(20), 4);
    }
}
