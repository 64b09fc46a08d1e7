//! Process-wide counts of what the restart contract did. Touched only on the abort
//! paths, which already cost a trip through the kernel, so they are always on.

use core::sync::atomic::{AtomicU64, Ordering};

/// Incremented by the abort handlers themselves (a `lock inc` in the asm), so no
/// Rust code runs for it on the paths that follow an abort.
pub(crate) static ABORTS: AtomicU64 = AtomicU64::new(0);
static CPU_MOVED: AtomicU64 = AtomicU64::new(0);
static GAVE_UP: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the restart counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sections the kernel aborted (preemption, signal delivery, migration).
    pub aborts: u64,
    /// Sections that found the thread on another CPU (or concurrency id) than the
    /// one it indexed, and exited before touching anything.
    pub cpu_moved: u64,
    /// Operations that restarted `MAX_RESTARTS` times and returned `Restarted`.
    pub gave_up: u64,
}

/// The counters so far (relaxed reads: a consistent-enough snapshot).
pub fn counters() -> Counters {
    Counters {
        aborts: ABORTS.load(Ordering::Relaxed),
        cpu_moved: CPU_MOVED.load(Ordering::Relaxed),
        gave_up: GAVE_UP.load(Ordering::Relaxed),
    }
}

#[cold]
pub(crate) fn note_cpu_moved() {
    CPU_MOVED.fetch_add(1, Ordering::Relaxed);
}

#[cold]
pub(crate) fn note_gave_up() {
    GAVE_UP.fetch_add(1, Ordering::Relaxed);
}
