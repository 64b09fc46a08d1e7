//! The comparison program's workloads, one per file, and what they share: the
//! checked alloc/free helpers (every block carries a pattern that is verified
//! before it is freed), a small random generator and size tables.
//!
//! A workload runs in a child process against one allocator, called through
//! `&dyn GlobalAlloc` (the process's own global allocator stays glibc). It calls
//! [`Ctx::sample`] once, at the point where its working set is largest, so that the
//! allocator's own figures are read while the data is live.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

use crate::memory::Sample;

mod batch;
mod oversubscribed;
mod pairs;
mod producer_consumer;
mod server;
mod threads;

/// The allocator under test.
pub type Alloc = &'static (dyn GlobalAlloc + Sync);

/// What a workload sees: the allocator, the work scale (1.0 = default run) and
/// the place its live sample goes.
pub struct Ctx {
    pub alloc: Alloc,
    pub allocator_name: &'static str,
    pub scale: f64,
    live: Mutex<Option<Sample>>,
}

impl Ctx {
    pub fn new(alloc: Alloc, allocator_name: &'static str, scale: f64) -> Self {
        Ctx {
            alloc,
            allocator_name,
            scale,
            live: Mutex::new(None),
        }
    }

    /// `count` scaled by the run's scale, at least 1.
    pub fn scaled(&self, count: u64) -> u64 {
        ((count as f64 * self.scale) as u64).max(1)
    }

    /// Reads RSS and the allocator's own figures now: called by the workload while
    /// its working set is live. The first call wins.
    pub fn sample(&self) {
        let sample = Sample::now(self.allocator_name);
        let mut live = self.live.lock().expect("sample lock");
        live.get_or_insert(sample);
    }

    /// The live sample, if the workload took one.
    pub fn take_sample(&self) -> Option<Sample> {
        self.live.lock().expect("sample lock").take()
    }
}

/// What kind of workload, for the plots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Single thread, one allocation and its free per step.
    Pair,
    /// Single thread, many allocations then their frees.
    Batch,
    /// Threads with private working sets; the parameter is the thread count.
    Threads(usize),
    /// Blocks allocated on one thread and freed on another.
    ProducerConsumer,
    /// Varied sizes and lifetimes, shared data, cross-thread frees.
    Server,
    /// Threads far above CPUs, most of them idle.
    Oversubscribed,
}

/// One workload: a name for the command line and the tables, what it does, and
/// the function that runs it (returning the number of pattern checks made).
pub struct Workload {
    pub name: String,
    pub kind: Kind,
    pub about: String,
    run: Box<dyn Fn(&Ctx) -> u64 + Send + Sync>,
}

impl Workload {
    fn new(
        name: impl Into<String>,
        kind: Kind,
        about: impl Into<String>,
        run: impl Fn(&Ctx) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Workload {
            name: name.into(),
            kind,
            about: about.into(),
            run: Box::new(run),
        }
    }

    /// Runs the workload; panics if a check fails.
    pub fn run(&self, ctx: &Ctx) -> u64 {
        (self.run)(ctx)
    }
}

/// Every workload, in report order, for a machine with `cpus` CPUs.
pub fn all(cpus: usize) -> Vec<Workload> {
    let mut all = Vec::new();
    pairs::add(&mut all);
    batch::add(&mut all);
    threads::add(&mut all, cpus);
    producer_consumer::add(&mut all, cpus);
    server::add(&mut all, cpus);
    oversubscribed::add(&mut all, cpus);
    all
}

// --- checked blocks ------------------------------------------------------------

/// A live block: address, layout and the seed of its pattern.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub addr: usize,
    pub layout: Layout,
    pub seed: u64,
}

/// A layout of `size` bytes (at least 8) aligned to 8.
pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(8), 8).expect("valid layout")
}

/// Whether the block of `seed` gets its whole content written and checked, or only
/// its first and last words: one block in 64, fewer for large blocks (one in
/// size / 16) so that checking costs a few words per block on average.
fn full_pattern(seed: u64, size: usize) -> bool {
    let one_in = (size / 16).max(64) as u64;
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32).is_multiple_of(one_in)
}

