//! What the per-CPU tier did, per shelf and class: misses, overflows, and the
//! objects moved to and from the depot, counted by the slow paths (which move a
//! batch each time, so an atomic add there is noise); and, with the
//! `op-counters` feature only, every allocation and free the fast path served
//! (a relaxed load and store of a shelf word per operation: about a nanosecond,
//! so off by default, like jemalloc's and mimalloc's statistics builds).
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
    /// Allocations served by the stack (counted with the `op-counters` feature
    /// only, [`OP_COUNTERS`]; 0 otherwise). Misses are not included.
    pub allocations: u64,
    /// Frees that went onto the stack (as `allocations`). Overflows are not
    /// included.
    pub frees: u64,
}

/// Whether this build counts operations (the `op-counters` feature).
pub const OP_COUNTERS: bool = cfg!(feature = "op-counters");

impl CacheCounters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &CacheCounters) {
        self.alloc_misses = self.alloc_misses.wrapping_add(other.alloc_misses);
        self.free_overflows = self.free_overflows.wrapping_add(other.free_overflows);
        self.from_depot = self.from_depot.wrapping_add(other.from_depot);
        self.to_depot = self.to_depot.wrapping_add(other.to_depot);
        self.allocations = self.allocations.wrapping_add(other.allocations);
        self.frees = self.frees.wrapping_add(other.frees);
    }
}

/// The counters of one class in one shelf (zeroed memory: all zero).
#[repr(C)]
pub(crate) struct ClassCounters {
    alloc_misses: AtomicU64,
    free_overflows: AtomicU64,
    from_depot: AtomicU64,
    to_depot: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
}

impl ClassCounters {
    /// Whether this shelf's stack of the class was ever refilled from the
    /// depot (an allocation miss noted).
    pub(crate) fn refilled_before(&self) -> bool {
        self.alloc_misses.load(Ordering::Relaxed) != 0
    }

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

    /// Counts one operation of the fast path: a relaxed load and store, not an
    /// atomic add (a thread that moved CPUs between them may lose a count of
    /// another's: statistics, not accounting).
    #[cfg(feature = "op-counters")]
    #[inline(always)]
    pub(crate) fn note_operation(&self, alloc: bool) {
        let counter = if alloc {
            &self.allocations
        } else {
            &self.frees
        };
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// The counters now (relaxed reads).
    pub(crate) fn read(&self) -> CacheCounters {
        CacheCounters {
            alloc_misses: self.alloc_misses.load(Ordering::Relaxed),
            free_overflows: self.free_overflows.load(Ordering::Relaxed),
            from_depot: self.from_depot.load(Ordering::Relaxed),
            to_depot: self.to_depot.load(Ordering::Relaxed),
            allocations: self.allocations.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
        }
    }
}
