//! Per-CPU words: compare-and-store (seed 001's cmpxchg) and add, without a lock
//! prefix. Read a word from any thread with `PerCpu::slot(i)?.load(..)`.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch;
use crate::route;
use crate::{OpError, PerCpu};

impl PerCpu<AtomicUsize> {
    /// Stores `new` into the calling thread's CPU's word if it holds `expected`;
    /// otherwise returns `Mismatch(what it held)`.
    #[inline(always)]
    pub fn compare_and_store(&self, expected: usize, new: usize) -> Result<(), OpError> {
        route::run(
            self,
            // SAFETY: `run` passes the registered area, its index and that slot.
            |site, word| unsafe { arch::word_compare_and_store(site, word, expected, new) },
            |word| match word.load(Ordering::Relaxed) {
                current if current == expected => {
                    word.store(new, Ordering::Relaxed);
                    Ok(current)
                }
                current => Err(OpError::Mismatch(current)),
            },
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
            |site, word| unsafe { arch::word_add(site, word, delta) },
            |word| {
                let before = word.load(Ordering::Relaxed);
                word.store(before.wrapping_add(delta), Ordering::Relaxed);
                Ok(before)
            },
            OpError::Mismatch,
        )
    }
}
