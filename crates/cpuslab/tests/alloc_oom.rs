//! Out of memory is null, never a crash, and memory freed afterwards can be
//! allocated again.
//!
//! The child process (this binary re-run on its `child` test) limits its address
//! space with `setrlimit(RLIMIT_AS)` to what it uses plus 256 MiB, then allocates
//! through `GlobalAlloc::alloc` directly (no Vec growth, so no allocation-error
//! handler runs) until it gets null: small blocks, then large ones, with
//! impossible requests (1 TiB, about isize::MAX) in between. Everything it keeps
//! track of lives in memory reserved before the limit was set, and it prints only
//! after freeing.

mod support;

use std::alloc::{GlobalAlloc, Layout};

use rseq_core::Mode;
use support::MIB;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// Address space granted above what the child uses when it sets the limit.
const HEADROOM: usize = 256 * MIB;
/// Most blocks tracked in one phase (the tracking vector is reserved up front).
const MAX_BLOCKS: usize = 1 << 20;
const TIB: usize = 1 << 40;

#[test]
fn oom_returns_null_in_glibc_mode() {
    support::assert_child_ok("same:glibc", Mode::Glibc, "OOM CLEAN");
}

#[test]
fn oom_returns_null_in_own_registration_mode() {
    support::assert_child_ok("same:own", Mode::Own, "OOM CLEAN");
}

#[test]
fn oom_returns_null_in_fallback_mode() {
    support::assert_child_ok("same:fallback", Mode::Fallback, "OOM CLEAN");
}

/// Small blocks up to the limit, all freed, `trim()`: then large blocks (which
/// are separate mappings) must fit in the address space the small ones gave
/// back.
#[test]
fn oom_memory_freed_by_small_blocks_serves_large_ones_after_trim() {
    support::assert_child_ok("cross:glibc", Mode::Glibc, "OOM CLEAN");
}

/// Requests no machine can satisfy; each must be null, even without a limit.
/// (An array: at the limit, building a Vec would itself run out of memory.)
fn impossible_layouts() -> [Layout; 10] {
    let max = isize::MAX as usize;
    [
        Layout::from_size_align(TIB, 8).unwrap(),
        Layout::from_size_align(TIB, 4096).unwrap(),
        Layout::from_size_align(TIB, 1 << 20).unwrap(),
        Layout::from_size_align(max, 1).unwrap(),
        Layout::from_size_align(max - 15, 16).unwrap(),
        Layout::from_size_align(max - 4095, 4096).unwrap(),
        Layout::from_size_align(max - 65_535, 65_536).unwrap(),
        Layout::from_size_align(max - (MIB - 1), MIB).unwrap(),
        Layout::from_size_align(max / 2 + 1, 8).unwrap(),
        Layout::from_size_align(1, 1 << 40).unwrap(),
    ]
}

/// Every impossible request returns null from alloc, alloc_zeroed and realloc;
/// a failed realloc leaves the block as it was.
fn check_impossible() {
    for layout in impossible_layouts() {
        // SAFETY: non-zero sizes.
        unsafe {
            let p = GLOBAL.alloc(layout);
            assert!(p.is_null(), "alloc({layout:?}) = {p:p}, expected null");
            let z = GLOBAL.alloc_zeroed(layout);
            assert!(
                z.is_null(),
                "alloc_zeroed({layout:?}) = {z:p}, expected null"
            );
        }
    }
    for (size, align) in [(100, 16), (5000, 4096), (300_000, 16), (2 * MIB, 65_536)] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: size >= 1.
        let p = unsafe { GLOBAL.alloc(layout) };
        if p.is_null() {
            continue; // out of memory already: nothing to realloc
        }
        // SAFETY: size bytes at p.
        unsafe { support::fill(p, size, 0x1234_5678_9abc_def1) };
        // new_size rounded up to `align` must not overflow isize (realloc's
        // contract), so stay `align` below the top.
        for new_size in [TIB, isize::MAX as usize - align + 1] {
            // SAFETY: a live block with this layout; new_size rounded up to
            // align is <= isize::MAX.
            let q = unsafe { GLOBAL.realloc(p, layout, new_size) };
            assert!(q.is_null(), "realloc({layout:?} -> {new_size}) = {q:p}");
            // SAFETY: the failed realloc left the block alone.
            let intact = unsafe { support::check(p, size, 0x1234_5678_9abc_def1) };
            assert_eq!(intact, None, "failed realloc changed the block");
        }
        // SAFETY: still live with this layout.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
}

