//! The decay's first sweep comes an interval after the allocator's first slow
//! path, not at it: at start-up a sweep would only drain the per-CPU stacks
//! being filled and pay the remote fence's one-time registration inside the
//! program's start. Alone in its file: it reads the process's first sweep.

use cpuslab::CpuSlab;
use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

/// Allocates and frees enough blocks of several classes that the per-CPU
/// tier's slow paths (refills, overflows) run many times.
fn churn() {
    let mut blocks = Vec::with_capacity(20_000);
    for _ in 0..4 {
        for size in [16, 48, 128, 512, 2048] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..4_000 {
                // SAFETY: a non-zero size.
                let p = unsafe { CpuSlab.alloc(layout) };
                assert!(!p.is_null());
                blocks.push((p, layout));
            }
        }
        for (p, layout) in blocks.drain(..) {
            // SAFETY: from `alloc` above with this layout, freed once.
            unsafe { CpuSlab.dealloc(p, layout) };
        }
    }
}

#[test]
fn the_first_sweep_waits_one_interval_after_the_first_slow_path() {
    // The default interval (1 s) is far longer than the churn.
    churn();
    let early = cpuslab::stats();
    assert_eq!(
        early.decays, 0,
        "a sweep ran at start-up (last {:?} ms ago)",
        early.last_decay_ms_ago
    );
    assert_eq!(early.last_decay_ms_ago, None);

    // The clock did start: with a short interval, a later slow path sweeps.
    cpuslab::internals::set_decay_ms(20);
    std::thread::sleep(Duration::from_millis(60));
    churn();
    let later = cpuslab::stats();
    assert!(later.decays >= 1, "no sweep after the interval");
    assert!(later.last_decay_ms_ago.is_some());
}
