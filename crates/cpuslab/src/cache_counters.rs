//! What the per-CPU tier's slow paths did, per shelf and class: misses,
//! overflows, and the objects moved to and from the depot. The fast path
//! counts nothing (a counter there would cost every `malloc` and `free`); the
//! slow paths move a batch each time, so an atomic add there is noise.
//!
//! The counters live in each shelf, after the stack headers, so a shelf that
//! is never used costs nothing and a used one touches a page it touches
//! anyway. A thread that moved counts on its old shelf (the index is a hint).

use core::sync::atomic::{AtomicU64, Ordering};

/// The per-CPU tier's events for one class on one shelf (or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheCounters {
    /// Allocations that found the stack empty (each refills a batch from the
    /// depot).
    pub alloc_misses: u64,
    /// Frees that found the stack full (each moves a batch to the depot).
    pub free_overflows: u64,
    /// Objects moved from the depot into the stack.
    pub from_depot: u64,
    /// Objects moved from the stack to the depot (overflows, `trim`).
    pub to_depot: u64,
}

impl CacheCounters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &CacheCounters) {
        self.alloc_misses = self.alloc_misses.wrapping_add(other.alloc_misses);
        self.free_overflows = self.free_overflows.wrapping_add(other.free_overflows);
        self.from_depot = self.from_depot.wrapping_add(other.from_depot);
        self.to_depot = self.to_depot.wrapping_add(other.to_depot);
    }
}

/// The counters of one class in one shelf (zeroed memory: all zero).
#[repr(C)]
pub(crate) struct ClassCounters {
    alloc_misses: AtomicU64,
    free_overflows: AtomicU64,
    from_depot: AtomicU64,
    to_depot: AtomicU64,
}

impl ClassCounters {
    /// Notes an allocation miss that brought `objects` from the depot.
    pub(crate) fn note_alloc_miss(&self, objects: usize) {
        self.alloc_misses.fetch_add(1, Ordering::Relaxed);
        self.from_depot.fetch_add(objects as u64, Ordering::Relaxed);
    }

    /// Notes a free overflow that moved `objects` to the depot.
    pub(crate) fn note_free_overflow(&self, objects: usize) {
        self.free_overflows.fetch_add(1, Ordering::Relaxed);
        self.note_to_depot(objects);
    }

    /// Notes `objects` moved to the depot without an overflow (`trim`).
    pub(crate) fn note_to_depot(&self, objects: usize) {
        self.to_depot.fetch_add(objects as u64, Ordering::Relaxed);
    }

    /// The counters now (relaxed reads).
    pub(crate) fn read(&self) -> CacheCounters {
        CacheCounters {
            alloc_misses: self.alloc_misses.load(Ordering::Relaxed),
            free_overflows: self.free_overflows.load(Ordering::Relaxed),
            from_depot: self.from_depot.load(Ordering::Relaxed),
            to_depot: self.to_depot.load(Ordering::Relaxed),
        }
    }
}
