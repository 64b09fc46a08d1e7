//! Memory is returned to the OS after free-all and `trim()`.
//!
//! Allocates about 1 GiB in small (16..=1024 B) and medium (1..=64 KiB) blocks,
//! touching every block, frees them all, calls `cpuslab::trim()`, and checks that
//! the resident set is back near the baseline taken before: at most
//! baseline * 1.10 + a fixed allowance for metadata (span records, page map,
//! per-CPU slabs) that the allocator keeps. Measured (debug build, 2 CPUs):
//! baseline 3.0 MiB, peak 1100 MiB, 12.0 MiB after trim, of which about 9 MiB
//! is metadata (`stats().metadata_bytes`) for the 1 GiB that was allocated.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::time::Instant;

use support::{mib, rss_bytes, Rng, Tracker, MIB};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const TOTAL: usize = 1024 * MIB;
/// Metadata the allocator may keep resident after trimming 1 GiB of blocks.
const METADATA_ALLOWANCE: usize = 16 * MIB;

#[test]
fn free_all_and_trim_returns_memory() {
    let start = Instant::now();
    cpuslab::trim();
    let baseline = rss_bytes();
    let before = cpuslab::stats();

    let mut rng = Rng::new(7);
    let mut blocks = Tracker::new();
    let mut total = 0;
    let mut small_bytes = 0;
    while total < TOTAL {
        let size = if total < TOTAL / 2 {
            rng.range(16, 1024)
        } else {
            rng.range(1024, 64 * 1024)
        };
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: size >= 16.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null(), "out of memory after {} MiB", total / MIB);
        // Touch every page of the block.
        let mut off = 0;
        while off < size {
            // SAFETY: off < size.
            unsafe { p.add(off).write(1) };
            off += 4096;
        }
        // SAFETY: size >= 1.
        unsafe { p.add(size - 1).write(1) };
        blocks.push((p as usize, size));
        total += size;
        if size <= 1024 {
            small_bytes += size;
        }
    }
    let peak = rss_bytes();
    let at_peak = cpuslab::stats();
    let allocated_time = start.elapsed();

    for &(p, size) in blocks.as_slice() {
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
    }
    let count = blocks.len;
    drop(blocks);
    let after_free = rss_bytes();
    cpuslab::trim();
    let after = rss_bytes();
    let after_stats = cpuslab::stats();

    println!(
        "{count} blocks, {:.0} MiB ({:.0} MiB small) in {:.2} s",
        mib(total),
        mib(small_bytes),
        allocated_time.as_secs_f64()
    );
    println!(
        "resident: baseline {:.1} MiB, peak {:.1} MiB, after free {:.1} MiB, after trim {:.1} MiB \
         ({:+.1} MiB over baseline)",
        mib(baseline),
        mib(peak),
        mib(after_free),
        mib(after),
        (after as f64 - baseline as f64) / MIB as f64
    );
    println!("stats before: {before}");
    println!("stats at peak: {at_peak}");
    println!("stats after trim: {after_stats}");
    assert!(
        peak >= baseline + TOTAL / 2,
        "the blocks were never resident? peak {:.1} MiB",
        mib(peak)
    );
    let bound = baseline + baseline / 10 + METADATA_ALLOWANCE;
    assert!(
        after <= bound,
        "resident after trim {:.1} MiB > bound {:.1} MiB (baseline {:.1} MiB * 1.1 + {} MiB)",
        mib(after),
        mib(bound),
        mib(baseline),
        METADATA_ALLOWANCE / MIB
    );
}
