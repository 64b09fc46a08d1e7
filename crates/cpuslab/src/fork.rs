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

/// Registers the handlers on the allocator's first use, before that use takes
/// any lock, whatever tier serves it (the per-CPU caches may never exist: their
/// mapping can fail). Called at the top of every path that can be a process's
/// first: the per-CPU tier's creation, a zeroed miss, a large allocation.
#[inline]
pub(crate) fn ensure_handlers() {
    if !REGISTERED.load(Ordering::Acquire) {
        register_handlers();
    }
}

/// Registers the handlers once. glibc's registration may allocate: no lock of
/// ours is held here, and the reentered allocator finds them registered.
#[cold]
#[inline(never)]
fn register_handlers() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are plain functions that never unwind.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Whether the handlers are registered (for tests).
pub fn handlers_registered() -> bool {
    REGISTERED.load(Ordering::Acquire)
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
