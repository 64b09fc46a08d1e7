//! `pair-<size>`: one thread allocates a block, writes and checks its pattern, and
//! frees it, again and again: the fast path of alloc and sized free.

use super::{alloc_block, free_block, layout, Ctx, Kind, Workload};

/// Sizes, and pairs per run at scale 1 (fewer for the larger sizes, whose slow
/// paths cost more in some allocators).
const CASES: [(usize, &str, u64); 6] = [
    (16, "16B", 20_000_000),
    (64, "64B", 20_000_000),
    (256, "256B", 20_000_000),
    (1 << 10, "1KiB", 10_000_000),
    (4 << 10, "4KiB", 5_000_000),
    (32 << 10, "32KiB", 2_000_000),
];

pub fn add(all: &mut Vec<Workload>) {
    for (size, label, count) in CASES {
        all.push(Workload::new(
            format!("pair-{label}"),
            Kind::Pair,
            format!("1 thread: {count} x (alloc {label}, write + check pattern, free)"),
            move |ctx| run(ctx, size, count),
        ));
    }
}

fn run(ctx: &Ctx, size: usize, count: u64) -> u64 {
    let layout = layout(size);
    let count = ctx.scaled(count);
    for seed in 0..count {
        let block = alloc_block(ctx.alloc, layout, seed, false);
        if seed == count / 2 {
            ctx.sample();
        }
        free_block(ctx.alloc, block);
    }
    count
}
