//! `trim()` from one thread while others allocate and free: the remote drain of
//! every CPU's cache must never hand one object to two owners.
//!
//! 4 x online-CPU threads keep up to `MAX_LIVE` blocks of 16 B to 2 KiB (the
//! classes the per-CPU caches serve), every byte of each block carrying its
//! owner's tag, and check the tag before each free; the main thread calls
//! `cpuslab::trim()` in a loop, pinned to CPU 0 while the workers run on the
//! other CPUs, which stops, drains and resumes every CPU's stack of every class. rseq-core's fault injection forces the race: every stop is
//! held a while after its fence (the sections it aborted restart meanwhile), and
//! every stack section spins longer than that between its two header loads (so
//! the resume lands between them); one more delay sits before every commit. An object handed
//! out twice shows as a broken tag (or as the allocator's double-free report,
//! which aborts the child).
//!
//! Each mode runs in a child process (this binary, re-run on its `child` test),
//! two rounds. A last child runs the sections with the header loaded in the
//! wrong order (`top` first, the bug this test exists for) and must fail within
//! six rounds (it stops at the first broken tag).

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rseq_core::fault::{self, Broken};
use rseq_core::Mode;
use support::{check, fill, pattern_word, Rng};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// How long the threads run, in milliseconds (override for longer soaks).
const DURATION_ENV: &str = "TEST_CPUSLAB_TRIM_RACE_MS";
const DEFAULT_DURATION_MS: u64 = 1000;
/// Rounds of that duration a correct allocator must pass.
const ROUNDS: u32 = 2;
/// Rounds the broken child gets to show its bug (it stops at the first broken
/// tag): on a loaded machine a round can pass without the window opening.
const BROKEN_ROUNDS: u32 = 6;
/// Live blocks a thread keeps at most.
const MAX_LIVE: usize = 64;
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 2048;
/// Exit status of a child that found a broken tag.
const BROKEN_TAG_EXIT: i32 = 3;
/// Pauses spun before every commit.
const SECTION_DELAY_SPINS: u32 = 50;
/// How long every remote stop keeps its stack stopped after the fence, before
/// trim drains it: the sections the fence aborted restart within it.
const STOP_HOLD: Duration = Duration::from_micros(10);
/// The delay between a stack section's two header loads: longer than a hold and
/// the drain of a full stack after it, so that the resume lands between the two
/// loads.
const HEADER_DELAY: Duration = Duration::from_micros(100);

// ---- the parent side: one test per mode ------------------------------------------

#[test]
fn trim_races_allocation_in_glibc_mode() {
    support::assert_child_ok("glibc", Mode::Glibc, "TRIM RACE CLEAN");
}

#[test]
fn trim_races_allocation_in_own_registration_mode() {
    support::assert_child_ok("own", Mode::Own, "TRIM RACE CLEAN");
}

#[test]
fn trim_races_allocation_in_fallback_mode() {
    support::assert_child_ok("fallback", Mode::Fallback, "TRIM RACE CLEAN");
}

#[test]
fn the_trim_race_test_catches_a_header_loaded_top_first() {
    let (code, text) = support::run_child("broken-load-order", Mode::Glibc, &[]);
    assert_ne!(
        code, 0,
        "sections loading `top` before `capacity` went unnoticed:\n{text}"
    );
    assert!(
        !text.contains("TRIM RACE CLEAN"),
        "the broken child reported a clean run:\n{text}"
    );
}

// ---- the child side --------------------------------------------------------------

static BROKEN_TAGS: AtomicU64 = AtomicU64::new(0);

