//! What the allocator does once, on its first use, before that use takes any
//! lock or lets rseq-core decide its mode: apply the rseq switch of the
//! configuration (`CPUSLAB_RSEQ`), and register the fork handlers.
//!
//! [`ensure`] stands at the top of every path that can be a process's first use
//! (the per-CPU tier's creation, a zeroed miss, a large allocation, `stats`,
//! `trim`): the per-CPU caches may never exist (their mapping can fail), so no
//! single tier is always first.

use core::sync::atomic::{AtomicBool, Ordering};

static DONE: AtomicBool = AtomicBool::new(false);

/// Runs the first-use steps if they have not run yet (one load afterwards).
#[inline]
pub(crate) fn ensure() {
    if !DONE.load(Ordering::Acquire) {
        run();
    }
}

/// Both steps are idempotent, so racing first uses may both run them; `DONE` is
/// set last, so nobody skips them before they are done. Registering the fork
/// handlers may allocate: the reentered allocator runs the steps again,
/// harmlessly.
#[cold]
#[inline(never)]
fn run() {
    if !crate::config::rseq_enabled() {
        rseq_core::disable_rseq();
    }
    crate::fork::register_handlers();
    DONE.store(true, Ordering::Release);
}
