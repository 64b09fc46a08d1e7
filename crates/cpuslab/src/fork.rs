//! fork() safety: `pthread_atfork` handlers take every allocator lock before the
//! fork and release them after it, in the parent and in the child, so that a
//! child of a multi-threaded parent never inherits a lock held by a thread that
//! does not exist there. Per-CPU stacks need nothing: a critical section either
//! committed before the fork or never happened.
//!
//! Lock order, the same everywhere: rseq-core's per-CPU locks (remote access and
//! the fallback), then the depot's shards, then the lower tiers (`heap::lock_all`).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{depot, heap};

static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers the handlers once. glibc's registration may allocate: this runs
/// after the allocator is usable, and reentry finds it registered.
pub(crate) fn register_handlers() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are plain functions that never unwind.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

extern "C" fn prepare() {
    rseq_core::fork_prepare();
    depot::lock_all();
    heap::lock_all();
}

extern "C" fn parent() {
    // SAFETY: `prepare` took these locks in this thread.
    unsafe {
        heap::unlock_all();
        depot::unlock_all();
    }
    rseq_core::fork_parent();
}

extern "C" fn child() {
    // SAFETY: the parent's forking thread, which this thread continues, took
    // these locks in `prepare`.
    unsafe {
        heap::unlock_all();
        depot::unlock_all();
    }
    rseq_core::fork_child();
}
