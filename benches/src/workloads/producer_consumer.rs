//! `prodcons-<n>x<n>`: n producer threads allocate blocks of mixed sizes and hand
//! them, in batches over bounded channels, to n consumer threads that check and
//! free them: every free is remote, which per-thread caches and per-CPU caches
//! handle differently (and where a central free list can become the bottleneck).
//! Producer i runs pinned to CPU 2i, consumer i to CPU 2i + 1 (modulo the CPUs
//! allowed): blocks are always freed on another CPU than the one that allocated
//! them, and the timing does not depend on where the scheduler happens to put
//! the two threads (unpinned, the 1x1 case was bimodal: same CPU or not).

use std::sync::mpsc;
use std::thread;

use super::{alloc_block, free_block, layout, pin_to_cpu, Block, Ctx, Kind, Rng, Sizes, Workload};

/// Blocks of all producers together at scale 1.
const TOTAL_BLOCKS: u64 = 4_000_000;
/// Blocks per message.
const HANDOFF_BATCH: usize = 64;
/// Messages in flight per channel at most.
const CHANNEL_DEPTH: usize = 16;

pub fn add(all: &mut Vec<Workload>, cpus: usize) {
    let mut counts = vec![1, 2 * cpus];
    counts.dedup();
    for pairs in counts {
        all.push(Workload::new(
            format!("prodcons-{pairs}x{pairs}"),
            Kind::ProducerConsumer,
            format!(
                "{pairs} producer(s) -> {pairs} consumer(s), {TOTAL_BLOCKS} blocks of 16..1024 B \
                 in all, batches of {HANDOFF_BATCH}"
            ),
            move |ctx| run(ctx, pairs),
        ));
    }
}

/// A batch of blocks, fixed size so that sending it allocates nothing.
struct Handoff {
    len: usize,
    blocks: [Block; HANDOFF_BATCH],
}

fn run(ctx: &Ctx, pairs: usize) -> u64 {
    let per_pair = ctx.scaled(TOTAL_BLOCKS) / pairs as u64;
    let sizes = Sizes::log_uniform(16, 1024);
    thread::scope(|scope| {
        for pair in 0..pairs as u64 {
            let (sender, receiver) = mpsc::sync_channel::<Handoff>(CHANNEL_DEPTH);
            let sizes = &sizes;
            scope.spawn(move || {
                pin_to_cpu(2 * pair as usize);
                let mut rng = Rng::new(pair);
                let mut seed = pair << 40;
                let mut left = per_pair;
                while left > 0 {
                    let len = left.min(HANDOFF_BATCH as u64) as usize;
                    let mut handoff = Handoff {
                        len,
                        blocks: [Block {
                            addr: 0,
                            layout: layout(8),
                            seed: 0,
                        }; HANDOFF_BATCH],
                    };
                    for block in &mut handoff.blocks[..len] {
                        *block = alloc_block(ctx.alloc, layout(sizes.pick(&mut rng)), seed, false);
                        seed += 1;
                    }
                    sender.send(handoff).expect("consumer alive");
                    left -= len as u64;
                }
            });
            scope.spawn(move || {
                pin_to_cpu(2 * pair as usize + 1);
                let (mut freed, mut sampled) = (0, false);
                for handoff in receiver {
                    if pair == 0 && !sampled && freed >= per_pair / 2 {
                        // Half way, with the channel's batches in flight.
                        ctx.sample();
                        sampled = true;
                    }
                    for &block in &handoff.blocks[..handoff.len] {
                        free_block(ctx.alloc, block);
                    }
                    freed += handoff.len as u64;
                }
            });
        }
    });
    per_pair * pairs as u64
}
