//! Thread churn leaves no residue beyond the documented bound: 256 short-lived
//! threads (8 at a time, on however few CPUs the machine has) allocate and free
//! blocks of every small class; once they are gone, what cpuslab caches (per-CPU
//! caches, depot, retained page runs) is within `cached_bytes_bound(CPUs)`:
//! per-CPU shelves are bounded by the CPUs, not the threads, and the per-thread
//! caches of the fallback mode are emptied when their threads exit. In each
//! rseq mode.

mod support;

use std::alloc::{GlobalAlloc, Layout};

use rseq_core::Mode;
use support::{mib, Rng};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const THREADS: usize = 256;
const AT_ONCE: usize = 8;
const BLOCKS_PER_THREAD: usize = 4000;

#[test]
fn thread_churn_leaves_no_residue_in_glibc_mode() {
    support::assert_child_ok("glibc", Mode::Glibc, "CHURN CLEAN");
}

#[test]
fn thread_churn_leaves_no_residue_in_own_registration_mode() {
    support::assert_child_ok("own", Mode::Own, "CHURN CLEAN");
}

#[test]
fn thread_churn_leaves_no_residue_in_fallback_mode() {
    support::assert_child_ok("fallback", Mode::Fallback, "CHURN CLEAN");
}

fn short_life(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut blocks = Vec::with_capacity(BLOCKS_PER_THREAD);
    for _ in 0..BLOCKS_PER_THREAD {
        let size = rng.range(16, 64 * 1024);
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(0x5a, size.min(64)) };
        blocks.push((p, layout));
    }
    for (p, layout) in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
}

#[test]
fn child() {
    if support::child_mode().is_none() {
        return; // not a child: nothing to do
    }
    for wave in 0..THREADS / AT_ONCE {
        let threads: Vec<_> = (0..AT_ONCE)
            .map(|t| std::thread::spawn(move || short_life((wave * AT_ONCE + t) as u64)))
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
    let stats = cpuslab::stats();
    let cpus = support::online_cpus();
    let bound = cpuslab::cached_bytes_bound(cpus);
    let cached = stats.cpu_cache_bytes + stats.depot_bytes + stats.retained_bytes;
    println!(
        "{THREADS} threads on {cpus} CPUs: cached {:.1} MiB (CPUs {:.1}, depot {:.1}, retained \
         {:.1}), bound for {cpus} shelves {:.1} MiB",
        mib(cached),
        mib(stats.cpu_cache_bytes),
        mib(stats.depot_bytes),
        mib(stats.retained_bytes),
        mib(bound)
    );
    println!("{stats}");
    assert!(
        cached <= bound,
        "cached {cached} bytes > the bound {bound} for {cpus} CPUs"
    );
    println!("CHURN CLEAN");
}
