//! rseq-core's per-CPU operations against their alternatives, in one process:
//!
//! * `rseq pop+push pair`: `PerCpu<Stack>::pop` then `push` (restartable sequences in
//!   the glibc and own modes; the per-CPU lock when `CPUSLAB_RSEQ=0`);
//! * `fallback pop+push pair`: the same stack operations locked
//!   (`PerCpu<Stack>::pop_locked`/`push_locked`: the per-CPU lock keyed by
//!   `sched_getcpu()`), on a separate region, whatever the mode;
//! * `lock cmpxchg pop+push pair`: a per-CPU Treiber stack written here, two
//!   uncontended `lock cmpxchg` per pair (the cost rseq avoids);
//! * `current_cpu()` against `libc::sched_getcpu()`.
//!
//! Run: `cargo bench -p cpuslab-bench --bench rseq` (about 30 s). The mode is printed
//! first; `CPUSLAB_RSEQ=0` forces the fallback (this program calls
//! `rseq_core::disable_rseq()`, as cpuslab does), `GLIBC_TUNABLES=glibc.pthread.rseq=0`
//! makes rseq-core register its own area. Results: docs/rseq-bench.md.

use std::hint::black_box;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use rseq_core::{Index, PerCpu, Stack};

/// Items seeded into each CPU's stack. Generous, so that the few items a migration
/// between a pop and its push moves to another CPU never empty a stack.
const ITEMS_PER_CPU: u32 = 256;

/// log2 of the slot stride: one 16-byte `Stack` header per CPU.
const STRIDE_SHIFT: u32 = 4;
const _: () = assert!(std::mem::size_of::<Stack>() == 1 << STRIDE_SHIFT);

/// A per-CPU stack region with every CPU's stack installed and seeded with
/// `ITEMS_PER_CPU` distinct (never dereferenced) items. Its memory is leaked.
fn seeded_stack_region() -> PerCpu<Stack> {
    let cpus = rseq_core::possible_cpus();
    let headers: &'static mut [Stack] = Vec::from_iter((0..cpus).map(|_| Stack::new())).leak();
    let base = NonNull::from(&mut headers[0]);
    // SAFETY: `cpus` leaked, aligned, initialised headers, 16 bytes apart (the stride
    // is the header size, checked above); leaked memory stays valid forever.
    let region = unsafe { PerCpu::new(base, STRIDE_SHIFT, cpus, Index::Cpu) };
    // Every item may end up on one CPU: make each stack big enough for all of them.
    let capacity = ITEMS_PER_CPU * cpus;
    for cpu in 0..cpus {
        let slots: &'static mut [*mut u8] = vec![ptr::null_mut(); capacity as usize].leak();
        for (i, slot) in slots.iter_mut().take(ITEMS_PER_CPU as usize).enumerate() {
            // Distinct, 8-aligned, non-null tokens; the stack never dereferences them.
            *slot = ptr::without_provenance_mut(((cpu as usize) << 20 | (i + 1)) << 3);
        }
        region
            .with_stopped(cpu, |parts| {
                parts.slots = slots.as_mut_ptr();
                parts.capacity = capacity;
                parts.top = ITEMS_PER_CPU;
            })
            .expect("install a stack");
    }
    region
}

// --- the lock cmpxchg baseline -------------------------------------------------

/// A node of the Treiber stack.
struct Node {
    next: *mut Node,
}

/// One CPU's stack head, alone on its cache line.
#[repr(align(64))]
struct Head(AtomicPtr<Node>);

/// Per-CPU Treiber stacks indexed by `current_cpu()`: pop and push are one
/// `lock cmpxchg` each when uncontended.
///
/// Not ABA-safe in general (a pop can read `next` of a node that another thread pops
/// and pushes back before the CAS): the benchmark is single-threaded, so there is no
/// other thread and no ABA; it measures only the uncontended atomic cost.
struct TreiberStacks {
    heads: &'static [Head],
}

