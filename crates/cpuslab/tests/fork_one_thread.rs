//! A process with one thread takes no allocator lock at a fork, and its
//! child allocates and frees as any other; once it has made a thread, its
//! forks take every lock again.
//!
//! Why it matters: after a fork every page the parent or the child writes is
//! a fault, and releasing the locks wrote about 22 pages, in both processes
//! (a shell forks for every command). The measure is the faults a child took
//! before `fork` returned to it (its rusage starts at the fork), which are
//! the handlers' writes and the C library's own few.
//!
//! No test harness (`harness = false` in Cargo.toml): libtest runs each test
//! in a thread, and glibc's `__libc_single_threaded` stays false for good
//! once a thread was made. The binary runs its checks in a child process of
//! its own for each rseq mode.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use support::{mode_name, mode_named, MODES};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const MODE_ENV: &str = "TEST_CPUSLAB_FORK_ONE_THREAD_MODE";

/// Faults a child of a process with one thread may take before `fork`
/// returns to it: a bound with room for another kernel or C library. At this
/// commit: 14-16 (glibc's malloc about 18); with the locks taken, 47-50.
const MOST_FAULTS_ONE_THREAD: i64 = 36;

/// Seconds a child may take: one that deadlocks on a lock is killed by
/// SIGALRM and reported, rather than hanging the test.
const CHILD_ALARM_SECONDS: u32 = 30;

/// Blocks of many classes and tiers, filled with a pattern.
fn allocate_everywhere(seed: u8) -> Vec<(*mut u8, Layout)> {
    (16..=64 * 1024)
        .step_by(48)
        .chain([300_000, 2 << 20])
        .map(|size| {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: a valid layout of non-zero size.
            let block = unsafe { GLOBAL.alloc(layout) };
            assert!(!block.is_null());
            // SAFETY: `block` holds `size` bytes.
            unsafe { block.write_bytes(seed, size) };
            (block, layout)
        })
        .collect()
}

/// Checks and frees what [`allocate_everywhere`] made with `seed`; false if a
/// byte changed.
fn check_and_free(blocks: Vec<(*mut u8, Layout)>, seed: u8) -> bool {
    let mut intact = true;
    for (block, layout) in blocks {
        // SAFETY: a live block of `layout.size()` bytes, freed once below.
        let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
        intact &= bytes.iter().all(|&b| b == seed);
        // SAFETY: a live block of this layout.
        unsafe { GLOBAL.dealloc(block, layout) };
    }
    intact
}

/// The exit status of a child whose checks failed.
const FAILED: i32 = 255;

/// Forks; the child takes its faults so far (those before `fork` returned to
/// it), then checks the parent's `blocks` and allocates, checks and frees
/// blocks of every class, and exits with the faults, or [`FAILED`].
fn fork_once(blocks: &[(*mut u8, Layout)]) -> i64 {
    // SAFETY: the child calls getrusage, allocates through this process's
    // allocator (the test is single-threaded until `main` makes a thread, and
    // the allocator's handlers made a multi-threaded parent's locks free),
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: a zeroed rusage is valid; alarm has no preconditions.
        let faults = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            libc::alarm(CHILD_ALARM_SECONDS);
            usage.ru_minflt
        };
        // A panic (a failed allocation) is a failure, not an exit status
        // read as faults.
        let intact = std::panic::catch_unwind(|| {
            let parents_intact = blocks.iter().all(|&(block, layout)| {
                // SAFETY: the parent's live block of `layout.size()` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
                bytes.iter().all(|&b| b == PARENT_SEED)
            });
            let own_intact = check_and_free(allocate_everywhere(CHILD_SEED), CHILD_SEED);
            parents_intact && own_intact
        });
        let status = if matches!(intact, Ok(true)) {
            faults.min(i64::from(FAILED - 1)) as i32
        } else {
            FAILED
        };
        // SAFETY: leaves without running the parent's exit handlers.
        unsafe { libc::_exit(status) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child status {status:#x} (SIGALRM, 14: it hung)"
    );
    let code = libc::WEXITSTATUS(status);
    assert_ne!(
        code, FAILED,
        "the child failed an allocation or found a block changed"
    );
    i64::from(code)
}

const PARENT_SEED: u8 = 0xa5;
const CHILD_SEED: u8 = 0x3c;

/// The steady faults of four forks (the first finds the pages the handlers
/// write private to the parent; from the second on, each is a fault).
fn steady_faults(blocks: &[(*mut u8, Layout)]) -> (i64, Vec<i64>) {
    let faults: Vec<i64> = (0..4).map(|_| fork_once(blocks)).collect();
    (faults[1..].iter().copied().max().unwrap(), faults)
}

/// The checks, in a process with one thread (the binary run in one mode).
fn checks() {
    let blocks = allocate_everywhere(PARENT_SEED);
    assert!(
        rseq_core::single_threaded(),
        "glibc (>= 2.32) says this process has more than one thread"
    );
    let (one_thread, forks) = steady_faults(&blocks);
    assert!(
        !cpuslab::internals::fork_locked_at_last_fork(),
        "a fork of a process with one thread took the locks"
    );
    println!("one thread: faults before fork returned in the child {forks:?}");

    std::thread::spawn(|| drop(allocate_everywhere(1)))
        .join()
        .unwrap();
    assert!(!rseq_core::single_threaded());
    let (threads, forks) = steady_faults(&blocks);
    assert!(
        cpuslab::internals::fork_locked_at_last_fork(),
        "a fork of a process that made a thread did not take the locks"
    );
    println!("after a thread: faults before fork returned in the child {forks:?}");

    assert!(
        one_thread <= MOST_FAULTS_ONE_THREAD,
        "a child of a process with one thread took {one_thread} faults before fork returned"
    );
    assert!(
        one_thread < threads,
        "the locks' pages cost no faults ({one_thread} without, {threads} with): the measure sees nothing"
    );
    assert!(
        check_and_free(blocks, PARENT_SEED),
        "a parent's block changed"
    );
    println!("fork with one thread: ok");
}

fn main() {
    if let Ok(mode) = std::env::var(MODE_ENV) {
        support::assert_mode(mode_named(&mode));
        checks();
        return;
    }
    for mode in MODES {
        let mut command = support::this_binary_in(mode);
        // The background thread would make the process multi-threaded.
        command
            .env(MODE_ENV, mode_name(mode))
            .env_remove("CPUSLAB_BACKGROUND");
        let (code, text) = support::run_to_end(command, &format!("mode {}", mode_name(mode)));
        assert!(
            code == 0 && text.contains("fork with one thread: ok"),
            "mode {}: exit {code}",
            mode_name(mode)
        );
    }
}
