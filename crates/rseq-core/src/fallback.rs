//! The fallback engine's per-CPU locks (seed 000's per-CPU lock, keyed by
//! `sched_getcpu()`), also used to serialise remote access in every mode.
//!
//! The locks are a static array: no allocation, and CPU ids beyond it share a lock
//! (correct, merely contended). Holders never block on anything else, so a waiter
//! spins briefly and then yields the CPU to a preempted holder.
//!
//! A lock word holds its holder's thread pointer (0 when free). A thread that
//! finds its own thread pointer there was interrupted by a signal while holding
//! the lock, and runs in the handler: waiting would deadlock, so it is told
//! instead ([`lock`] returns None, and the operation reports `Unavailable`).
//!
//! [`pop`] and [`push`] are public only so that benchmarks can measure the fallback
//! beside the rseq engine in one process.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::stack::{self, Stack};
use crate::{OpError, PerCpu};

const LOCK_COUNT: usize = 256;
const SPINS_BEFORE_YIELD: u32 = 64;
const FREE: usize = 0;
const _: () = assert!(LOCK_COUNT.is_multiple_of(64));

#[repr(align(64))]
struct CpuLock(AtomicUsize);

static LOCKS: [CpuLock; LOCK_COUNT] = [const { CpuLock(AtomicUsize::new(FREE)) }; LOCK_COUNT];

/// Holds one per-CPU lock until dropped.
#[derive(Debug)]
pub(crate) struct Guard(&'static AtomicUsize);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(FREE, Ordering::Release);
    }
}

/// Takes the lock of `cpu` (shared by every slot of that index in every region);
/// None if the calling thread holds it already (a signal handler that interrupted
/// the holder).
pub(crate) fn lock(cpu: u32) -> Option<Guard> {
    let lock = &LOCKS[cpu as usize % LOCK_COUNT].0;
    // Lazily: a Guard built and dropped on refusal would release the holder's lock.
    acquire(lock, this_thread()).then(|| Guard(lock))
}

/// A non-zero word unique to the calling thread while it lives.
#[inline(always)]
fn this_thread() -> usize {
    #[cfg(target_arch = "x86_64")]
    let id = crate::glibc::thread_pointer() as usize;
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: pthread_self has no preconditions.
    let id = unsafe { libc::pthread_self() } as usize;
    id
}

/// Takes `lock` for `me`; false (without waiting) if `me` holds it already.
fn acquire(lock: &AtomicUsize, me: usize) -> bool {
    let mut spins = 0;
    loop {
        match lock.compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(holder) if holder == me => return false,
            Err(_) => {}
        }
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

/// Before `fork()`: takes every per-CPU lock, so that the child does not inherit one
/// held by a thread that does not exist there. Pair with [`fork_parent`] in the
/// parent and [`fork_child`] in the child (pthread_atfork's three hooks).
pub fn fork_prepare() {
    let me = this_thread();
    for (i, lock) in LOCKS.iter().enumerate() {
        // A lock this thread holds already (a fork from a signal handler that
        // interrupted an operation) is not taken again, and must not be released
        // after the fork: the interrupted operation still holds it.
        let taken = acquire(&lock.0, me);
        let word = &TAKEN_FOR_FORK[i / 64];
        let bit = 1u64 << (i % 64);
        if taken {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// After `fork()`, in the parent: releases what [`fork_prepare`] took.
pub fn fork_parent() {
    release_taken();
}

/// After `fork()`, in the child: releases what [`fork_prepare`] took.
pub fn fork_child() {
    release_taken();
}

/// Which locks [`fork_prepare`] took (one bit per lock), so that only those are
/// released after the fork.
static TAKEN_FOR_FORK: [AtomicU64; LOCK_COUNT / 64] =
    [const { AtomicU64::new(0) }; LOCK_COUNT / 64];

fn release_taken() {
    for (i, lock) in LOCKS.iter().enumerate() {
        if TAKEN_FOR_FORK[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0 {
            lock.0.store(FREE, Ordering::Release);
        }
    }
}

/// The fallback's pop on `region`, whatever the process mode.
///
/// # Safety
/// `region` must only ever be used through this module's functions, in every thread
/// (never through `PerCpu<Stack>::pop` and friends in an rseq mode).
pub unsafe fn pop(region: &PerCpu<Stack>) -> Result<*mut u8, OpError> {
    // SAFETY: forwarded contract.
    unsafe { stack::pop_locked(region) }
}

/// The fallback's push on `region`, whatever the process mode.
///
/// # Safety
/// As for [`pop`].
pub unsafe fn push(region: &PerCpu<Stack>, item: *mut u8) -> Result<(), OpError> {
    // SAFETY: forwarded contract.
    unsafe { stack::push_locked(region, item) }
}
