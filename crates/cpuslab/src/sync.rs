//! `Lock`: a mutual-exclusion lock that is one 32-bit word.
//!
//! The allocator cannot use `std::sync::Mutex` (it may allocate, and it is not
//! a plain word that fork handlers can take and release in bulk). This is the
//! classic three-state futex mutex (Drepper, "Futexes Are Tricky", mutex #2):
//! `UNLOCKED`, `LOCKED` (no waiters), `CONTENDED` (someone may sleep in
//! `FUTEX_WAIT`). A contended `lock()` spins briefly before sleeping, because
//! the critical sections it guards are short. Nothing here allocates or panics.
//!
//! Beside the state word the lock keeps its holder's thread word. A thread that
//! waits for a lock it holds itself runs in a signal handler that interrupted it
//! inside the allocator (malloc is not async-signal-safe): instead of a deadlock,
//! the allocator reports it and aborts (`report::reentered`). Two windows of
//! one instruction each escape this (a signal there still deadlocks its
//! handler): between taking the state and storing the holder, and between
//! clearing the holder and releasing the state. Compiler fences keep both at
//! one instruction.

use core::hint;
use core::sync::atomic::{compiler_fence, AtomicU32, AtomicUsize, Ordering};

use crate::os::{futex_wait, futex_wake_one, thread_word};
use crate::report;

/// Nobody holds the lock.
const UNLOCKED: u32 = 0;
/// Held, and nobody is (known to be) sleeping on it.
const LOCKED: u32 = 1;
/// Held, and a waiter may be sleeping in `FUTEX_WAIT`: unlock must wake one.
const CONTENDED: u32 = 2;
/// Spin iterations before a contended `lock()` goes to sleep.
const SPIN_LIMIT: u32 = 100;

/// A futex-based lock; `const`-constructible, `Sync`, a state word and a holder.
#[derive(Debug)]
pub struct Lock {
    state: AtomicU32,
    /// The holder's thread word (0 while unlocked or unknown).
    holder: AtomicUsize,
}

impl Lock {
    /// A new, unlocked lock.
    pub const fn new() -> Self {
        Lock {
            state: AtomicU32::new(UNLOCKED),
            holder: AtomicUsize::new(0),
        }
    }

    /// Takes the lock, sleeping if another thread holds it. Aborts with a
    /// report if the calling thread holds it (a signal handler that interrupted
    /// the holder).
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.note_holder();
    }

    /// Records the calling thread as the holder, right after taking the state.
    #[inline(always)]
    fn note_holder(&self) {
        compiler_fence(Ordering::SeqCst);
        self.holder.store(thread_word(), Ordering::Relaxed);
    }

    #[cold]
    fn lock_contended(&self) {
        if self.holder.load(Ordering::Relaxed) == thread_word() {
            report::reentered();
        }
        for _ in 0..SPIN_LIMIT {
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            hint::spin_loop();
        }
        // Announce a sleeper; whoever unlocks will wake us. Taking the lock in
        // the CONTENDED state is conservative (one spurious wake at worst).
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
    }

    /// Takes the lock if it is free; never blocks (the unit tests' probe).
    #[cfg(test)]
    pub fn try_lock(&self) -> bool {
        let taken = self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.note_holder();
        }
        taken
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The caller holds the lock (took it with `lock` or a successful
    /// `try_lock`, possibly in the parent of a `fork`) and stops relying on it
    /// for exclusion from now on.
    #[inline]
    pub unsafe fn unlock(&self) {
        self.holder.store(0, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }

    /// Takes the lock and returns a guard that releases it when dropped.
    #[inline]
    pub fn guard(&self) -> LockGuard<'_> {
        self.lock();
        LockGuard { lock: self }
    }

    /// Whether some thread holds the lock (a racy hint for the unit tests).
    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

/// Holds a `Lock` until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its lock is held (`Lock::guard`).
        unsafe { self.lock.unlock() }
    }
}

/// Adds `n` (wrapping) to a counter that only a lock's holder writes and
/// others read without it: a load and a store, not an atomic add, which would
/// wait for every store before it (a batch of frees counted object by object
/// made their cache misses wait in turn: docs/benchmarks-preload.md, "Batches
/// through the central lists").
pub(crate) fn add_under_lock(counter: &AtomicUsize, n: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Subtracts `n` (wrapping) from a counter as [`add_under_lock`] adds.
pub(crate) fn sub_under_lock(counter: &AtomicUsize, n: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_sub(n),
        Ordering::Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    #[test]
    fn try_lock_fails_while_held() {
        let lock = Lock::new();
        assert!(lock.try_lock());
        assert!(!lock.try_lock());
        assert!(lock.is_locked());
        // SAFETY: taken by the successful try_lock above.
        unsafe { lock.unlock() };
        assert!(!lock.is_locked());
        {
            let _g = lock.guard();
            assert!(!lock.try_lock());
        }
        assert!(lock.try_lock());
        // SAFETY: taken just above.
        unsafe { lock.unlock() };
    }

    struct Counter {
        lock: Lock,
        value: UnsafeCell<u64>,
    }
    // SAFETY: `value` is only touched under `lock`.
    unsafe impl Sync for Counter {}

    #[test]
    fn contended_increments_are_not_lost() {
        const THREADS: u64 = 8;
        const ITERS: u64 = 50_000;
        let c = Arc::new(Counter {
            lock: Lock::new(),
            value: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..ITERS {
                        let _g = c.lock.guard();
                        // SAFETY: the guard gives exclusive access to `value`.
                        unsafe { *c.value.get() += 1 };
                        if i % 1000 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let _g = c.lock.guard();
        // SAFETY: under the lock.
        assert_eq!(unsafe { *c.value.get() }, THREADS * ITERS);
    }
}
