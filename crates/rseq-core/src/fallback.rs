//! The fallback engine's per-CPU locks (seed 000's per-CPU lock, keyed by
//! `sched_getcpu()`), also used to serialise remote access in every mode.
//!
//! The locks are a static array: no allocation, and CPU ids beyond it share a lock
//! (correct, merely contended). Holders never block on anything else, so a waiter
//! spins briefly and then yields the CPU to a preempted holder.
//!
//! [`pop`] and [`push`] are public only so that benchmarks can measure the fallback
//! beside the rseq engine in one process.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::stack::{self, Stack};
use crate::{OpError, PerCpu};

const LOCK_COUNT: usize = 256;
const SPINS_BEFORE_YIELD: u32 = 64;

#[repr(align(64))]
struct CpuLock(AtomicU32);

static LOCKS: [CpuLock; LOCK_COUNT] = [const { CpuLock(AtomicU32::new(0)) }; LOCK_COUNT];

/// Holds one per-CPU lock until dropped.
#[derive(Debug)]
pub(crate) struct Guard(&'static AtomicU32);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Takes the lock of `cpu` (shared by every slot of that index in every region).
pub(crate) fn lock(cpu: u32) -> Guard {
    let lock = &LOCKS[cpu as usize % LOCK_COUNT].0;
    acquire(lock);
    Guard(lock)
}

fn acquire(lock: &AtomicU32) {
    let mut spins = 0;
    while lock
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
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
    for lock in &LOCKS {
        acquire(&lock.0);
    }
}

/// After `fork()`, in the parent: releases what [`fork_prepare`] took.
pub fn fork_parent() {
    release_all();
}

/// After `fork()`, in the child: releases what [`fork_prepare`] took.
pub fn fork_child() {
    release_all();
}

fn release_all() {
    for lock in &LOCKS {
        lock.0.store(0, Ordering::Release);
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