#[test]
fn impossible_requests_return_null() {
    check_impossible();
}

/// Allocates `layout` until null (or `out` is full), touching every block.
/// `out` must have capacity reserved: pushing never reallocates.
fn take_until_null(layout: Layout, out: &mut Vec<*mut u8>) -> usize {
    let start = out.len();
    while out.len() < out.capacity() {
        // SAFETY: size >= 1.
        let p = unsafe { GLOBAL.alloc(layout) };
        if p.is_null() {
            break;
        }
        // SAFETY: the block is at least one byte; touch its first and last page.
        unsafe {
            p.write(0x5a);
            p.add(layout.size() - 1).write(0xa5);
        }
        out.push(p);
    }
    out.len() - start
}

fn give_back(layout: Layout, blocks: &mut Vec<*mut u8>) {
    for p in blocks.drain(..) {
        // SAFETY: allocated by take_until_null with this layout; touched bytes intact.
        unsafe {
            assert_eq!(p.read(), 0x5a);
            assert_eq!(p.add(layout.size() - 1).read(), 0xa5);
            GLOBAL.dealloc(p, layout);
        }
    }
}

fn set_address_space_limit(bytes: usize) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for this process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
}

#[test]
fn child() {
    let Some(scenario) = support::child_scenario() else {
        return; // not a child: nothing to do
    };
    let (kind, mode) = scenario.split_once(':').unwrap();
    support::assert_mode(support::mode_named(mode));
    let mut blocks: Vec<*mut u8> = Vec::with_capacity(MAX_BLOCKS);
    let mut results: Vec<(String, usize, usize)> = Vec::with_capacity(64);
    let small = Layout::from_size_align(1000, 8).unwrap();
    let medium = Layout::from_size_align(40 << 10, 16).unwrap();
    let large = Layout::from_size_align(MIB, 16).unwrap();
    let large_aligned = Layout::from_size_align(300 << 10, 65_536).unwrap();
    let phases: &[(&str, Layout)] = match kind {
        // Each kind again after itself: freed memory serves the same kind.
        "same" => &[
            ("large 1 MiB", large),
            ("large 1 MiB again", large),
            ("large 300 KiB @64K", large_aligned),
            ("small 1000 B", small),
            ("small 1000 B again", small),
            ("medium 40 KiB after small", medium),
        ],
        // Large blocks where small ones were.
        "cross" => &[("small 1000 B", small), ("large 1 MiB after small", large)],
        other => panic!("unknown kind {other}"),
    };
    // Build every name now: formatting after the limit could need memory.
    for (name, layout) in phases {
        results.push((name.to_string(), layout.size(), 0));
    }
    let (vsz, rss) = support::statm();
    let limit = vsz + HEADROOM;
    set_address_space_limit(limit);

    for (i, (_, layout)) in phases.iter().enumerate() {
        let got = take_until_null(*layout, &mut blocks);
        results[i].2 = got;
        // At the limit: impossible requests are still null, nothing crashes.
        check_impossible();
        give_back(*layout, &mut blocks);
        cpuslab::trim();
    }

    // Lift the limit before printing.
    set_address_space_limit(usize::MAX);
    println!(
        "limit: address space {:.0} MiB (used {:.0} MiB, resident {:.0} MiB, + {} MiB)",
        support::mib(limit),
        support::mib(vsz),
        support::mib(rss),
        HEADROOM / MIB
    );
    for (name, size, got) in &results {
        println!(
            "{name:>26}: {got:>7} blocks = {:>6.1} MiB before null",
            support::mib(size * got)
        );
    }
    println!("stats: {}", support::brief(&cpuslab::stats()));
    let got = |i: usize| results[i].1 * results[i].2;
    for (i, (name, _, _)) in results.iter().enumerate() {
        assert!(
            got(i) >= HEADROOM / 2,
            "{name}: only {:.1} MiB of the {} MiB headroom could be allocated after \
             everything before was freed and trimmed (mapped stays {:.1} MiB)",
            support::mib(got(i)),
            HEADROOM / MIB,
            support::mib(cpuslab::stats().mapped)
        );
        assert!(
            got(i) <= HEADROOM + 64 * MIB,
            "{name}: more than the limit?"
        );
    }
    println!("OOM CLEAN");
}
