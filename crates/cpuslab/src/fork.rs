//! fork() safety: `pthread_atfork` handlers take every allocator lock before the
//! fork and release them after it, in the parent and in the child, so that a
//! child of a multi-threaded parent never inherits a lock held by a thread that
//! does not exist there. Per-CPU stacks need nothing: a critical section either
//! committed before the fork or never happened.
//!
//! A process with one thread (glibc's `__libc_single_threaded`: no thread was
//! ever created) takes no lock, as glibc's own malloc does: no other thread can
//! hold one, and the forking thread itself, if a signal handler of its forks,
//! finishes what it interrupted in both processes. (Threads made by a raw
//! `clone`, which glibc does not count, are not supported, as by glibc.) Why:
//! the locks lie on about 22 pages, and after a fork each page written is a
//! fault and a copy in the parent and another fault in the child. A shell forks
//! for every command: bash under cpuslab took 158 faults for each `$(...)`
//! against glibc's 83 (docs/benchmarks-preload.md, "Real programs and forks").
//!
//! Lock order, the same everywhere: rseq-core's per-CPU locks (remote access and
//! the fallback), then the depot's shards, then the lower tiers
//! ([`lock_lower_tiers`]: central lists, page heap, large-mapping cache, span
//! record pool, metadata arena), then the spare thread caches' lock (held
//! alone everywhere else).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{central, depot, large_cache, meta, page_heap, span, thread_cache};

static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Whether the last `prepare` took the locks, so that the parent and the child
/// release them. Stored only when it changes: after a fork its page is shared
/// with the child, and a store would be a fault.
static LOCKED: AtomicBool = AtomicBool::new(false);

/// Registers the handlers once (`first_use` calls it before the allocator's
/// first use takes any lock). glibc's registration may allocate: no lock of ours
/// is held here, and the reentered allocator finds them registered.
#[cold]
#[inline(never)]
pub(crate) fn register_handlers() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::os::atfork(prepare, parent, child);
}

/// Whether the handlers are registered (for tests).
pub fn handlers_registered() -> bool {
    REGISTERED.load(Ordering::Acquire)
}

extern "C" fn prepare() {
    let locking = !rseq_core::single_threaded();
    if LOCKED.load(Ordering::Relaxed) != locking {
        LOCKED.store(locking, Ordering::Relaxed);
    }
    if locking {
        rseq_core::fork_prepare();
        depot::lock_all();
        lock_lower_tiers();
    }
}

extern "C" fn parent() {
    if LOCKED.load(Ordering::Relaxed) {
        // SAFETY: `prepare` took these locks in this thread.
        unsafe {
            unlock_lower_tiers();
            depot::unlock_all();
        }
        rseq_core::fork_parent();
    }
}

extern "C" fn child() {
    crate::decay::forked();
    if LOCKED.load(Ordering::Relaxed) {
        // SAFETY: the parent's forking thread, which this thread continues,
        // took these locks in `prepare`.
        unsafe {
            unlock_lower_tiers();
            depot::unlock_all();
        }
        rseq_core::fork_child();
    }
}

/// Whether the last fork's handlers took the locks (for tests: a process with
/// one thread takes none).
pub fn locked_at_last_fork() -> bool {
    LOCKED.load(Ordering::Relaxed)
}

/// Takes every lock of the lower tiers in lock order (central lists, page
/// heap, large-mapping cache, span record pool, metadata arena, the spare thread caches): call from a `pthread_atfork`
/// prepare handler, after the upper tiers' locks, so that the child never
/// inherits a lock held by a thread that does not exist there.
pub fn lock_lower_tiers() {
    central::lock_all();
    page_heap::lock();
    large_cache::lock();
    span::lock_pool();
    meta::lock();
    thread_cache::lock();
}

/// Releases what [`lock_lower_tiers`] took, in reverse order: call from both the parent
/// and the child `pthread_atfork` handlers.
///
/// # Safety
///
/// The calling thread took the locks with [`lock_lower_tiers`] (in the child: the
/// parent's thread that forked did).
pub unsafe fn unlock_lower_tiers() {
    // SAFETY: all six were taken by `lock_lower_tiers` (caller's contract).
    unsafe {
        thread_cache::unlock();
        meta::unlock();
        span::unlock_pool();
        large_cache::unlock();
        page_heap::unlock();
        central::unlock_all();
    }
}
