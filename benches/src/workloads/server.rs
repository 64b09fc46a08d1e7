//! `server`: a server-like mix. Worker threads (2x the CPUs) handle requests; each
//! request allocates short-lived buffers of varied sizes (a quarter of them
//! zeroed), grows one buffer by `realloc`, now and then a large response buffer
//! (64 KiB..1 MiB), replaces one block of its thread's session ring (medium
//! lifetime) and one entry of a shared cache (long lifetime, freed by whichever
//! thread replaces it: cross-thread frees). The cache and rings make a live
//! working set of about 40 MiB of varied sizes.

use std::sync::{Barrier, Mutex};
use std::thread;

use super::{
    alloc_block, free_block, layout, realloc_block, write_pattern_word, Block, Ctx, Kind, Rng,
    Sizes, Workload,
};

/// Requests of all workers together at scale 1.
const TOTAL_REQUESTS: u64 = 400_000;
/// Entries of the shared cache.
const CACHE_SLOTS: usize = 8192;
/// Blocks of each worker's session ring.
const RING: usize = 512;
/// Short-lived buffers per request.
const TEMPORARIES: usize = 6;
/// One request in this many allocates a large response buffer.
const LARGE_ONE_IN: usize = 32;

pub fn add(all: &mut Vec<Workload>, cpus: usize) {
    let workers = 2 * cpus;
    all.push(Workload::new(
        "server",
        Kind::Server,
        format!(
            "{workers} workers, {TOTAL_REQUESTS} requests: {TEMPORARIES} temporaries 16 B..8 KiB, \
             a realloc'ed buffer 64 B -> 4 KiB, 1/{LARGE_ONE_IN} a 64 KiB..1 MiB buffer, a session \
             ring of {RING} x 32 B..2 KiB per worker, a shared cache of {CACHE_SLOTS} x 16 B..32 KiB"
        ),
        move |ctx| run(ctx, workers),
    ));
}

struct Sizeses {
    temporary: Sizes,
    large: Sizes,
    session: Sizes,
    cache: Sizes,
}

fn run(ctx: &Ctx, workers: usize) -> u64 {
    let sizes = Sizeses {
        temporary: Sizes::log_uniform(16, 8 << 10),
        large: Sizes::log_uniform(64 << 10, 1 << 20),
        session: Sizes::log_uniform(32, 2 << 10),
        cache: Sizes::log_uniform(16, 32 << 10),
    };
    // The cache is filled by this thread; workers replace entries at random.
    let mut rng = Rng::new(u64::MAX);
    let cache: Vec<Mutex<Block>> = (0..CACHE_SLOTS as u64)
        .map(|seed| {
            Mutex::new(alloc_block(
                ctx.alloc,
                layout(sizes.cache.pick(&mut rng)),
                seed,
                false,
            ))
        })
        .collect();
    let requests = ctx.scaled(TOTAL_REQUESTS) / workers as u64;
    let all_done = Barrier::new(workers);
    let checks: u64 = thread::scope(|scope| {
        let workers: Vec<_> = (0..workers as u64)
            .map(|id| {
                let (sizes, cache, all_done) = (&sizes, &cache, &all_done);
                scope.spawn(move || worker(ctx, id, requests, sizes, cache, all_done))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    for slot in cache {
        free_block(ctx.alloc, slot.into_inner().expect("cache slot"));
    }
    checks + CACHE_SLOTS as u64
}

/// Writes one word in every page of a large block, as a program filling its
/// response would. It writes the pattern's own words: the check covers every
/// word of some blocks (one in thousands, chosen by seed), and any other value
/// failed it. On a 16-CPU machine the 32 workers' seeds included such a block,
/// and the workload failed for every allocator, every run.
fn write_pages(block: Block) {
    for offset in (4096..block.layout.size() - 8).step_by(4096) {
        write_pattern_word(block, offset / 8);
    }
}

fn worker(
    ctx: &Ctx,
    id: u64,
    requests: u64,
    sizes: &Sizeses,
    cache: &[Mutex<Block>],
    all_done: &Barrier,
) -> u64 {
    let alloc = ctx.alloc;
    let mut rng = Rng::new(id);
    let mut seed = (id + 1) << 40;
    let mut next_seed = || {
        seed += 1;
        seed
    };
    let mut ring: Vec<Block> = (0..RING)
        .map(|_| {
            alloc_block(
                alloc,
                layout(sizes.session.pick(&mut rng)),
                next_seed(),
                false,
            )
        })
        .collect();
    let mut checks = RING as u64;
    let mut temporaries = [None; TEMPORARIES];
    for request in 0..requests {
        // Parse: short-lived buffers, a quarter of them zeroed.
        for temporary in &mut temporaries {
            let zeroed = rng.below(4) == 0;
            *temporary = Some(alloc_block(
                alloc,
                layout(sizes.temporary.pick(&mut rng)),
                next_seed(),
                zeroed,
            ));
        }
        // Build a reply: a buffer grown by realloc.
        let mut reply = alloc_block(alloc, layout(64), next_seed(), false);
        for size in [256, 1024, 4096] {
            reply = realloc_block(alloc, reply, size, next_seed());
        }
        // Sometimes a large response buffer.
        if rng.below(LARGE_ONE_IN) == 0 {
            let large = alloc_block(
                alloc,
                layout(sizes.large.pick(&mut rng)),
                next_seed(),
                false,
            );
            write_pages(large);
            free_block(alloc, large);
            checks += 1;
        }
        // Session state: replace the oldest block of the ring.
        let slot = &mut ring[request as usize % RING];
        free_block(alloc, *slot);
        *slot = alloc_block(
            alloc,
            layout(sizes.session.pick(&mut rng)),
            next_seed(),
            false,
        );
        // Shared cache: replace a random entry (often allocated by another thread).
        let fresh = alloc_block(
            alloc,
            layout(sizes.cache.pick(&mut rng)),
            next_seed(),
            false,
        );
        let old = std::mem::replace(
            &mut *cache[rng.below(cache.len())].lock().expect("cache slot"),
            fresh,
        );
        free_block(alloc, old);
        free_block(alloc, reply);
        for temporary in &mut temporaries {
            free_block(alloc, temporary.take().expect("temporary"));
        }
        checks += TEMPORARIES as u64 + 6;
    }
    // Cache and rings are live between the two waits: one worker samples there.
    if all_done.wait().is_leader() {
        ctx.sample();
    }
    all_done.wait();
    for block in ring {
        free_block(alloc, block);
    }
    checks
}

#[cfg(test)]
mod tests {
    use std::alloc::System;

    use super::*;

    /// The 16-CPU failure: a large block whose check covers every word (its seed
    /// says so) survives `write_pages`.
    #[test]
    fn pages_written_into_a_fully_checked_block_keep_its_pattern() {
        let layout = layout(64 << 10);
        let seed = (1u64..)
            .find(|&seed| super::super::full_pattern(seed, layout.size()))
            .expect("a fully checked seed");
        let block = alloc_block(&System, layout, seed, false);
        write_pages(block);
        free_block(&System, block);
    }

    /// The workload as a 16-CPU machine runs it (32 workers), briefly.
    #[test]
    fn the_server_workload_passes_with_32_workers() {
        let ctx = Ctx::new(&System, "glibc", 0.01);
        assert!(run(&ctx, 32) > 0);
    }
}
