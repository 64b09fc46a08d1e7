//! cpuslab: a per-CPU slab memory allocator for Linux, built on restartable
//! sequences (rseq). `malloc` is one restartable pop from this CPU's cache and
//! a sized free one restartable push, with no atomic instruction; free memory
//! goes back to the OS on its own.
//!
//! # Use it
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;
//! # fn main() { let v = vec![1u8; 10]; drop(v); }
//! ```
//!
//! C and C++ programs get it through `LD_PRELOAD` and the `cpuslab-preload`
//! crate (`libcpuslab.so`).
//!
//! # What it holds: statistics
//!
//! [`stats()`] reads every tier's counters without allocating or locking;
//! [`Stats`] prints as a report, [`Stats::to_json`] writes JSON into a buffer
//! of yours, and [`shelf_counters`] breaks the per-CPU tier's misses and depot
//! transfers down by CPU:
//!
//! ```
//! let stats = cpuslab::stats();
//! println!("{} bytes allocated, {} resident", stats.allocated, stats.resident);
//! let mut json = [0u8; cpuslab::Stats::JSON_MAX_BYTES];
//! let len = stats.to_json(&mut json).unwrap();
//! assert!(json[..len].ends_with(b"]}"));
//! ```
//!
//! # Giving memory back
//!
//! Free memory goes back to the OS by itself: every decay interval (1 s by
//! default) the allocator's slow paths halve the per-CPU caches, flush the
//! depot and return idle pages. [`trim()`] returns everything free at once;
//! [`start_background()`] adds a thread that keeps doing it in a process that
//! goes idle. [`cached_bytes_bound`] says how much free memory can stay cached.
//!
//! # Configuration
//!
//! Each option comes from the environment (`CPUSLAB_DECAY_MS=250`) or from
//! code, through [`config()`] and [`Config::apply`]:
//!
//! ```
//! let mut config = cpuslab::config();
//! config.decay_ms = 250; // return idle memory sooner
//! config.cpu_cache_bytes = 32 << 10; // cache less per CPU and class
//! config.apply().unwrap();
//! ```
//!
//! The rseq switch and the cache index can change only before the first
//! allocation (the environment, or a constructor: docs/tuning.md). An invalid
//! environment value prints one line on stderr and keeps the default.
//!
//! # rseq modes
//!
//! [`Stats::mode`] (and the `CPUSLAB_VERBOSE=1` start-up line) says which one
//! this process runs in:
//!
//! * [`Mode::Glibc`]: glibc (2.35 and later) registered each thread's rseq
//!   area and cpuslab uses it; the fastest, and the usual case;
//! * [`Mode::Own`]: glibc did not (older glibc, `GLIBC_TUNABLES=glibc.pthread.rseq=0`),
//!   so cpuslab registers its own area per thread, on first use;
//! * [`Mode::Fallback`]: no rseq (a kernel or sandbox without it, or
//!   `CPUSLAB_RSEQ=off`): the same per-CPU caches under per-CPU locks.
//!
//! The per-CPU caches are indexed by the concurrency id ([`Index::ConcurrencyId`],
//! memory follows the number of running threads) or by the CPU id
//! ([`Index::Cpu`]); [`Stats::index`] says which.
//!
//! # Bad input
//!
//! Freeing a pointer that is not the start of a live block prints one line
//! naming it and aborts; a double free is caught when it is immediate (see
//! docs/tuning.md for what is detected). Impossible sizes return null.

