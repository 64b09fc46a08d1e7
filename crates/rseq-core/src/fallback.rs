//! The fallback engine: per-CPU locks (seed 000's per-CPU lock, keyed by
//! `sched_getcpu()`, also used to serialise remote access in every mode), and
//! the operations' locked bodies, named as their critical sections in `arch`
//! (`stack_pop` here is what `arch::stack_pop` does, under the lock).
//!
//! The locks are a static array: no allocation, and CPU ids beyond it share a lock
//! (correct, merely contended). Holders never block on anything else, so a waiter
//! spins briefly and then yields the CPU to a preempted holder.
//!
//! A lock word holds its holder's thread pointer (0 when free). A thread that
//! finds its own thread pointer there was interrupted by a signal while holding
//! the lock, and runs in the handler: waiting would deadlock, so it is told
//! instead ([`lock`] returns None, and the operation reports `Unavailable`).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use core::ptr::NonNull;

#[cfg(feature = "list-and-word")]
use crate::list::{ListHead, ListNode};
use crate::stack::Stack;
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
    acquire(lock, thread_id()).then(|| Guard(lock))
}

/// A non-zero word unique to the calling thread while it lives.
#[inline(always)]
fn thread_id() -> usize {
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
    let me = thread_id();
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

/// Runs `locked` on the calling thread's slot of `region` under the lock of the
/// CPU it runs on (`sched_getcpu()`): the fallback mode's way to run every
/// operation. `Unavailable` beyond the region, or when this thread holds that
/// lock already (a signal handler that interrupted its own operation).
#[inline]
pub(crate) fn run_locked<T, R>(
    region: &PerCpu<T>,
    locked: impl FnOnce(&T) -> Result<R, OpError>,
) -> Result<R, OpError> {
    let cpu = crate::cpu::sched_getcpu();
    let Some(slot) = region.slot_ptr(cpu) else {
        return Err(OpError::Unavailable);
    };
    let Some(_guard) = lock(cpu) else {
        return Err(OpError::Unavailable);
    };
    // SAFETY: slots below `len` are valid (`PerCpu::new`); the lock gives this thread
    // the slot exclusively among fallback users, and in fallback mode every user is.
    locked(unsafe { NonNull::as_ref(&slot) })
}

// --- the locked bodies: each runs with its slot's lock held -------------------------

pub(crate) fn stack_pop(stack: &Stack) -> Result<*mut u8, OpError> {
    let capacity = stack.capacity.load(Ordering::Relaxed);
    let top = stack.top.load(Ordering::Relaxed);
    if top.wrapping_sub(1) >= capacity {
        return Err(OpError::Empty);
    }
    // SAFETY: top - 1 < capacity, and slots holds `capacity` pointers.
    let item = unsafe { *stack.slots.load(Ordering::Relaxed).add(top as usize - 1) };
    stack.top.store(top - 1, Ordering::Relaxed);
    Ok(item)
}

pub(crate) fn stack_push(stack: &Stack, item: *mut u8) -> Result<(), OpError> {
    let capacity = stack.capacity.load(Ordering::Relaxed);
    let top = stack.top.load(Ordering::Relaxed);
    if top >= capacity {
        return Err(OpError::Full);
    }
    let slots = stack.slots.load(Ordering::Relaxed);
    // SAFETY: top - 1 < top < capacity, and slots holds `capacity` pointers.
    if top > 0 && unsafe { *slots.add(top as usize - 1) } == item {
        return Err(OpError::Duplicate);
    }
    // SAFETY: top < capacity, and slots holds `capacity` pointers.
    unsafe { *slots.add(top as usize) = item };
    stack.top.store(top + 1, Ordering::Relaxed);
    Ok(())
}

pub(crate) fn stack_pop_batch(stack: &Stack, out: &mut [*mut u8]) -> Result<usize, OpError> {
    let capacity = stack.capacity.load(Ordering::Relaxed);
    let top = stack.top.load(Ordering::Relaxed);
    if top.wrapping_sub(1) >= capacity {
        return Err(OpError::Empty);
    }
    let n = out.len().min(top as usize);
    let first = top as usize - n;
    // SAFETY: [first, top) lies below capacity; `out` has room for n.
    unsafe {
        let slots = stack.slots.load(Ordering::Relaxed).add(first);
        core::ptr::copy_nonoverlapping(slots, out.as_mut_ptr(), n);
    }
    stack.top.store(first as u32, Ordering::Relaxed);
    Ok(n)
}

pub(crate) fn stack_push_batch(stack: &Stack, items: &[*mut u8]) -> Result<usize, OpError> {
    let capacity = stack.capacity.load(Ordering::Relaxed);
    let top = stack.top.load(Ordering::Relaxed);
    if top >= capacity {
        return Err(OpError::Full);
    }
    let n = items.len().min((capacity - top) as usize);
    // SAFETY: [top, top + n) lies below capacity.
    unsafe {
        let slots = stack.slots.load(Ordering::Relaxed).add(top as usize);
        core::ptr::copy_nonoverlapping(items.as_ptr(), slots, n);
    }
    stack.top.store(top + n as u32, Ordering::Relaxed);
    Ok(n)
}

#[cfg(feature = "list-and-word")]
pub(crate) fn list_pop(head: &ListHead) -> Result<*mut ListNode, OpError> {
    let first = NonNull::new(head.head.load(Ordering::Relaxed)).ok_or(OpError::Empty)?;
    // SAFETY: nodes on the list are valid (push's contract).
    let next = unsafe { first.as_ref().next };
    head.head.store(next, Ordering::Relaxed);
    Ok(first.as_ptr())
}

#[cfg(feature = "list-and-word")]
pub(crate) fn list_push(head: &ListHead, node: NonNull<ListNode>) -> Result<(), OpError> {
    // SAFETY: the caller owns the node (push's contract).
    unsafe { (*node.as_ptr()).next = head.head.load(Ordering::Relaxed) };
    head.head.store(node.as_ptr(), Ordering::Relaxed);
    Ok(())
}

#[cfg(feature = "list-and-word")]
pub(crate) fn word_compare_and_store(
    word: &AtomicUsize,
    expected: usize,
    new: usize,
) -> Result<usize, OpError> {
    match word.load(Ordering::Relaxed) {
        current if current == expected => {
            word.store(new, Ordering::Relaxed);
            Ok(current)
        }
        current => Err(OpError::Mismatch(current)),
    }
}

#[cfg(feature = "list-and-word")]
pub(crate) fn word_add(word: &AtomicUsize, delta: usize) -> Result<usize, OpError> {
    let before = word.load(Ordering::Relaxed);
    word.store(before.wrapping_add(delta), Ordering::Relaxed);
    Ok(before)
}
