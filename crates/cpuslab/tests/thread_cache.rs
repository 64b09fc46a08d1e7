//! The fallback's per-thread cache (`thread_cache.rs`): without rseq each thread
//! keeps a few objects per small class in front of the per-CPU locks. In a child
//! process without rseq: frees land there and the next allocation takes them
//! back (last in, first out); a class holds at most its limit; a thread's exit
//! empties its cache and the next thread reuses the block; a thread found inside
//! its cache (as a signal handler finds it) bypasses it. In glibc mode no cache
//! is ever made.

mod support;

use std::alloc::{GlobalAlloc, Layout};

use cpuslab::internals::{
    class_of, thread_cached_objects, thread_caches_made, while_thread_cache_busy, Class,
};
use rseq_core::Mode;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// Most objects of one class a thread caches (`thread_cache::SLOTS`).
const MOST_PER_CLASS: usize = 16;

#[test]
fn fallback_mode_keeps_a_cache_per_thread() {
    support::assert_child_ok("fallback", Mode::Fallback, "THREAD CACHE OK");
}

#[test]
fn rseq_modes_keep_none() {
    support::assert_child_ok("glibc", Mode::Glibc, "NO THREAD CACHE");
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

fn class(size: usize) -> Class {
    class_of(size, 16).unwrap()
}

fn alloc(size: usize) -> *mut u8 {
    // SAFETY: a valid layout of non-zero size.
    let p = unsafe { GLOBAL.alloc(layout(size)) };
    assert!(!p.is_null());
    p
}

fn free(p: *mut u8, size: usize) {
    // SAFETY: `p` came from `alloc(size)` and is not used again.
    unsafe { GLOBAL.dealloc(p, layout(size)) };
}

#[test]
fn child() {
    let Some(mode) = support::child_mode() else {
        return; // not a child: nothing to do
    };
    if mode != Mode::Fallback {
        for _ in 0..1000 {
            free(alloc(64), 64);
        }
        assert_eq!(thread_caches_made(), 0);
        println!("NO THREAD CACHE");
        return;
    }

    // In a fresh thread (other threads' caches hold objects too, and stay
    // still meanwhile): a free lands in the thread's cache, and the next
    // allocation takes it back.
    let c64 = class(64);
    std::thread::spawn(move || {
        let others = thread_cached_objects(c64);
        let p = alloc(64);
        let held = thread_cached_objects(c64);
        free(p, 64);
        assert_eq!(
            thread_cached_objects(c64),
            held + 1,
            "the free went elsewhere"
        );
        assert_eq!(alloc(64), p, "not last in, first out");
        assert_eq!(thread_cached_objects(c64), held);
        free(p, 64);

        // A class holds at most its limit: the rest moves on, half at a time.
        let blocks: Vec<*mut u8> = (0..200).map(|_| alloc(64)).collect();
        for &b in &blocks {
            free(b, 64);
        }
        let mine = thread_cached_objects(c64) - others;
        assert!(
            (MOST_PER_CLASS / 2..=MOST_PER_CLASS).contains(&mine),
            "{mine} objects of 64 bytes held"
        );
    })
    .join()
    .unwrap();

    // Marked busy (a signal handler interrupted the thread inside its cache),
    // the cache is bypassed: allocations and frees take the per-CPU path.
    let before = thread_cached_objects(c64);
    assert!(while_thread_cache_busy(|| {
        let q = alloc(64);
        assert_eq!(thread_cached_objects(c64), before, "popped while busy");
        free(q, 64);
        assert_eq!(thread_cached_objects(c64), before, "pushed while busy");
    }));

    // A thread's exit empties its cache, and later threads reuse its block.
    let size = 720;
    let c = class(size);
    let base = thread_cached_objects(c);
    let made = thread_caches_made();
    for round in 0..50 {
        std::thread::spawn(move || {
            let blocks: Vec<*mut u8> = (0..5).map(|_| alloc(size)).collect();
            for &b in &blocks {
                free(b, size);
            }
            assert!(
                thread_cached_objects(c) > base,
                "round {round}: nothing cached"
            );
        })
        .join()
        .unwrap();
        assert_eq!(
            thread_cached_objects(c),
            base,
            "round {round}: an exited thread's objects stayed cached"
        );
    }
    let made_now = thread_caches_made();
    assert!(
        made_now <= made + 1,
        "{} blocks made for 50 threads one after another",
        made_now - made
    );
    println!("THREAD CACHE OK ({made_now} blocks)");
}