/// The word at index `i` of the block of `seed`.
fn pattern_word(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Calls `f` with the index of every word the pattern covers: the first and the
/// last, or all of them.
#[inline(always)]
fn for_each_word(size: usize, full: bool, mut f: impl FnMut(usize)) {
    let n = size / 8;
    if full {
        (0..n).for_each(f);
    } else {
        f(0);
        if n > 1 {
            f(n - 1);
        }
    }
}

/// Writes the pattern of `seed` into the block at `p`.
pub fn write_pattern(p: *mut u8, layout: Layout, seed: u64) {
    let base = p.cast::<u64>();
    for_each_word(layout.size(), full_pattern(seed, layout.size()), |i| {
        // SAFETY: `p` is a live block of `layout` (size >= 8, align >= 8) and
        // `i < size / 8`, so the word is inside it and aligned.
        unsafe { base.add(i).write(pattern_word(seed, i)) };
    });
}

/// Writes word `i` of `block` as its pattern has it: what a workload that
/// writes into a block's middle (touching its pages) may write without breaking
/// the check, which covers every word of some blocks (`full_pattern`).
pub fn write_pattern_word(block: Block, i: usize) {
    assert!(i < block.layout.size() / 8, "word {i} is outside the block");
    let p = std::ptr::with_exposed_provenance_mut::<u64>(block.addr);
    // SAFETY: the block is live and `i` indexes an aligned word inside it.
    unsafe { p.add(i).write(pattern_word(block.seed, i)) };
}

/// Checks the pattern of `seed` in the block at `p`; panics with the details on a
/// mismatch (another block overlapped this one, or the allocator wrote into it).
pub fn check_pattern(p: *const u8, layout: Layout, seed: u64) {
    let base = p.cast::<u64>();
    for_each_word(layout.size(), full_pattern(seed, layout.size()), |i| {
        // SAFETY: as in `write_pattern`: the word is inside the live block.
        let found = unsafe { base.add(i).read() };
        let expected = pattern_word(seed, i);
        assert_eq!(
            found, expected,
            "block {p:p} ({layout:?}, seed {seed:#x}): word {i} is {found:#x}, expected {expected:#x}"
        );
    });
}

/// Allocates `layout` (zeroed when asked, checked), writes the pattern of `seed`.
pub fn alloc_block(alloc: Alloc, layout: Layout, seed: u64, zeroed: bool) -> Block {
    let p = if zeroed {
        // SAFETY: every layout used by the workloads has a non-zero size.
        let p = unsafe { alloc.alloc_zeroed(layout) };
        check_zeroed(p, layout, full_pattern(seed, layout.size()));
        p
    } else {
        // SAFETY: every layout used by the workloads has a non-zero size.
        unsafe { alloc.alloc(layout) }
    };
    check_fresh(p, layout);
    write_pattern(p, layout, seed);
    Block {
        addr: p.expose_provenance(),
        layout,
        seed,
    }
}

/// Panics unless `p` is a non-null block aligned as `layout` asks.
fn check_fresh(p: *mut u8, layout: Layout) {
    assert!(!p.is_null(), "allocation of {layout:?} failed");
    assert!(
        p.addr().is_multiple_of(layout.align()),
        "block {p:p} is not aligned to {}",
        layout.align()
    );
}

/// Panics unless the first and last words (all words if `full`) of a zeroed block
/// read zero.
fn check_zeroed(p: *mut u8, layout: Layout, full: bool) {
    check_fresh(p, layout);
    let base = p.cast::<u64>();
    for_each_word(layout.size(), full, |i| {
        // SAFETY: the word is inside the fresh block (size >= 8, align >= 8).
        let word = unsafe { base.add(i).read() };
        assert_eq!(
            word, 0,
            "alloc_zeroed block {p:p} ({layout:?}): word {i} is {word:#x}"
        );
    });
}

/// Checks the block's pattern and frees it.
pub fn free_block(alloc: Alloc, block: Block) {
    let p = std::ptr::with_exposed_provenance_mut::<u8>(block.addr);
    check_pattern(p, block.layout, block.seed);
    // SAFETY: `block` came from `alloc_block(alloc, ..)` with this layout and is
    // freed once (blocks are moved, never copied, by the workloads).
    unsafe { alloc.dealloc(p, block.layout) };
}

/// Grows or shrinks a block with `realloc`, checks that the content moved with it
/// (its first word)
/// and writes the pattern of `seed` for the new size.
pub fn realloc_block(alloc: Alloc, block: Block, new_size: usize, seed: u64) -> Block {
    let old = std::ptr::with_exposed_provenance_mut::<u8>(block.addr);
    check_pattern(old, block.layout, block.seed);
    // SAFETY: `block` is live, from `alloc` with this layout; `new_size` is non-zero
    // and far below isize::MAX.
    let p = unsafe { alloc.realloc(old, block.layout, new_size) };
    let layout = Layout::from_size_align(new_size, block.layout.align()).expect("valid layout");
    check_fresh(p, layout);
    // SAFETY: the first word of the old content is kept (both sizes are >= 8).
    let first = unsafe { p.cast::<u64>().read() };
    assert_eq!(
        first,
        pattern_word(block.seed, 0),
        "realloc lost the content of {p:p}"
    );
    write_pattern(p, layout, seed);
    Block {
        addr: p.expose_provenance(),
        layout,
        seed,
    }
}

// --- CPUs ----------------------------------------------------------------------

/// Pins the calling thread to the `index`-th CPU it may run on (modulo their
/// number). Best effort: on failure the thread stays where it may run.
pub fn pin_to_cpu(index: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; the calls get its size and
    // a valid pointer, and pid 0 names the calling thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[index % cpus.len()], &mut one);
        libc::sched_setaffinity(0, size, &one);
    }
}

