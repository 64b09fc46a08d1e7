//! cpuslab: a per-CPU slab memory allocator for Linux built on restartable
//! sequences.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;
//! ```
//!
//! Tiers, fastest first:
//! 1. per-CPU slabs: per CPU and size class, a stack of free object pointers
//!    popped and pushed by restartable sequences;
//! 2. the global depot: batches of free objects moved whole between CPUs;
//! 3. the span tier (`central`): per size class, spans carved into objects,
//!    free objects tracked in a bitmap per span, empty spans returned to
//! 4. the page heap (`page_heap`): runs of pages from large mmap'ed chunks,
//!    coalesced when freed and given back to the OS (madvise) on a decay;
//! 5. large objects (`large`): above `MAX_SMALL` (256 KiB) or aligned beyond
//!    a page, one mapping each.
//!
//! Files of the upper tiers:
//! - `global`: `CpuSlab` (`GlobalAlloc`), the fast path, and the by-address
//!   C API (`free`, `usable_size`, `owns`), `trim`;
//! - `cpu_cache`: tier 1 (layout, lazy install, miss and overflow paths);
//! - `depot`: tier 2 (sharded batches);
//! - `stats`, `config` (environment), `fork` (atfork handlers), `report`
//!   (invalid pointers).
//!
//! Files of the lower tiers:
//! - `heap`: the entry points the upper tiers call (batches, large objects,
//!   `lookup` by address, `trim`, statistics);
//! - `size_class`: size -> class, per-class span and batch geometry;
//! - `central`, `page_heap`, `large`: the tiers above;
//! - `span`: the span record (page run + object bitmap) and its pool;
//! - `pagemap`: address -> span, O(1), safe on any address;
//! - `meta`: permanent metadata memory from mmap;
//! - `os`: mmap / munmap / madvise / mremap;
//! - `sync`: `Lock`, a one-word futex mutex.
//!
//! Rules (this code runs as the process's allocator and inside a malloc
//! shim): never allocate through the global allocator (the library is
//! `no_std` outside tests; all memory comes from `os`); never panic (checked
//! or wrapping arithmetic, no unchecked indexing; out of memory is null or
//! `None`); no `thread_local!` with destructors, no `dlsym`, no std locks;
//! every `unsafe` block says why it is sound. Lock order: central list ->
//! page heap -> span record pool -> metadata arena.
#![cfg_attr(not(test), no_std)]

mod central;
mod config;
mod cpu_cache;
mod depot;
mod fork;
mod global;
mod heap;
mod large;
mod large_cache;
mod meta;
mod os;
mod page_heap;
mod pagemap;
mod report;
mod size_class;
mod span;
mod stats;
mod sync;

pub use global::{free, owns, realloc, trim, usable_size, CpuSlab};
pub use size_class::MIN_ALIGN;
pub use stats::{stats, ClassStats, Stats};

/// What integration tests and benchmarks need from the inside. Not a stable
/// API.
#[doc(hidden)]
pub mod internals {
    pub use crate::central::ClassStats;
    pub use crate::fork::handlers_registered as fork_handlers_registered;
    pub use crate::heap::{
        alloc_batch, alloc_large, dealloc_large, free_batch, lock_all, lookup, realloc_large,
        set_decay_ms, stats_into, trim, unlock_all, LowerStats, Owner,
    };
    pub use crate::large::LargeStats;
    pub use crate::os::PAGE_SIZE;
    pub use crate::page_heap::PageHeapStats;
    pub use crate::size_class::{
        class_of, Class, MAX_CLASS_ALIGN, MAX_SMALL, MIN_ALIGN, NUM_CLASSES,
    };
    pub use crate::sync::{Lock, LockGuard};
}

/// Serializes unit tests that check exact values of global counters.
#[cfg(test)]
fn test_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
