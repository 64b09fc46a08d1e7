//! Random alloc / realloc / dealloc from 6 x online-CPU threads, with cross-thread
//! frees and injected faults, in each rseq mode.
//!
//! Every block is filled with a pattern derived from (thread, block id, size) and
//! checked before every realloc and free, and after realloc (the prefix must
//! survive). Blocks are handed to other threads through channels, so one thread
//! frees what another allocated. Faults: SIGPROF at a high rate (its handler only
//! counts; malloc is not async-signal-safe), `sched_yield`, and migrations with
//! `sched_setaffinity`; meanwhile the main thread calls `cpuslab::trim()` (which
//! drains every CPU's cache from afar) and `cpuslab::stats()`.
//!
//! Each mode runs in a child process (this binary re-run on its `child` test) so
//! that the environment can choose it: glibc's rseq area, our own registration,
//! and no rseq at all.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rseq_core::Mode;
use support::{check, check_zero, fill, mix, pattern_word, Rng};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// How long the threads run, in milliseconds (override for longer soaks).
const DURATION_ENV: &str = "TEST_CPUSLAB_STRESS_MS";
const DEFAULT_DURATION_MS: u64 = 2000;
/// Live blocks a thread keeps at most.
const MAX_LIVE: usize = 256;
/// The profiling timer's period (its resolution is the scheduler tick).
const SIGNAL_INTERVAL_US: i64 = 200;
/// The period of signals sent to random worker threads.
const TARGETED_SIGNAL_INTERVAL_US: u64 = 20;
const KIB: usize = 1024;

// ---- the parent side: one test per mode ------------------------------------------

#[test]
fn stress_in_glibc_mode() {
    support::assert_child_ok("glibc", Mode::Glibc, "STRESS CLEAN");
}

#[test]
fn stress_in_own_registration_mode() {
    support::assert_child_ok("own", Mode::Own, "STRESS CLEAN");
}

#[test]
fn stress_in_fallback_mode() {
    support::assert_child_ok("fallback", Mode::Fallback, "STRESS CLEAN");
}

// ---- the child side --------------------------------------------------------------

/// Pauses spun inside every critical section (rseq-core's fault injection).
const SECTION_DELAY_SPINS: u32 = 50;

#[test]
fn child() {
    let Some(mode) = support::child_mode() else {
        return; // not a child: nothing to do
    };
    let duration = Duration::from_millis(
        std::env::var(DURATION_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_DURATION_MS),
    );
    let threads = 6 * support::online_cpus();
    println!(
        "mode {mode:?}; {threads} threads on {} CPUs; {} ms",
        support::online_cpus(),
        duration.as_millis()
    );
    // Long sections catch preemptions and signals, so the abort paths run.
    rseq_core::fault::set_delay_spins(SECTION_DELAY_SPINS);
    let before = cpuslab::stats();
    support::start_sigprof(SIGNAL_INTERVAL_US);
    let signaller = support::Signaller::start(TARGETED_SIGNAL_INTERVAL_US);
    let tally = run(threads, duration);
    let targeted = signaller.stop();
    support::stop_sigprof();
    let after = cpuslab::stats();
    let c = rseq_core::counters();
    println!(
        "{} ops: {} allocs ({} zeroed), {} reallocs, {} frees ({} by address), {} handed off, \
         {} checks; {} migrations, {} yields, {} signals ({} sent to workers), {} trims; rseq aborts {}, cpu moved {}, \
         gave up {}",
        tally.ops,
        tally.allocs,
        tally.zeroed,
        tally.reallocs,
        tally.frees,
        tally.frees_by_address,
        tally.handoffs,
        tally.checks,
        tally.migrations,
        tally.yields,
        support::SIGNALS.load(Ordering::Relaxed),
        targeted,
        tally.trims,
        c.aborts,
        c.cpu_moved,
        c.gave_up
    );
    println!(
        "allocated before {} B, after {} B (peak seen {:.1} MiB)",
        before.allocated,
        after.allocated,
        support::mib(tally.peak_allocated as usize)
    );
    println!("stats after: {after}");
    assert!(tally.allocs > 1000, "too few operations ran");
    assert!(tally.handoffs > 0, "no block crossed threads");
    if mode != Mode::Fallback {
        assert!(
            c.aborts > 0,
            "no critical section was aborted: the abort path did not run"
        );
    }
    // Every block is freed; what the harness and std allocated meanwhile may
    // differ a little.
    assert!(
        after.allocated <= before.allocated + support::MIB,
        "blocks leaked: allocated {} B before, {} B after freeing everything",
        before.allocated,
        after.allocated
    );
    cpuslab::trim();
    println!("stats after trim: {}", support::brief(&cpuslab::stats()));
    println!("STRESS CLEAN");
}

