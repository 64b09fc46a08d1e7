//! The order of a CPU's first batch of a class: objects handed out one after
//! another on different cache lines.
//!
//! A program's first allocations of a size often go to different threads: a
//! main thread allocates a block of state per worker, back to back, and hands
//! them out. Objects handed out one after another share cache lines (four 16 B
//! objects to a line), so the workers' writes would take the line from each
//! other's cores (false sharing), and a worker that frees its block and
//! allocates again gets the same block back from its CPU's stack, so it lasts.
//! The Hoard suite's cache-scratch measures exactly that (`benches/c/scratch.c`:
//! 5x slower than mimalloc, snmalloc and jemalloc, as tcmalloc and glibc are).
//! Allocators that send a freed block back to the thread that allocated it
//! avoid the reuse; cpuslab's stacks know nothing of owners.
//!
//! So the first batch each CPU's stack of a class receives from the depot
//! (its shelf's first refill of the class) is handed out in passes over the
//! batch, `stride` objects apart, lowest first in each pass: objects handed
//! out one after another never share a line, as long as the batch holds more
//! than two strides (those of the classes with a stride above 1 do).
//! Only the first batch: the others keep the ascending order that runs a
//! program's walks over its objects forwards, and spreading every batch cost
//! real programs 4-7% (jq, perl, python, sqlite: docs/benchmarks-preload.md,
//! "False sharing, and the next block prefetched").

use crate::depot::MAX_BATCH;
use crate::size_class::{Class, NUM_CLASSES};

/// Bytes of a cache line.
const LINE: usize = 64;

/// Objects of `size` bytes, laid out from a line boundary (spans start on a
/// page): the smallest distance, in objects, at which two never share a line.
const fn stride_of(size: usize) -> usize {
    if size == 0 || size.is_multiple_of(LINE) {
        return 1;
    }
    // The layout repeats every `LINE / gcd(size, LINE)` objects.
    let mut period = 1;
    while !(period * size).is_multiple_of(LINE) {
        period += 1;
    }
    let mut stride = 1;
    loop {
        let mut ok = true;
        let mut i = 0;
        while i < period {
            let last_line = (i * size + size - 1) / LINE;
            let first_line_after = (i + stride) * size / LINE;
            if last_line >= first_line_after {
                ok = false;
            }
            i += 1;
        }
        if ok {
            return stride;
        }
        stride += 1;
    }
}

/// Each class's stride: 256 entries, indexed by the `u8` class index, so
/// that the lookup needs no bounds check (as `size_class`'s tables).
static STRIDES: [u8; 256] = {
    let mut strides = [1; 256];
    let mut i = 0;
    while i < NUM_CLASSES {
        if let Some(class) = Class::from_index(i) {
            let stride = stride_of(class.size());
            assert!(stride <= u8::MAX as usize);
            strides[i] = stride as u8;
        }
        i += 1;
    }
    strides
};

/// Reorders `batch` (objects of `class`, the last one handed out first, as a
/// stack's batch push and the refill hand them out) so that objects handed out
/// one after another lie `stride` apart: passes over the batch sorted by
/// address, lowest first in each pass, but the lowest object of all last. A
/// batch beyond [`MAX_BATCH`] is left as it is.
pub(crate) fn spread(class: Class, batch: &mut [*mut u8]) {
    let stride = STRIDES[class.index()] as usize;
    let n = batch.len();
    if stride == 1 || n <= 1 || n > MAX_BATCH {
        return;
    }
    let mut sorted = [core::ptr::null_mut(); MAX_BATCH];
    let sorted = &mut sorted[..n];
    sorted.copy_from_slice(batch);
    sorted.sort_unstable();
    // Handed out first = last in the batch; the lowest object (often at
    // offset 0 of a page, as in every class: handed out first it would put
    // the first block of every size in one set of the L1 cache, which the C
    // pair measured; `central::alloc_batch`) goes last.
    let mut out = batch.iter_mut().rev();
    for pass in 0..stride {
        for &object in sorted.iter().skip(pass).step_by(stride) {
            if let Some(slot) = out.next() {
                *slot = object;
            }
        }
    }
    batch.rotate_right(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(object: usize, size: usize) -> core::ops::RangeInclusive<usize> {
        object / LINE..=(object + size - 1) / LINE
    }

    #[test]
    fn strides_are_the_smallest_that_separate_lines() {
        assert_eq!(stride_of(16), 4);
        assert_eq!(stride_of(32), 2);
        assert_eq!(stride_of(48), 2);
        assert_eq!(stride_of(64), 1);
        assert_eq!(stride_of(80), 2);
        assert_eq!(stride_of(128), 1);
        assert_eq!(stride_of(8), 8);
    }

    /// Spreads `objects` (addresses from a line-aligned base, ascending) as
    /// a batch from the central lists (the lowest moved first, handed out
    /// last) and checks what goes out.
    fn check(class: Class, objects: &[usize]) {
        let size = class.size();
        let mut batch: Vec<*mut u8> = objects.iter().rev().map(|&a| a as *mut u8).collect();
        batch.rotate_right(1);
        spread(class, &mut batch);
        let mut handed: Vec<usize> = batch.iter().rev().map(|&p| p as usize).collect();
        for pair in handed.windows(2) {
            let (a, b) = (lines(pair[0], size), lines(pair[1], size));
            assert!(
                a.end() < b.start() || b.end() < a.start(),
                "class of {size} B: {:#x} then {:#x}",
                pair[0],
                pair[1]
            );
        }
        if STRIDES[class.index()] > 1 {
            assert_eq!(
                handed.last(),
                objects.first(),
                "class of {size} B: the lowest last"
            );
        }
        handed.sort_unstable();
        assert_eq!(
            handed, objects,
            "class of {size} B: the same objects, once each"
        );
    }

    #[test]
    fn a_full_batch_goes_out_a_line_apart_in_every_class() {
        for class in Class::all() {
            let base = 1usize << 20;
            let objects: Vec<usize> = (0..MAX_BATCH).map(|i| base + i * class.size()).collect();
            check(class, &objects);
        }
    }

    #[test]
    fn first_batches_as_the_refill_asks_for_them_go_out_a_line_apart() {
        for class in Class::all() {
            let base = 1usize << 20;
            let want = class
                .batch_size()
                .min(crate::cpu_cache::base_capacity(class))
                .clamp(1, MAX_BATCH);
            let stride = STRIDES[class.index()] as usize;
            if stride == 1 {
                continue; // nothing to part
            }
            assert!(
                want > 2 * stride,
                "class of {} B: {want} objects",
                class.size()
            );
            let objects: Vec<usize> = (0..want).map(|i| base + i * class.size()).collect();
            check(class, &objects);
            // Objects missing here and there (a partial span) only part the
            // rest further.
            let some: Vec<usize> = objects.iter().copied().filter(|a| a % 3 != 0).collect();
            check(class, &some);
        }
    }
}
