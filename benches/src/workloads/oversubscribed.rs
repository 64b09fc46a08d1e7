//! `oversubscribed`: far more threads than CPUs (256), each keeping a small working
//! set (64 blocks of 64..1024 B). Every thread first works a little (it replaces
//! blocks of its set, so a per-thread cache fills up), then all but a few go to
//! sleep while those few keep working; the sample is taken after that, with every
//! thread alive and its set live. Per-thread caches (glibc's tcache, jemalloc's
//! tcache, mimalloc's and snmalloc's thread heaps) keep what each sleeping thread
//! cached; per-CPU caches hold at most a budget per CPU. Compare the resident and
//! cached figures at the sample, for the same live bytes.

use std::sync::Barrier;
use std::thread;

use super::{alloc_block, free_block, layout, Block, Ctx, Kind, Rng, Sizes, Workload};

/// Threads in all.
const THREADS: usize = 256;
/// Live blocks per thread.
const WORKING_SET: usize = 64;
/// Replacements per thread before most of them sleep.
const WARM_STEPS: u64 = 2_000;
/// Threads that keep working (the others sleep).
const WORKERS: usize = 4;
/// Replacements per working thread at scale 1.
const WORK_STEPS: u64 = 500_000;
/// Stack of each thread: small, so that stacks do not drown the heap in RSS.
const STACK: usize = 128 << 10;

pub fn add(all: &mut Vec<Workload>, _cpus: usize) {
    all.push(Workload::new(
        "oversubscribed",
        Kind::Oversubscribed,
        format!(
            "{THREADS} threads x {WORKING_SET} live blocks of 64..1024 B; each does {WARM_STEPS} \
             replacements, then {WORKERS} do {WORK_STEPS} more while the rest sleep"
        ),
        run,
    ));
}

fn run(ctx: &Ctx) -> u64 {
    let sizes = Sizes::log_uniform(64, 1024);
    let work_steps = ctx.scaled(WORK_STEPS);
    // Everyone warmed up; workers done (sample taken after); teardown.
    let warmed = Barrier::new(THREADS);
    let worked = Barrier::new(THREADS + 1);
    let sampled = Barrier::new(THREADS + 1);
    thread::scope(|scope| {
        for id in 0..THREADS {
            let (sizes, warmed, worked, sampled) = (&sizes, &warmed, &worked, &sampled);
            thread::Builder::new()
                .stack_size(STACK)
                .spawn_scoped(scope, move || {
                    let mut rng = Rng::new(id as u64);
                    let mut seed = (id as u64) << 40;
                    let mut next = |rng: &mut Rng| {
                        seed += 1;
                        alloc_block(ctx.alloc, layout(sizes.pick(rng)), seed, false)
                    };
                    let mut set: [Block; WORKING_SET] = std::array::from_fn(|_| next(&mut rng));
                    let mut replace = |rng: &mut Rng, steps: u64| {
                        for _ in 0..steps {
                            let slot = &mut set[rng.below(WORKING_SET)];
                            free_block(ctx.alloc, *slot);
                            *slot = next(rng);
                        }
                    };
                    replace(&mut rng, WARM_STEPS);
                    warmed.wait();
                    if id < WORKERS {
                        replace(&mut rng, work_steps);
                    }
                    // The sleepers block here from the end of their warm-up.
                    worked.wait();
                    sampled.wait();
                    for block in set {
                        free_block(ctx.alloc, block);
                    }
                })
                .expect("spawn thread");
        }
        worked.wait();
        ctx.sample();
        sampled.wait();
    });
    (THREADS as u64) * (WARM_STEPS + WORKING_SET as u64) + WORKERS as u64 * work_steps
}