// # Glossary
//
// One meaning per word, here and in docs/:
//
// * **block**: memory the program got from `alloc`/`malloc` (or will get);
// * **object**: a block of a size class, carved from a span;
// * **class**: a size class, with its object size and span geometry;
// * **span**: a run of pages carved into objects of one class (or holding one
//   large block), with its record (`span.rs`);
// * **chunk**: memory mapped from the OS in bulk (page-heap chunks, metadata
//   chunks), never handed out as it is;
// * **class range**: address space set aside for one class's spans, and its
//   **start map** (a bit per 16 bytes: an object of a live span starts there);
// * **shelf**: one CPU's (or concurrency id's) part of the per-CPU tier: the
//   stack headers of every class, their counters, then each class's slot array;
// * **stack**: rseq-core's per-CPU pointer stack, one per shelf and class;
// * **batch**: objects moved together between tiers (depot <-> shelves, spans);
// * **owner**: what `owner::find` says a pointer is the start of;
// * **trim**: give free memory back to the OS now; **decay**: later, by age.
// * rseq words (area, mode, index, region, slot, section, fence, stop): see
//   rseq-core's glossary.
//
// # Tiers, fastest first
//
// 1. per-CPU caches (`cpu_cache`): per CPU and size class, a stack of free
//    object pointers popped and pushed by restartable sequences;
// 2. the depot (`depot`): batches of free objects moved whole between CPUs;
// 3. the span tier (`central`): per size class, spans carved into objects,
//    free objects tracked in a bitmap per span; empty spans go back to the
//    page heap;
// 4. the page heap (`page_heap`): runs of pages from large mmap'ed chunks,
//    coalesced when freed and given back to the OS (madvise) on a decay;
// 5. large blocks (`large`): above `MAX_SMALL` (256 KiB) or aligned beyond a
//    page, one mapping each (`large_cache` keeps freed mappings for reuse).
//
// Each caller names the tier it uses; there is no facade in between.
//
// # Files
//
// Upper tiers and entry points:
// - `global`: `CpuSlab` (`GlobalAlloc`), the fast path, and the by-address
//   C API (`free`, `realloc`, `usable_size`, `owns`), `trim`;
// - `owner`: pointer -> owner in one page-map walk, handed down (C `free`);
// - `cpu_cache`: tier 1 (layout, lazy install, miss and overflow paths);
// - `depot`: tier 2 (sharded batches);
// - `decay` (when free memory moves down the tiers: the interval, the sweeps'
//   cursor, the shrinking signal; `cpu_cache::decay_step` does the work),
//   `background` (the optional thread that runs the same sweeps);
// - `first_use` (the rseq switch and the fork handlers, before any lock),
//   `fork` (atfork handlers and the lock order), `stats` (every tier's
//   counters; `json` writes them), `cache_counters` (the per-CPU tier's
//   slow-path counters), `config` (options: environment and code), `report`
//   (invalid pointers, stderr lines).
//
// Lower tiers:
// - `size_class`: size -> class, per-class span and batch geometry;
// - `central`, `page_heap`, `large`, `large_cache`: the tiers above;
// - `span`: the span record (page run + object bitmap) and its pool;
// - `pagemap`: address -> span, O(1), safe on any address;
// - `class_range`: address space reserved per class (address -> class by
//   one table lookup, for C `free`);
// - `meta`: permanent metadata memory from mmap;
// - `sync`: `Lock`, a futex mutex that knows its holder;
// - `os`: the one boundary to the OS: mmap / munmap / madvise / mremap, futex,
//   clock, stderr and abort, getenv, atfork, the page size, the thread word.
//
// # Rules
//
// This code runs as the process's allocator and inside a malloc shim: never
// allocate through the global allocator (the library is `no_std` outside
// tests; all memory comes from `os`); never panic (checked or wrapping
// arithmetic, no unchecked indexing; out of memory is null or `None`); no
// `thread_local!` with destructors, no `dlsym`, no std locks; every `unsafe`
// block says why it is sound. Lock order (`fork.rs`): rseq-core's per-CPU
// locks -> depot shards -> central lists -> page heap -> large-mapping cache
// -> span record pool -> metadata arena.
#![cfg_attr(not(test), no_std)]

mod background;
mod cache_counters;
mod capacity;
mod central;
mod class_range;
mod config;
mod cpu_cache;
mod decay;
mod depot;
mod first_use;
mod fork;
mod global;
mod json;
mod large;
mod large_cache;
mod meta;
#[doc(hidden)]
pub mod os;
mod owner;
mod page_heap;
mod pagemap;
mod report;
mod size_class;
mod span;
mod spread;
mod stats;
mod sync;
mod thread_cache;

pub use background::{background_running, start_background};
pub use cache_counters::{CacheCounters, OP_COUNTERS};
pub use config::{config, Config, ConfigError, MAX_CPU_CACHE_BYTES};
pub use global::{
    alloc_small_by_size, alloc_small_missed, free, owns, realloc, trim, usable_size, CpuSlab,
};
pub use rseq_core::{Counters, Index, Mode};
pub use size_class::{MAX_SMALL, MIN_ALIGN, NUM_CLASSES};
pub use stats::{cached_bytes_bound, print_stats, shelf_counters, stats, ClassStats, Stats};

/// What integration tests and benchmarks need from the inside. Not a stable
/// API.
#[doc(hidden)]
pub mod internals {
    pub use crate::central::{alloc_batch, free_batch};
    pub use crate::class_range::RANGE_BYTES as CLASS_RANGE_BYTES;
    pub use crate::class_range::{
        class_at as class_range_of, first_slot as class_range_first_slot,
        object_class as class_range_object, range_start as class_range_start,
    };
    pub use crate::config::OPTIONS;
    pub use crate::decay::set_interval_ms as set_decay_ms;
    pub use crate::fork::handlers_registered as fork_handlers_registered;
    pub use crate::fork::locked_at_last_fork as fork_locked_at_last_fork;
    pub use crate::fork::{lock_lower_tiers, unlock_lower_tiers};
    pub use crate::large::{alloc_large, free_large, realloc_large};
    pub use crate::os::PAGE_SIZE;
    pub use crate::owner::{lookup, Owner};
    pub use crate::size_class::{class_of, Class, NUM_CLASSES};
    pub use crate::stats::{stats_into, LowerStats};
    pub use crate::thread_cache::{
        blocks_made as thread_caches_made, cached_objects as thread_cached_objects,
        while_busy as while_thread_cache_busy,
    };
}

/// Serializes unit tests that check exact values of global counters.
#[cfg(test)]
fn test_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