/// A live block. The pattern depends on the thread and id that made it and on its
/// current size.
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    key: u64,
}

// SAFETY: a block is owned by exactly one thread at a time; it moves whole.
unsafe impl Send for Block {}

impl Block {
    fn word(&self) -> u64 {
        pattern_word(self.key ^ (self.size as u64).rotate_left(29))
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).unwrap()
    }

    /// Checks the pattern over the first `len` bytes, panicking with a description.
    fn verify(&self, len: usize, what: &str) {
        // SAFETY: the block is live and at least `len` bytes long.
        if let Some(off) = unsafe { check(self.ptr, len, self.word()) } {
            panic!(
                "{what}: block {:p} (size {}, align {}, key {:#x}) corrupted at offset {off}",
                self.ptr, self.size, self.align, self.key
            );
        }
    }

    fn refill(&self) {
        // SAFETY: the block is live and `size` bytes long.
        unsafe { fill(self.ptr, self.size, self.word()) };
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    allocs: u64,
    zeroed: u64,
    reallocs: u64,
    frees: u64,
    frees_by_address: u64,
    handoffs: u64,
    checks: u64,
    migrations: u64,
    yields: u64,
    trims: u64,
    peak_allocated: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.ops += o.ops;
        self.allocs += o.allocs;
        self.zeroed += o.zeroed;
        self.reallocs += o.reallocs;
        self.frees += o.frees;
        self.frees_by_address += o.frees_by_address;
        self.handoffs += o.handoffs;
        self.checks += o.checks;
        self.migrations += o.migrations;
        self.yields += o.yields;
    }
}

/// Mostly small, some medium, a few large.
fn random_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=849 => rng.range(1, KIB),
        850..=979 => rng.range(KIB + 1, 64 * KIB),
        980..=994 => rng.range(64 * KIB + 1, 256 * KIB),
        _ => rng.range(256 * KIB + 1, 1024 * KIB),
    }
}

/// Mostly the usual ones, some up to a page, a few 64 KiB.
fn random_align(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => [1, 2, 4, 8, 16][rng.below(5)],
        700..=994 => 1 << rng.below(13),
        _ => 64 * KIB,
    }
}

fn run(threads: usize, duration: Duration) -> Tally {
    let (senders, receivers): (Vec<Sender<Block>>, Vec<Receiver<Block>>) =
        (0..threads).map(|_| channel()).unzip();
    let senders = Arc::new(senders);
    let barrier = Arc::new(Barrier::new(threads));
    let peak = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, inbox)| {
            let senders = Arc::clone(&senders);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || worker(t, inbox, &senders, &barrier, deadline))
        })
        .collect();
    // Meanwhile: drain every CPU's cache from afar, and read the statistics.
    let mut trims: u64 = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let s = cpuslab::stats();
        peak.fetch_max(s.allocated as u64, Ordering::Relaxed);
        if trims.is_multiple_of(2) {
            cpuslab::trim();
        }
        trims += 1;
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.add(&w.join().expect("a worker panicked"));
    }
    tally.trims = trims.div_ceil(2);
    tally.peak_allocated = peak.load(Ordering::Relaxed);
    tally
}

