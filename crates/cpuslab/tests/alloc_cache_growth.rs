//! Per-CPU capacity follows demand (`capacity.rs`): a class whose working set
//! swings its stack from empty to full and back grows its capacity, and then
//! misses less; a shelf's growth stays within its budget however many classes
//! want it; a program that only allocates, then only frees, grows nothing, nor
//! does a producer and a consumer taking turns on one CPU; and the decay's
//! sweep and `trim()` put idle stacks back to their base.
//!
//! The child (this binary, re-run on its `child` test, in each rseq mode) runs
//! pinned to one CPU, so that one shelf sees every operation. (Without rseq a
//! thread's cache fronts the stacks of classes up to 1 KiB, which take whole
//! batches and never miss; the classes here are bigger.)

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::time::{Duration, Instant};

use support::MODES;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// The class the swings work on: its base is a few objects (8 at the default
/// 256 KiB per class: 64 KiB / 8 KiB), its batch as many.
const SIZE: usize = 8192;
/// Blocks a swing allocates, then frees: three bases, within the most (four).
const SWING: usize = 24;
const DECAY_MS: u64 = 50;

#[test]
fn capacity_follows_demand_in_every_mode() {
    for mode in MODES {
        support::assert_child_ok(support::mode_name(mode), mode, "GROWTH CLEAN");
    }
}

#[test]
fn child() {
    let Some(mode) = support::child_mode() else {
        return; // not a child: nothing to do
    };
    support::pin_to_first_allowed_cpu();
    let class = class_index(SIZE);
    let budget = cpuslab::config().cpu_cache_bytes * 8;

    // A producer and a consumer on this CPU: the shelf sees misses and
    // overflows in turn, each thread's of one kind only (first: this
    // thread's own misses below would count with its misses here).
    let (to_consumer, blocks_in) = std::sync::mpsc::sync_channel::<Vec<usize>>(1);
    let consumer = std::thread::spawn(move || {
        support::pin_to_first_allowed_cpu();
        for blocks in blocks_in {
            free(SIZE, &blocks);
        }
    });
    for _ in 0..64 {
        to_consumer.send(allocate(SIZE, SWING)).unwrap();
    }
    drop(to_consumer);
    consumer.join().unwrap();
    let stats = cpuslab::stats();
    assert_eq!(
        stats.cpu_growth_bytes, 0,
        "a producer and a consumer made it grow: {stats}"
    );

    // Allocating only, then freeing only: the stack changes kind once.
    let blocks = allocate(SIZE, 4 * SWING);
    free(SIZE, &blocks);
    let stats = cpuslab::stats();
    assert_eq!(stats.cpu_growth_bytes, 0, "grew without swinging: {stats}");

    // Swings: allocate a working set three bases deep, free it, again.
    let misses_in = |rounds: usize| {
        let before = cpuslab::stats().classes[class].cache.alloc_misses;
        for _ in 0..rounds {
            let blocks = allocate(SIZE, SWING);
            free(SIZE, &blocks);
        }
        cpuslab::stats().classes[class].cache.alloc_misses - before
    };
    let first = misses_in(4);
    let _ = misses_in(32);
    let last = misses_in(4);
    let stats = cpuslab::stats();
    let capacity = stats.classes[class].cpu_capacity;
    println!(
        "{mode:?}: {SIZE} B swings of {SWING}: misses in 4 rounds {first} -> {last}; \
         capacity {capacity}, grown {} B",
        stats.cpu_growth_bytes
    );
    assert!(stats.cpu_growth_bytes > 0, "nothing grew: {stats}");
    assert!(capacity > 8, "the stack did not grow: {stats}");
    assert!(capacity <= 32 * stats.shelves as usize, "{stats}");
    assert!(
        last * 2 <= first,
        "a grown stack should miss less: {first} -> {last} misses"
    );

    // Every class from 1 KiB to 16 KiB swinging at once (33 classes wanting
    // about 6 MiB of growth): the shelf's budget.
    let sizes: Vec<usize> = cpuslab::stats()
        .classes
        .iter()
        .map(|c| c.size)
        .filter(|&size| (1024..=16 * 1024).contains(&size))
        .collect();
    for _ in 0..16 {
        for &size in &sizes {
            let blocks = allocate(size, 4 * 256 * 1024 / size);
            free(size, &blocks);
        }
    }
    let stats = cpuslab::stats();
    println!(
        "after every class swung: grown {} B",
        stats.cpu_growth_bytes
    );
    assert!(
        stats.cpu_growth_bytes <= budget * stats.shelves as usize,
        "growth {} over the budget {budget} per shelf: {stats}",
        stats.cpu_growth_bytes
    );
    assert!(
        stats.cpu_growth_bytes > budget / 2,
        "the classes should have grown to near the budget: {stats}"
    );
    let per_cpu: usize = stats.classes.iter().map(|c| c.cpu_capacity * c.size).sum();
    let bound = cpuslab::cached_bytes_bound(1) - cpuslab::cached_bytes_bound(0);
    assert!(
        per_cpu <= bound * stats.shelves as usize,
        "{per_cpu} > {bound}"
    );

    // Idle: the sweeps halve the stacks and put them back to their bases.
    // Slow paths run the sweeps: those of a class above the per-CPU tier
    // (128 KiB), whose every operation takes the depot and no stack grows.
    cpuslab::internals::set_decay_ms(DECAY_MS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cpuslab::stats().cpu_growth_bytes > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(DECAY_MS));
        for _ in 0..64 {
            free(128 * 1024, &allocate(128 * 1024, 1));
        }
    }
    let stats = cpuslab::stats();
    assert_eq!(stats.cpu_growth_bytes, 0, "the sweep left growth: {stats}");
    assert!(
        stats.classes[class].cpu_capacity <= 8 * stats.shelves as usize,
        "{stats}"
    );

    // And trim puts a grown stack back at once.
    let _ = misses_in(16);
    cpuslab::trim();
    let stats = cpuslab::stats();
    assert_eq!(stats.cpu_growth_bytes, 0, "trim left growth: {stats}");
    println!("GROWTH CLEAN");
}

fn class_index(size: usize) -> usize {
    cpuslab::stats()
        .classes
        .iter()
        .position(|c| c.size == size)
        .expect("a class of this size")
}

/// `n` blocks of `size` bytes, each written at both ends.
fn allocate(size: usize, n: usize) -> Vec<usize> {
    let layout = Layout::from_size_align(size, 16).unwrap();
    (0..n)
        .map(|i| {
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: `size` bytes are ours.
            unsafe {
                p.write(i as u8);
                p.add(size - 1).write(i as u8);
            }
            p as usize
        })
        .collect()
}

fn free(size: usize, blocks: &[usize]) {
    let layout = Layout::from_size_align(size, 16).unwrap();
    for &p in blocks {
        // SAFETY: allocated by `allocate` with this layout, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, layout) };
    }
}