impl TreiberStacks {
    fn seeded() -> Self {
        let cpus = rseq_core::possible_cpus() as usize;
        let heads: &'static [Head] =
            Vec::from_iter((0..cpus).map(|_| Head(AtomicPtr::new(ptr::null_mut())))).leak();
        let nodes: &'static mut [Node] =
            Vec::from_iter((0..cpus * ITEMS_PER_CPU as usize).map(|_| Node {
                next: ptr::null_mut(),
            }))
            .leak();
        let stacks = TreiberStacks { heads };
        for (i, node) in nodes.iter_mut().enumerate() {
            let head = &heads[i % cpus].0;
            node.next = head.load(Ordering::Relaxed);
            head.store(node, Ordering::Relaxed);
        }
        stacks
    }

    #[inline(always)]
    fn head(&self) -> &AtomicPtr<Node> {
        let cpu = rseq_core::current_cpu() as usize;
        &self.heads[cpu % self.heads.len()].0
    }

    #[inline(always)]
    fn pop(&self) -> Option<NonNull<Node>> {
        let head = self.head();
        let mut top = head.load(Ordering::Acquire);
        loop {
            let node = NonNull::new(top)?;
            // SAFETY: nodes are leaked (never freed) and only reachable from one head
            // at a time; single-threaded, nobody changes `next` under us (no ABA).
            let next = unsafe { node.as_ref().next };
            match head.compare_exchange_weak(top, next, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Some(node),
                Err(now) => top = now,
            }
        }
    }

    #[inline(always)]
    fn push(&self, mut node: NonNull<Node>) {
        let head = self.head();
        let mut top = head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller popped `node`, so it owns it until the CAS publishes it.
            unsafe { node.as_mut().next = top };
            match head.compare_exchange_weak(
                top,
                node.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => top = now,
            }
        }
    }
}

// --- the benchmarks ------------------------------------------------------------

fn stack_pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("per-CPU stack");

    let region = seeded_stack_region();
    group.bench_function("rseq pop+push pair", |b| {
        b.iter(|| {
            let region = black_box(&region);
            let p = region.pop().unwrap();
            region.push(black_box(p)).unwrap();
        })
    });

    let fallback_region = seeded_stack_region();
    group.bench_function("fallback pop+push pair", |b| {
        b.iter(|| {
            let region = black_box(&fallback_region);
            // SAFETY: this region is used only through the locked operations (its
            // stacks were installed through `with_stopped`, which takes the same
            // per-CPU locks), never through `PerCpu<Stack>::pop`/`push`.
            unsafe {
                let p = region.pop_locked().unwrap();
                region.push_locked(black_box(p)).unwrap();
            }
        })
    });

    let treiber = TreiberStacks::seeded();
    group.bench_function("lock cmpxchg pop+push pair", |b| {
        b.iter(|| {
            let stacks = black_box(&treiber);
            let node = stacks.pop().unwrap();
            stacks.push(black_box(node));
        })
    });

    group.finish();
}

fn cpu_ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu id");
    group.bench_function("current_cpu()", |b| {
        b.iter(|| black_box(rseq_core::current_cpu()))
    });
    group.bench_function("libc::sched_getcpu()", |b| {
        // SAFETY: sched_getcpu has no preconditions.
        b.iter(|| black_box(unsafe { libc::sched_getcpu() }))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = stack_pairs, cpu_ids
}

fn main() {
    let env = |name| std::env::var(name).unwrap_or_else(|_| "(unset)".into());
    if matches!(env("CPUSLAB_RSEQ").as_str(), "0" | "off" | "no" | "false") {
        rseq_core::disable_rseq();
    }
    println!(
        "rseq_core::mode() = {:?}; possible_cpus = {}; CPUSLAB_RSEQ={}; GLIBC_TUNABLES={}",
        rseq_core::mode(),
        rseq_core::possible_cpus(),
        env("CPUSLAB_RSEQ"),
        env("GLIBC_TUNABLES"),
    );
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("rseq_core::counters() = {:?}", rseq_core::counters());
}
