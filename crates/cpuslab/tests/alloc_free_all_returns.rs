//! Memory follows the working set without anyone calling `trim()`: after a
//! program frees what it allocated, the resident set is back near the baseline
//! within a second, with default settings and no background thread.
//!
//! The child (this binary, re-run on its `child` test, in each rseq mode)
//! allocates about 1 GiB, half in blocks of 16 B to 1 KiB and half in blocks of
//! 16 KiB to 256 KiB, touching every page, frees it all, waits 1 s, and checks
//! that its resident set is at most the baseline + 32 MiB (what the per-CPU
//! caches, the depot's and the page heap's budgets and the metadata may keep).
//! Then `trim()` must not leave more.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

use rseq_core::Mode;
use support::{mib, rss_bytes, Rng, Tracker, MIB};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const TOTAL: usize = 1024 * MIB;
/// What may stay resident above the baseline a second after freeing it all.
const ALLOWANCE: usize = 32 * MIB;

#[test]
fn free_all_returns_memory_within_a_second_in_glibc_mode() {
    support::assert_child_ok("glibc", Mode::Glibc, "FREE-ALL CLEAN");
}

#[test]
fn free_all_returns_memory_within_a_second_in_own_registration_mode() {
    support::assert_child_ok("own", Mode::Own, "FREE-ALL CLEAN");
}

#[test]
fn free_all_returns_memory_within_a_second_in_fallback_mode() {
    support::assert_child_ok("fallback", Mode::Fallback, "FREE-ALL CLEAN");
}

#[test]
fn child() {
    if support::child_mode().is_none() {
        return; // not a child: nothing to do
    }
    let mut blocks = Tracker::new();
    let baseline = rss_bytes();
    let mut rng = Rng::new(11);
    let mut total = 0;
    while total < TOTAL {
        let size = if total < TOTAL / 2 {
            rng.range(16, 1024)
        } else {
            rng.range(16 * 1024, 256 * 1024)
        };
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null(), "out of memory after {} MiB", total / MIB);
        let mut offset = 0;
        while offset < size {
            // SAFETY: offset < size.
            unsafe { p.add(offset).write(1) };
            offset += 4096;
        }
        blocks.push((p as usize, size));
        total += size;
    }
    let peak = rss_bytes();
    for &(p, size) in blocks.as_slice() {
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
    }
    let count = blocks.len;
    drop(blocks); // its pages would count as resident
    let after_free = rss_bytes();
    std::thread::sleep(Duration::from_secs(1));
    let after_second = rss_bytes();
    let stats = cpuslab::stats();
    cpuslab::trim();
    let after_trim = rss_bytes();
    println!(
        "{} blocks, {:.0} MiB; resident: baseline {:.1} MiB, peak {:.1} MiB, after free {:.1} \
         MiB, 1 s later {:.1} MiB ({:+.1} MiB), after trim {:.1} MiB",
        count,
        mib(total),
        mib(baseline),
        mib(peak),
        mib(after_free),
        mib(after_second),
        (after_second as f64 - baseline as f64) / MIB as f64,
        mib(after_trim)
    );
    println!("{stats}");
    assert!(
        peak >= baseline + TOTAL / 2,
        "the blocks were never resident"
    );
    assert!(
        after_second <= baseline + ALLOWANCE,
        "resident 1 s after freeing everything: {:.1} MiB > baseline {:.1} MiB + {} MiB",
        mib(after_second),
        mib(baseline),
        ALLOWANCE / MIB
    );
    assert!(
        after_trim <= after_second + MIB,
        "trim() left more resident ({:.1} MiB) than the decay ({:.1} MiB)",
        mib(after_trim),
        mib(after_second)
    );
    println!("FREE-ALL CLEAN");
}