#[test]
fn child() {
    let Some(scenario) = support::child_scenario() else {
        return; // not a child: nothing to do
    };
    let (mode, broken) = match scenario.as_str() {
        "broken-load-order" => (Mode::Glibc, Broken::LoadOrder),
        name => (support::mode_named(name), Broken::Nothing),
    };
    support::assert_mode(mode);
    let duration = Duration::from_millis(
        std::env::var(DURATION_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_DURATION_MS),
    );
    let header_delay = fault::pauses_in(HEADER_DELAY);
    fault::set_delay_spins(SECTION_DELAY_SPINS);
    fault::set_header_delay_spins(header_delay);
    fault::set_stop_hold_spins(fault::pauses_in(STOP_HOLD));
    fault::set_broken(broken);
    let threads = 4 * support::online_cpus();
    println!(
        "mode {mode:?}; {threads} threads on {} CPUs; {} ms; header delay {header_delay} \
         pauses ({HEADER_DELAY:?}); broken: {broken:?}",
        support::online_cpus(),
        duration.as_millis()
    );

    let rounds = if broken == Broken::Nothing {
        ROUNDS
    } else {
        BROKEN_ROUNDS
    };
    for round in 1..=rounds {
        let (ops, trims) = run_round(threads, duration);
        let broken_tags = BROKEN_TAGS.load(Ordering::Relaxed);
        let c = rseq_core::counters();
        println!(
            "round {round}: {ops} ops, {trims} trims; aborts {}, gave up {}; {} header \
             delays; {broken_tags} broken tags",
            c.aborts,
            c.gave_up,
            fault::header_delays()
        );
        if broken_tags > 0 {
            println!("CORRUPTION DETECTED");
            std::process::exit(BROKEN_TAG_EXIT);
        }
        assert!(trims > 0, "trim() never ran");
    }
    if mode != Mode::Fallback {
        assert!(fault::header_delays() > 0, "the header delay never ran");
    }
    println!("TRIM RACE CLEAN");
}

/// One round: the workers and the trimming thread for `duration`; returns the
/// operations and the trims.
fn run_round(threads: usize, duration: Duration) -> (u64, u64) {
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + duration;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    pin_to_workers_cpus();
                    worker(t as u64, deadline)
                })
            })
            .collect();
        let trimmer = scope.spawn(|| {
            pin_to_cpu(0);
            let mut trims = 0u64;
            while !done.load(Ordering::Relaxed) {
                cpuslab::trim();
                trims += 1;
            }
            trims
        });
        let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, Ordering::Relaxed);
        (ops, trimmer.join().unwrap())
    })
}

/// Keeps the trimming thread on CPU 0 and the workers on the others (where
/// there are others): a remote stop then always comes from another CPU while a
/// worker runs, and its fence interrupts that worker's section. Unpinned, the
/// scheduler of a loaded machine sometimes kept them on one CPU for whole
/// rounds, and the race never opened.
fn pin_to_cpu(cpu: usize) {
    pin(&[cpu]);
}

fn pin_to_workers_cpus() {
    let cpus: Vec<usize> = (1..support::online_cpus()).collect();
    if !cpus.is_empty() {
        pin(&cpus);
    }
}

fn pin(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t with the given CPUs set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Allocates and frees tagged blocks until `deadline`; returns its operations.
fn worker(thread: u64, deadline: Instant) -> u64 {
    let mut rng = Rng::new(thread + 1);
    let mut live: Vec<(*mut u8, Layout, u64)> = Vec::with_capacity(MAX_LIVE);
    let mut serial = 0u64;
    let mut ops = 0;
    while Instant::now() < deadline {
        for _ in 0..64 {
            ops += 1;
            if live.len() < MAX_LIVE && (live.is_empty() || rng.percent(50)) {
                let size = rng.range(MIN_SIZE, MAX_SIZE);
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY: a non-zero size.
                let p = unsafe { GLOBAL.alloc(layout) };
                assert!(!p.is_null(), "out of memory");
                serial += 1;
                let tag = pattern_word(thread << 40 | serial);
                // SAFETY: a fresh block of `size` bytes.
                unsafe { fill(p, size, tag) };
                live.push((p, layout, tag));
            } else {
                let (p, layout, tag) = live.swap_remove(rng.below(live.len()));
                free_checked(p, layout, tag);
            }
        }
    }
    for (p, layout, tag) in live {
        free_checked(p, layout, tag);
    }
    ops
}

/// Checks a block's tag, then frees it.
fn free_checked(p: *mut u8, layout: Layout, tag: u64) {
    // SAFETY: a live block of `layout.size()` bytes, ours.
    if let Some(offset) = unsafe { check(p, layout.size(), tag) } {
        if BROKEN_TAGS.fetch_add(1, Ordering::Relaxed) < 5 {
            println!(
                "broken tag in {p:?} ({} bytes) at offset {offset}: another owner wrote it",
                layout.size()
            );
        }
        return; // leave it: someone else owns it too
    }
    // SAFETY: allocated with this layout, freed once.
    unsafe { GLOBAL.dealloc(p, layout) };
}
