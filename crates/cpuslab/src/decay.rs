//! The decay's state and clock: when free memory the program stopped using
//! moves down the tiers and back to the OS. This module only decides; the work
//! is done by `cpu_cache.rs` (a sweep, from the slow paths) and `background.rs`
//! (the optional thread), so that every tier can consult it without a circle.
//!
//! Every decay interval (1 s by default, `set_interval_ms`), the first slow path
//! that notices starts a **sweep**: the depot's batches go back to their spans,
//! the page heap decommits its idle runs, and then, [`STACKS_PER_STEP`] stacks
//! per slow path, every per-CPU stack gives the bottom half of its objects (the
//! coldest: the stacks are LIFO) back to the spans through rseq-core's remote
//! protocol. A class a CPU keeps using refills at its next miss; a class it
//! stopped using halves every interval. The work per call is bounded: one depot
//! flush at a sweep's start, then at most [`STACKS_PER_STEP`] stacks.
//!
//! The depot's and the page heap's budgets apply only once the program shrinks:
//! [`SHRINKING_BYTES`] went down the tiers (objects to the depot, empty spans to
//! the page heap) with nothing taken back ([`budgets_apply`]). A program that
//! frees and allocates in rounds (the `batch` benchmark cycles 26 MiB) keeps its
//! memory warm between rounds; one that frees what it has gets it back at once.

use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::os;

/// Stacks one slow path halves at most.
pub(crate) const STACKS_PER_STEP: usize = 8;
/// Freeing this much without taking anything back means the program is
/// shrinking, not cycling: the budgets apply.
const SHRINKING_BYTES: usize = 64 << 20;
/// Default decay interval, and the page heap's idle time before a free run is
/// decommitted.
pub(crate) const DEFAULT_INTERVAL_MS: u64 = 1000;
/// The cursor's value between sweeps.
const IDLE: usize = usize::MAX;

static INTERVAL_MS: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL_MS);
/// The next stack to halve (shelf * classes + class), or `IDLE`.
static CURSOR: AtomicUsize = AtomicUsize::new(IDLE);
/// When the last sweep started (CLOCK_MONOTONIC_COARSE ms), or, before the
/// first one, when the allocator's first slow path ran (0: not yet). So the
/// first sweep comes an interval after start-up, not at the first slow path,
/// where it would only drain the stacks being filled (and pay the remote
/// fence's one-time registration, up to 5 ms here, inside the program's
/// start).
static LAST_SWEEP_MS: AtomicU64 = AtomicU64::new(0);
/// Sweeps started so far.
static SWEEPS: AtomicUsize = AtomicUsize::new(0);
/// Bytes freed down the tiers (objects the per-CPU caches gave the depot, spans
/// the central lists gave the page heap) since memory was last taken from them
/// (a depot refill, a new span).
static FREED_SINCE_REFILL: AtomicUsize = AtomicUsize::new(0);
/// Bumped at every refill that ends a shrinking phase (for the depot's one
/// shedding pass per phase).
static REFILLS: AtomicUsize = AtomicUsize::new(0);

/// Sets the decay interval in milliseconds (0: at once; `u64::MAX`: never, only
/// `trim` returns memory).
pub fn set_interval_ms(ms: u64) {
    INTERVAL_MS.store(ms, Ordering::Relaxed);
}

/// The decay interval in milliseconds.
pub(crate) fn interval_ms() -> u64 {
    INTERVAL_MS.load(Ordering::Relaxed)
}

// --- the shrinking signal -----------------------------------------------------------

