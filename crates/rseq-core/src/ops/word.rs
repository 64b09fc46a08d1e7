//! The operations on a region of per-CPU words (feature `list-and-word`):
//! compare-and-store (seed 001's cmpxchg) and add, without a lock prefix, with
//! restarts. Read a word from any thread with `PerCpu::slot(i)?.load(..)`.

use core::sync::atomic::AtomicUsize;

use crate::{arch, fallback, route};
use crate::{OpError, PerCpu};

impl PerCpu<AtomicUsize> {
    /// Stores `new` into the calling thread's CPU's word if it holds `expected`;
    /// otherwise returns `Mismatch(what it held)`.
    #[inline(always)]
    pub fn compare_and_store(&self, expected: usize, new: usize) -> Result<(), OpError> {
        route::run(
            self,
            // SAFETY: `run` passes the registered area, its index and that slot.
            |checked, word| unsafe { arch::word_compare_and_store(checked, word, expected, new) },
            |word| fallback::word_compare_and_store(word, expected, new),
            OpError::Mismatch,
        )
        .map(drop)
    }

    /// Adds `delta` (wrapping) to the calling thread's CPU's word; returns the value
    /// it held before.
    #[inline(always)]
    pub fn add(&self, delta: usize) -> Result<usize, OpError> {
        route::run(
            self,
            // SAFETY: as in `compare_and_store`.
            |checked, word| unsafe { arch::word_add(checked, word, delta) },
            |word| fallback::word_add(word, delta),
            OpError::Mismatch,
        )
    }
}
