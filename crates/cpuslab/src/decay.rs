//! The decay: free memory the program stopped using moves down the tiers and back
//! to the OS over time, driven by the allocator's own slow paths (and by the
//! optional background thread, `background.rs`), never by a fast path.
//!
//! Every decay interval (the page heap's decay time, 1 s by default), the first
//! slow path that notices starts a **sweep**: the depot's batches go back to their
//! spans (`depot::flush`) and the page heap decommits its idle runs; then, a few
//! stacks per slow path ([`STACKS_PER_STEP`]), every per-CPU stack gives the
//! bottom half of its objects (the coldest: the stacks are LIFO) back to the
//! spans, through rseq-core's remote protocol. A class a CPU keeps using refills
//! from the depot at its next miss; a class it stopped using halves every
//! interval, and its spans empty into the page heap, which decommits past its
//! retained budget at once. The work per call is bounded: one depot flush at a
//! sweep's start, then at most [`STACKS_PER_STEP`] stacks.
//!
//! The depot's and the page heap's budgets apply only once the program has
//! freed 64 MiB without taking anything back ([`budgets_apply`]): a program
//! that frees and allocates in rounds (the `batch` benchmark cycles 26 MiB)
//! keeps its memory warm between rounds, while one that frees what it has gets
//! it returned at once.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::{cpu_cache, depot, os, page_heap};

/// Stacks one slow path halves at most.
const STACKS_PER_STEP: usize = 8;
/// The cursor's value between sweeps.
const IDLE: usize = usize::MAX;

/// The next stack to halve (shelf * classes + class), or `IDLE`.
static CURSOR: AtomicUsize = AtomicUsize::new(IDLE);
/// When the last sweep started (CLOCK_MONOTONIC_COARSE ms; 0: never).
static LAST_SWEEP_MS: AtomicU64 = AtomicU64::new(0);
/// Sweeps started so far.
static SWEEPS: AtomicUsize = AtomicUsize::new(0);
/// Bytes freed down the tiers (objects the per-CPU caches gave the depot, spans
/// the central lists gave the page heap) since memory was last taken from them
/// (a depot refill, a new span).
static FREED_SINCE_REFILL: AtomicUsize = AtomicUsize::new(0);
/// Freeing this much without taking anything back means the program is
/// shrinking, not cycling: the budgets apply.
const SHRINKING_BYTES: usize = 64 << 20;

/// Notes that memory was taken from the lower tiers (a slow path).
#[inline]
pub(crate) fn note_refill() {
    if FREED_SINCE_REFILL.load(Ordering::Relaxed) != 0 {
        FREED_SINCE_REFILL.store(0, Ordering::Relaxed);
        depot::note_refill();
    }
}

/// Notes that `bytes` went down the tiers (an overflow to the depot, an empty
/// span to the page heap).
#[inline]
pub(crate) fn note_freed(bytes: usize) {
    FREED_SINCE_REFILL.fetch_add(bytes, Ordering::Relaxed);
}

/// Whether the free-memory budgets apply now: once the program has freed
/// [`SHRINKING_BYTES`] without taking anything back. A program that frees and
/// allocates in rounds (the `batch` benchmark cycles 26 MiB) keeps its memory
/// warm between them, where returning it would only cost page faults; one that
/// frees what it has gets it back at once.
pub(crate) fn budgets_apply() -> bool {
    FREED_SINCE_REFILL.load(Ordering::Relaxed) >= SHRINKING_BYTES
}

/// Called by the slow paths (misses, overflows) with no lock held: one clock
/// read and two loads when there is nothing to do.
#[inline]
pub(crate) fn tick() {
    crate::background::restart_if_wanted();
    if CURSOR.load(Ordering::Relaxed) != IDLE || interval_passed(os::now_ms()) {
        step();
    }
}

/// Runs whole sweeps now (the background thread; `interval_passed` still
/// decides whether a new one starts).
pub(crate) fn run_due() {
    while CURSOR.load(Ordering::Relaxed) != IDLE || interval_passed(os::now_ms()) {
        step();
    }
}

fn interval_passed(now: u64) -> bool {
    let interval = page_heap::decay_ms();
    interval != u64::MAX && now.wrapping_sub(LAST_SWEEP_MS.load(Ordering::Relaxed)) >= interval
}

/// Starts a sweep if none runs and it is due, then halves the next few stacks.
#[cold]
#[inline(never)]
fn step() {
    if CURSOR.load(Ordering::Acquire) == IDLE {
        let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
        let now = os::now_ms();
        let interval = page_heap::decay_ms();
        if interval == u64::MAX || now.wrapping_sub(last) < interval {
            return;
        }
        // One thread starts the sweep; the others go on with their work.
        if LAST_SWEEP_MS
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        SWEEPS.fetch_add(1, Ordering::Relaxed);
        depot::flush();
        page_heap::decay();
        CURSOR.store(0, Ordering::Release);
    }
    let stacks = cpu_cache::stack_count();
    let first = CURSOR.fetch_add(STACKS_PER_STEP, Ordering::AcqRel);
    if first >= stacks {
        // The sweep is done (several threads may see it; a late store can only
        // cut short a sweep that started since, which the next interval redoes).
        CURSOR.store(IDLE, Ordering::Release);
        return;
    }
    for stack in first..(first + STACKS_PER_STEP).min(stacks) {
        cpu_cache::halve(stack);
    }
}

/// Sweeps started so far, and when the last one started (ms ago; `None`: never).
pub(crate) fn stats() -> (usize, Option<u64>) {
    let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
    let ago = (last != 0).then(|| os::now_ms().saturating_sub(last));
    (SWEEPS.load(Ordering::Relaxed), ago)
}