fn worker(
    t: usize,
    inbox: Receiver<Block>,
    senders: &[Sender<Block>],
    barrier: &Barrier,
    deadline: Instant,
) -> Tally {
    support::register_signal_target();
    let mut rng = Rng::new(t as u64 + 1);
    let mut tally = Tally::default();
    let mut live: Vec<Block> = Vec::with_capacity(MAX_LIVE + 64);
    let mut next_id = 0u64;
    let mut new_key = || {
        next_id += 1;
        mix(((t as u64) << 40) ^ next_id)
    };
    while Instant::now() < deadline {
        for _ in 0..64 {
            tally.ops += 1;
            while let Ok(block) = inbox.try_recv() {
                block.verify(block.size, "received");
                live.push(block);
            }
            match rng.below(1000) {
                0..=349 if live.len() < MAX_LIVE => {
                    let size = random_size(&mut rng);
                    let align = random_align(&mut rng);
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let zeroed = rng.percent(10);
                    // SAFETY: size >= 1.
                    let ptr = unsafe {
                        if zeroed {
                            GLOBAL.alloc_zeroed(layout)
                        } else {
                            GLOBAL.alloc(layout)
                        }
                    };
                    assert!(!ptr.is_null(), "out of memory for {layout:?}");
                    assert_eq!(ptr as usize % align, 0, "{layout:?} misaligned: {ptr:p}");
                    if zeroed {
                        // SAFETY: a fresh block of `size` bytes.
                        if let Some(off) = unsafe { check_zero(ptr, size) } {
                            panic!("alloc_zeroed({layout:?}) = {ptr:p}: byte {off} not zero");
                        }
                        tally.zeroed += 1;
                    }
                    let block = Block {
                        ptr,
                        size,
                        align,
                        key: new_key(),
                    };
                    block.refill();
                    live.push(block);
                    tally.allocs += 1;
                }
                0..=599 if !live.is_empty() => {
                    let block = live.swap_remove(rng.below(live.len()));
                    block.verify(block.size, "before free");
                    if rng.percent(10) {
                        // SAFETY: a live block from this allocator, given up.
                        unsafe { cpuslab::free(block.ptr) };
                        tally.frees_by_address += 1;
                    } else {
                        // SAFETY: a live block with this layout, given up.
                        unsafe { GLOBAL.dealloc(block.ptr, block.layout()) };
                    }
                    tally.frees += 1;
                }
                600..=749 if !live.is_empty() => {
                    let i = rng.below(live.len());
                    let block = &mut live[i];
                    block.verify(block.size, "before realloc");
                    let old_size = block.size;
                    let new_size = random_size(&mut rng);
                    // SAFETY: a live block with this layout; new_size >= 1 and,
                    // rounded up to the alignment, far below isize::MAX.
                    let ptr = unsafe { GLOBAL.realloc(block.ptr, block.layout(), new_size) };
                    assert!(
                        !ptr.is_null(),
                        "out of memory in realloc to {new_size} (align {})",
                        block.align
                    );
                    assert_eq!(ptr as usize % block.align, 0, "realloc lost the alignment");
                    block.ptr = ptr;
                    block.verify(old_size.min(new_size), "after realloc (old pattern)");
                    block.size = new_size;
                    block.refill();
                    tally.reallocs += 1;
                }
                750..=799 if !live.is_empty() => {
                    let to = rng.below(senders.len());
                    if to != t {
                        let block = live.swap_remove(rng.below(live.len()));
                        senders[to].send(block).unwrap();
                        tally.handoffs += 1;
                    }
                }
                800..=949 if !live.is_empty() => {
                    let block = &live[rng.below(live.len())];
                    block.verify(block.size, "check");
                    assert!(cpuslab::owns(block.ptr), "owns({:p}) is false", block.ptr);
                    let usable = cpuslab::usable_size(block.ptr);
                    assert!(
                        usable.is_some_and(|u| u >= block.size),
                        "usable_size({:p}) = {usable:?} for a block of {} bytes",
                        block.ptr,
                        block.size
                    );
                    tally.checks += 1;
                }
                950..=979 => {
                    support::sched_yield();
                    tally.yields += 1;
                }
                980..=984 => {
                    support::migrate(&mut rng);
                    tally.migrations += 1;
                }
                _ => {}
            }
        }
    }
    // Nobody sends after this barrier, so after it every block in flight is in
    // some inbox.
    barrier.wait();
    while let Ok(block) = inbox.try_recv() {
        block.verify(block.size, "received at the end");
        live.push(block);
    }
    for block in live.drain(..) {
        block.verify(block.size, "before the final free");
        // SAFETY: a live block with this layout, given up.
        unsafe { GLOBAL.dealloc(block.ptr, block.layout()) };
        tally.frees += 1;
    }
    support::unpin();
    support::unregister_signal_target();
    tally
}