// --- randomness and sizes ------------------------------------------------------

/// splitmix64: small, fast, good enough to pick sizes and slots.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// 256 sizes spread log-uniformly over `lo..=hi`, rounded to 8 bytes: drawing one
/// costs a table lookup instead of an `exp`.
#[derive(Debug)]
pub struct Sizes([usize; 256]);

impl Sizes {
    pub fn log_uniform(lo: usize, hi: usize) -> Self {
        let (lo_f, hi_f) = (lo as f64, hi as f64);
        Sizes(std::array::from_fn(|i| {
            let size = lo_f * (hi_f / lo_f).powf(i as f64 / 255.0);
            ((size as usize).clamp(lo, hi) + 7) & !7
        }))
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        self.0[(rng.next() >> 56) as usize]
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Every workload passes its own checks with a correct allocator (little work).
    #[test]
    fn every_workload_passes_with_glibc() {
        for workload in all(2) {
            let ctx = Ctx::new(&System, "glibc", 0.001);
            assert!(workload.run(&ctx) > 0, "{}", workload.name);
            assert!(
                ctx.take_sample().is_some(),
                "{} took no sample",
                workload.name
            );
        }
    }

    /// Hands out the block it handed out last, once in 100 allocations: two live
    /// blocks then overlap. (Its blocks are never freed: the test ends in a panic.)
    struct HandsOutTwice(AtomicUsize, AtomicUsize);

    // SAFETY: a test double that breaks the contract on purpose; it is only used to
    // show that the workloads' checks notice, never to free anything.
    unsafe impl GlobalAlloc for HandsOutTwice {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            let last = self.1.load(Ordering::Relaxed);
            if n % 100 == 99 && last != 0 {
                return std::ptr::with_exposed_provenance_mut(last);
            }
            // SAFETY: forwarded with the caller's layout (non-zero size).
            let p = unsafe {
                System.alloc(Layout::from_size_align(4096, layout.align()).expect("layout"))
            };
            self.1.store(p.expose_provenance(), Ordering::Relaxed);
            p
        }

        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[test]
    #[should_panic(expected = "word 0 is")]
    fn overlapping_blocks_are_caught() {
        static BROKEN: HandsOutTwice = HandsOutTwice(AtomicUsize::new(0), AtomicUsize::new(0));
        let batch = all(2)
            .into_iter()
            .find(|w| w.name == "batch-64B")
            .expect("batch-64B");
        batch.run(&Ctx::new(&BROKEN, "broken", 0.001));
    }
}