/// Notes that memory was taken from the lower tiers (a slow path).
#[inline]
pub(crate) fn note_refill() {
    if FREED_SINCE_REFILL.load(Ordering::Relaxed) != 0 {
        FREED_SINCE_REFILL.store(0, Ordering::Relaxed);
        REFILLS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Notes that `bytes` went down the tiers (an overflow to the depot, an empty
/// span to the page heap).
#[inline]
pub(crate) fn note_freed(bytes: usize) {
    FREED_SINCE_REFILL.fetch_add(bytes, Ordering::Relaxed);
}

/// Whether the free-memory budgets apply now: once the program has freed
/// [`SHRINKING_BYTES`] without taking anything back.
pub(crate) fn budgets_apply() -> bool {
    FREED_SINCE_REFILL.load(Ordering::Relaxed) >= SHRINKING_BYTES
}

/// Which shrinking phase this is (changes at every refill that ends one).
pub(crate) fn phase() -> usize {
    REFILLS.load(Ordering::Relaxed)
}

// --- sweeps ---------------------------------------------------------------------------

/// What a slow path should do for the decay now.
pub(crate) enum Due {
    /// Nothing.
    Nothing,
    /// Start a sweep (flush the depot, decay the page heap), then halve these.
    Start(core::ops::Range<usize>),
    /// Halve these stacks of the running sweep.
    Halve(core::ops::Range<usize>),
}

/// One clock read and two loads when there is nothing to do. `stacks` is the
/// number of per-CPU stacks (0 before the per-CPU tier exists).
#[inline]
pub(crate) fn due(stacks: usize) -> Due {
    if CURSOR.load(Ordering::Relaxed) == IDLE && !interval_passed() {
        return Due::Nothing;
    }
    claim(stacks)
}

fn interval_passed() -> bool {
    let interval = interval_ms();
    interval != u64::MAX
        && os::now_ms().wrapping_sub(LAST_SWEEP_MS.load(Ordering::Relaxed)) >= interval
}

/// Starts a sweep if none runs and it is due, or claims the next stacks of the
/// running one.
#[cold]
#[inline(never)]
fn claim(stacks: usize) -> Due {
    let mut start = false;
    if CURSOR.load(Ordering::Acquire) == IDLE {
        let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
        let now = os::now_ms();
        let interval = interval_ms();
        if last == 0 && interval != 0 {
            // The first slow path starts the clock (whoever wins).
            let _ =
                LAST_SWEEP_MS.compare_exchange(0, now.max(1), Ordering::AcqRel, Ordering::Relaxed);
            return Due::Nothing;
        }
        if interval == u64::MAX || now.wrapping_sub(last) < interval {
            return Due::Nothing;
        }
        // One thread starts the sweep; the others go on with their work.
        if LAST_SWEEP_MS
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Due::Nothing;
        }
        SWEEPS.fetch_add(1, Ordering::Relaxed);
        CURSOR.store(0, Ordering::Release);
        start = true;
    }
    let first = CURSOR.fetch_add(STACKS_PER_STEP, Ordering::AcqRel);
    let range = first.min(stacks)..(first.saturating_add(STACKS_PER_STEP)).min(stacks);
    if first >= stacks {
        // The sweep is done (several threads may see it; a late store can only
        // cut short a sweep that started since, which the next interval redoes).
        CURSOR.store(IDLE, Ordering::Release);
    }
    if start {
        Due::Start(range)
    } else {
        Due::Halve(range)
    }
}

/// Whether a sweep is running or due (the background thread's loop).
pub(crate) fn pending() -> bool {
    sweeping() || interval_passed()
}

/// Whether a sweep is running (started, not all stacks claimed yet).
pub(crate) fn sweeping() -> bool {
    CURSOR.load(Ordering::Relaxed) != IDLE
}

/// Sweeps started so far, and when the last one started (ms ago; `None`: never).
pub(crate) fn stats() -> (usize, Option<u64>) {
    let sweeps = SWEEPS.load(Ordering::Relaxed);
    let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
    let ago = (sweeps != 0).then(|| os::now_ms().saturating_sub(last));
    (sweeps, ago)
}

// --- the background thread's state ------------------------------------------------------

const OFF: u8 = 0;
const RUNNING: u8 = 1;
/// Wanted, but not running (a fork's child): the next slow path restarts it.
const WANTED: u8 = 2;

static BACKGROUND: AtomicU8 = AtomicU8::new(OFF);
/// How to start the thread again (set by `background.rs` when it starts it).
static RESTART: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Marks the thread running (true) or gone (false); returns whether it was
/// running before.
pub(crate) fn set_background_running(running: bool, restart: fn() -> bool) -> bool {
    RESTART.store(restart as *mut (), Ordering::Release);
    BACKGROUND.swap(if running { RUNNING } else { OFF }, Ordering::AcqRel) == RUNNING
}

/// Whether the background thread runs.
pub(crate) fn background_running() -> bool {
    BACKGROUND.load(Ordering::Acquire) == RUNNING
}

/// In a fork's child (the atfork handler): the thread did not come along.
pub(crate) fn forked() {
    // Tested first: a compare-and-swap writes its page even when it fails,
    // which after a fork is a fault.
    if BACKGROUND.load(Ordering::Relaxed) == RUNNING {
        let _ = BACKGROUND.compare_exchange(RUNNING, WANTED, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// From a slow path: restarts the thread in a fork's child that had it.
#[inline]
pub(crate) fn restart_background_if_wanted() {
    if BACKGROUND.load(Ordering::Relaxed) == WANTED {
        restart_background();
    }
}

#[cold]
#[inline(never)]
fn restart_background() {
    let restart = RESTART.load(Ordering::Acquire);
    if !restart.is_null() {
        // SAFETY: only `set_background_running` stores here, a `fn() -> bool`.
        let restart: fn() -> bool = unsafe { core::mem::transmute(restart) };
        restart();
    }
}
