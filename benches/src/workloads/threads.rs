//! `threads-<n>`: n threads (1, and 1x, 2x, 4x, 8x the CPUs) each replace blocks of
//! mixed small sizes in a private window, one free + one alloc per step. The total
//! work is fixed, split evenly: the ideal time falls with threads up to the CPU
//! count and stays flat above it.

use std::sync::Barrier;
use std::thread;

use super::{alloc_block, free_block, layout, Block, Ctx, Kind, Workload};

/// Steps of all threads together at scale 1.
const TOTAL_STEPS: u64 = 16_000_000;
/// Live blocks per thread: a step replaces the oldest.
const WINDOW: usize = 64;
/// The mixed small sizes, cycled with a stride coprime to their count.
const MIXED_SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];

pub fn add(all: &mut Vec<Workload>, cpus: usize) {
    let mut counts = vec![1, cpus, 2 * cpus, 4 * cpus, 8 * cpus];
    counts.dedup();
    for threads in counts {
        all.push(Workload::new(
            format!("threads-{threads}"),
            Kind::Threads(threads),
            format!(
                "{threads} threads, {TOTAL_STEPS} steps in all: free the oldest of {WINDOW} \
                 live blocks (16..256 B), alloc a new one"
            ),
            move |ctx| run(ctx, threads),
        ));
    }
}

fn run(ctx: &Ctx, threads: usize) -> u64 {
    let steps = ctx.scaled(TOTAL_STEPS) / threads as u64;
    let done = Barrier::new(threads);
    thread::scope(|scope| {
        for id in 0..threads {
            let done = &done;
            scope.spawn(move || private_work(ctx, id as u64, steps, done));
        }
    });
    steps * threads as u64
}

fn private_work(ctx: &Ctx, id: u64, steps: u64, done: &Barrier) {
    let alloc = ctx.alloc;
    let mut next_size = id as usize;
    let mut mixed = || {
        next_size = (next_size + 3) % MIXED_SIZES.len();
        layout(MIXED_SIZES[next_size])
    };
    let seed = |step: u64| id << 40 | step;
    let mut window: [Block; WINDOW] =
        std::array::from_fn(|i| alloc_block(alloc, mixed(), seed(i as u64), false));
    for step in WINDOW as u64..steps + WINDOW as u64 {
        let slot = &mut window[step as usize % WINDOW];
        free_block(alloc, *slot);
        *slot = alloc_block(alloc, mixed(), seed(step), false);
    }
    // Every window is live between the two waits: one thread samples there.
    if done.wait().is_leader() {
        ctx.sample();
    }
    done.wait();
    for block in window {
        free_block(alloc, block);
    }
}
