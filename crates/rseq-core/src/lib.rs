//! Restartable per-CPU operations on Linux rseq.
//!
//! # What this layer owns
//!
//! * **Discovery and registration** of the calling thread's rseq area, once per
//!   process ([`mode()`]): glibc's area when glibc registered one (read through weak
//!   symbols, never `dlsym`), else our own per-thread area registered lazily, else
//!   no rseq at all. [`disable_rseq`] forces the last, for debugging: the caller
//!   decides (rseq-core reads no environment).
//! * **CPU indices**: [`current_cpu`], the concurrency id [`mm_cid`] where the kernel
//!   fills it, and the number of [`possible_cpus`].
//! * **Per-CPU data structures** laid out by the caller as a [`PerCpu`] region, with
//!   restartable operations on them: a bounded pointer [`Stack`] (single and batch
//!   pop/push), and with the `list-and-word` feature an intrusive [`ListHead`] and
//!   compare-and-store / add on a word. Each operation runs as one rseq critical
//!   section with exactly one commit store; aborts restart it at most
//!   [`MAX_RESTARTS`] times before the caller is told to take its slow path.
//! * **The fallback**: the same operations under per-CPU locks keyed by
//!   `sched_getcpu()`, chosen process-wide when rseq is unavailable.
//! * **Remote access** to another CPU's stack ([`PerCpu::with_stopped`]): mark it
//!   stopped, then a membarrier RSEQ fence, then exclusive access; and a raise
//!   of its capacity without a stop ([`PerCpu::raise_capacity`]).
//!
//! # What it may not touch
//!
//! Memory management (callers bring their memory), and any kernel-owned field of
//! the rseq area: `cpu_id_start`, `cpu_id`, `node_id` and `mm_cid` are only read
//! (Linux 6.19 semantics). It never allocates, never panics on its paths, and keeps
//! no `thread_local!` with a destructor, so that an allocator can sit on top of it.
//! `docs/rseq.md` explains the modes, the sections, the remote protocol and how to
//! debug them.
//!
//! # Platforms
//!
//! Linux only (a `compile_error!` elsewhere). The critical sections exist for
//! x86-64; on AArch64 the crate builds and every process runs in
//! [`Mode::Fallback`] (per-CPU locks); other architectures are refused at compile
//! time.
//!
//! # Glossary
//!
//! * **area**: a thread's `struct rseq`, registered with the kernel (glibc's or
//!   our own), named by its offset from the thread pointer.
//! * **mode**: how the whole process runs operations: glibc's areas, our own, or
//!   the fallback's locks.
//! * **index**: what picks a thread's slot: its CPU id, or its concurrency id
//!   (`mm_cid`).
//! * **region**: a [`PerCpu`]: one slot per possible index, laid out by the caller.
//! * **slot**: one index's `T` in a region (a stack header, a list head, a word).
//! * **section**: a restartable critical section (`arch`): armed, one commit
//!   store, aborted by the kernel on preemption, signal or migration.
//! * **operation**: what a caller asks for on a region, in three kinds: one attempt
//!   (`try_*`), with restarts (plain), locked (`*_locked`) (see `ops`).
//! * **fence**: the membarrier RSEQ call after which no section that began before
//!   it still runs on a slot.
//! * **stop / resume**: a remote thread's exclusive access to one stack
//!   ([`PerCpu::with_stopped`]): capacity 0, fence, change, capacity back.
//!
//! # Layout (each module uses only those above it)
//!
//! `glibc`, `counters`, `error`, `stack`, `list` (types) - `area` - `fault` (test
//! builds) - `mode` - `cpu` - `percpu`, `published` - `arch` (the sections) -
//! `fallback` (locks and locked bodies) - `fence` - `route` (restarts) - `ops`.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "rseq-core builds only for Linux targets (target_os = \"linux\"): it uses the Linux rseq and membarrier system calls, sched_getcpu, getauxval and CPU affinity"
);
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
compile_error!(
    "rseq-core supports Linux on x86_64 (restartable sequences) and aarch64 (the lock-based fallback only); other architectures lack the rseq system call numbers and abort signature in rseq-sys"
);

mod arch;
mod area;
mod counters;
mod cpu;
mod error;
mod fallback;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod fence;
mod glibc;
mod list;
mod mode;
mod ops;
mod percpu;
mod published;
mod route;
mod stack;

pub use area::thread_word;
pub use counters::{counters, Counters};
pub use cpu::{current_cpu, mm_cid, mm_cid_available, possible_cpus};
pub use error::{FenceError, OpError};
pub use fallback::{fork_child, fork_parent, fork_prepare};
pub use fence::fence;
pub use glibc::single_threaded;
pub use list::{ListHead, ListNode};
pub use mode::{disable_rseq, mode, mode_if_decided, Mode};
pub use percpu::{Index, PerCpu};
pub use published::PublishedPerCpu;
pub use route::MAX_RESTARTS;
pub use stack::{Stack, StackParts};

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
