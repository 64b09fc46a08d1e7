//! Every allocator of `cpuslab_bench::ALLOCATORS` (glibc, jemalloc, mimalloc,
//! snmalloc, cpuslab), called through `GlobalAlloc` on the instance, in one run:
//!
//! * `pair/<size>`: one alloc + dealloc of 16 B, 64 B, 256 B, 1 KiB, 4 KiB, 32 KiB;
//! * `batch/1000x64B`: 1000 allocations of 64 B, then their 1000 frees;
//! * `threads/<n>`: n threads (1, 2, 8, 16) each replacing blocks of mixed small
//!   sizes in a private window (one dealloc + one alloc per step), wall time;
//! * `producer-consumer/64B`: one thread allocates 64 B blocks and hands them in
//!   batches over a bounded channel to another that frees them, wall time per block.
//!
//! Run: `cargo bench -p cpuslab-bench --bench alloc` (about 2.5 minutes on 2 cores);
//! one allocator: `... --bench alloc -- cpuslab`; smoke check: `-- --test`.
//! Without snmalloc (no cmake): `--no-default-features`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::ptr;
use std::sync::mpsc;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use cpuslab_bench::ALLOCATORS;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

type Alloc = &'static (dyn GlobalAlloc + Sync);

/// Allocates `layout` from `allocator`, aborting the benchmark on failure.
#[inline(always)]
fn alloc(allocator: Alloc, layout: Layout) -> *mut u8 {
    // SAFETY: every layout used here has a non-zero size.
    let p = unsafe { allocator.alloc(layout) };
    assert!(!p.is_null(), "allocation of {layout:?} failed");
    // Touch the block, as a program would.
    // SAFETY: `p` is a fresh block of at least one byte.
    unsafe { p.write(1) };
    p
}

/// Frees a block that `alloc(allocator, layout)` returned.
#[inline(always)]
fn dealloc(allocator: Alloc, p: *mut u8, layout: Layout) {
    // SAFETY: the callers pass blocks from `allocator` with their layout, once.
    unsafe { allocator.dealloc(p, layout) };
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

// --- single thread ---------------------------------------------------------------

fn pairs(c: &mut Criterion) {
    const SIZES: [(usize, &str); 6] = [
        (16, "16B"),
        (64, "64B"),
        (256, "256B"),
        (1 << 10, "1KiB"),
        (4 << 10, "4KiB"),
        (32 << 10, "32KiB"),
    ];
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("pair/{label}"));
        let layout = layout(size);
        for &(name, allocator) in ALLOCATORS {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let p = alloc(allocator, black_box(layout));
                    dealloc(allocator, black_box(p), layout);
                })
            });
        }
        group.finish();
    }
}

fn batch(c: &mut Criterion) {
    const COUNT: usize = 1000;
    let layout = layout(64);
    let mut group = c.benchmark_group("batch/1000x64B");
    group.throughput(Throughput::Elements(COUNT as u64));
    for &(name, allocator) in ALLOCATORS {
        // The pointer buffer comes from the harness's allocator (glibc), once.
        let mut blocks: Vec<*mut u8> = Vec::with_capacity(COUNT);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for _ in 0..COUNT {
                    blocks.push(alloc(allocator, black_box(layout)));
                }
                for p in blocks.drain(..) {
                    dealloc(allocator, black_box(p), layout);
                }
            })
        });
    }
    group.finish();
}

// --- threads ---------------------------------------------------------------------

/// Steps (one dealloc + one alloc each) per thread per benchmark iteration.
const STEPS_PER_ITER: u64 = 1000;
/// Live blocks each thread keeps: a step replaces the oldest one.
const WINDOW: usize = 64;
/// The mixed small sizes, cycled with a stride coprime to their count.
const MIXED_SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];

/// One thread's private work: `steps` replacements in a window of live blocks.
fn private_work(allocator: Alloc, steps: u64) {
    let mut window = [(ptr::null_mut::<u8>(), layout(16)); WINDOW];
    let mut next_size = 0;
    let mut mixed = || {
        next_size = (next_size + 3) % MIXED_SIZES.len();
        layout(MIXED_SIZES[next_size])
    };
    for slot in &mut window {
        let layout = mixed();
        *slot = (alloc(allocator, layout), layout);
    }
    for step in 0..steps {
        let slot = &mut window[step as usize % WINDOW];
        dealloc(allocator, slot.0, slot.1);
        let layout = mixed();
        *slot = (alloc(allocator, layout), layout);
    }
    for (p, layout) in window {
        dealloc(allocator, p, layout);
    }
}

/// Wall time of `threads` threads each doing `iters * STEPS_PER_ITER` steps, from a
/// common start (thread creation excluded) until the last one finishes its work
/// (thread exit excluded).
fn private_work_wall_time(allocator: Alloc, threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                start.wait();
                private_work(allocator, iters * STEPS_PER_ITER);
                done.wait();
            });
        }
        start.wait();
        let began = Instant::now();
        done.wait();
        began.elapsed()
    })
}

fn threads(c: &mut Criterion) {
    for threads in [1usize, 2, 8, 16] {
        let mut group = c.benchmark_group(format!("threads/{threads}"));
        group.sample_size(20);
        group.throughput(Throughput::Elements(threads as u64 * STEPS_PER_ITER));
        for &(name, allocator) in ALLOCATORS {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| private_work_wall_time(allocator, threads, iters))
            });
        }
        group.finish();
    }
}

/// Blocks per message from the producer to the consumer.
const HANDOFF_BATCH: usize = 64;
/// Messages in flight at most: the producer runs at most this far ahead.
const CHANNEL_DEPTH: usize = 16;

/// A batch of block addresses (exposed provenance: the consumer turns them back
/// into pointers), fixed size so that sending it allocates nothing.
struct Handoff {
    len: usize,
    blocks: [usize; HANDOFF_BATCH],
}

/// Wall time for one thread to allocate `blocks` 64 B blocks and another to free
/// them, handed over in batches of `HANDOFF_BATCH`.
fn producer_consumer_wall_time(allocator: Alloc, blocks: u64) -> Duration {
    let layout = layout(64);
    let (sender, receiver) = mpsc::sync_channel::<Handoff>(CHANNEL_DEPTH);
    let start = Barrier::new(3);
    thread::scope(|scope| {
        let start = &start;
        scope.spawn(move || {
            start.wait();
            let mut left = blocks;
            while left > 0 {
                let len = left.min(HANDOFF_BATCH as u64) as usize;
                let mut handoff = Handoff {
                    len,
                    blocks: [0; HANDOFF_BATCH],
                };
                for slot in &mut handoff.blocks[..len] {
                    *slot = alloc(allocator, layout).expose_provenance();
                }
                sender.send(handoff).expect("consumer alive");
                left -= len as u64;
            }
        });
        let consumer = scope.spawn(move || {
            start.wait();
            for handoff in receiver {
                for &address in &handoff.blocks[..handoff.len] {
                    dealloc(allocator, ptr::with_exposed_provenance_mut(address), layout);
                }
            }
            Instant::now()
        });
        start.wait();
        let began = Instant::now();
        let finished = consumer.join().expect("consumer");
        finished.duration_since(began)
    })
}

fn producer_consumer(c: &mut Criterion) {
    let mut group = c.benchmark_group("producer-consumer/64B");
    group.sample_size(20);
    for &(name, allocator) in ALLOCATORS {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            // One benchmark iteration is one block: criterion reports time per block.
            b.iter_custom(|iters| producer_consumer_wall_time(allocator, iters))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    targets = pairs, batch, threads, producer_consumer
}
criterion_main!(benches);
