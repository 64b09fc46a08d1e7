//! Comparisons of cpuslab and rseq-core against peers (see docs/benchmarks.md):
//! the comparison program (`cargo run --release -p cpuslab-bench`, `src/main.rs`)
//! and the criterion benchmarks (`benches/`).
//!
//! [`ALLOCATORS`] is the one list of allocators every benchmark and tool iterates:
//! add an allocator there and it shows up everywhere.

use std::alloc::{GlobalAlloc, System};

/// An allocator under test: a name for reports, and the instance, always called
/// through `GlobalAlloc` directly (never installed as `#[global_allocator]`, so the
/// harness itself keeps allocating from glibc and every allocator runs in one
/// process).
pub type Allocator = (&'static str, &'static (dyn GlobalAlloc + Sync));

/// Every allocator compared, in report order. snmalloc is present with the
/// `snmalloc` feature (default; it needs cmake and a C++ compiler to build).
pub static ALLOCATORS: &[Allocator] = &[
    ("glibc", &System),
    ("jemalloc", &tikv_jemallocator::Jemalloc),
    ("mimalloc", &mimalloc::MiMalloc),
    #[cfg(feature = "snmalloc")]
    ("snmalloc", &snmalloc_rs::SnMalloc),
    ("cpuslab", &cpuslab::CpuSlab),
];

/// The allocator called `name` in [`ALLOCATORS`].
pub fn allocator(name: &str) -> Option<&'static (dyn GlobalAlloc + Sync)> {
    ALLOCATORS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|&(_, allocator)| allocator)
}
