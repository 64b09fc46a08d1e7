//! `batch-<sizes>`: one thread allocates a batch of blocks, then checks and frees
//! them all in allocation order: refills and flushes of the caches, and overlap
//! between live blocks (every block's pattern is checked after the whole batch
//! was written).

use super::{alloc_block, free_block, layout, Block, Ctx, Kind, Rng, Sizes, Workload};

/// Blocks per batch.
const BATCH: usize = 1000;
/// Batches per run at scale 1.
const ROUNDS: u64 = 10_000;

pub fn add(all: &mut Vec<Workload>) {
    all.push(Workload::new(
        "batch-64B",
        Kind::Batch,
        format!("1 thread: {ROUNDS} x (alloc {BATCH} x 64 B, then check + free them)"),
        |ctx| run(ctx, None),
    ));
    all.push(Workload::new(
        "batch-mixed",
        Kind::Batch,
        format!(
            "1 thread: {} x (alloc {BATCH} x 16 B..4 KiB log-uniform, then check + free them)",
            ROUNDS / 2
        ),
        |ctx| run(ctx, Some(Sizes::log_uniform(16, 4096))),
    ));
}

fn run(ctx: &Ctx, sizes: Option<Sizes>) -> u64 {
    let rounds = ctx.scaled(if sizes.is_some() { ROUNDS / 2 } else { ROUNDS });
    let mut rng = Rng::new(1);
    // The block list comes from the harness's allocator (glibc), once.
    let mut blocks: Vec<Block> = Vec::with_capacity(BATCH);
    let mut seed = 0;
    for round in 0..rounds {
        for _ in 0..BATCH {
            let size = sizes.as_ref().map_or(64, |sizes| sizes.pick(&mut rng));
            blocks.push(alloc_block(ctx.alloc, layout(size), seed, false));
            seed += 1;
        }
        if round == rounds / 2 {
            ctx.sample();
        }
        for block in blocks.drain(..) {
            free_block(ctx.alloc, block);
        }
    }
    seed
}
