//! The fork handlers write few pages. After `fork` every page the parent or
//! the child writes first is a page fault (a copy, for whichever writes
//! second), and the handlers take and release every allocator lock. With a
//! lock in each page heap (16 KiB apart), a child took about 135 faults
//! before `fork` returned to it, against glibc's 18; the page heaps' locks
//! now lie together.
//!
//! The child reports, as its exit status, the faults it took before `fork`
//! returned (its rusage starts at the fork): the handlers' writes, and the C
//! library's own few.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// Faults a child may take before `fork` returns to it. At this commit: about
/// 42 (about 24 pages of allocator locks, 12 of them the depot shards', the
/// rest the C library's and the binary's); with the locks in the heaps,
/// about 135.
const MOST_FAULTS: i64 = 70;

/// The faults a forked child took before `fork` returned to it.
fn faults_of_a_fork() -> i64 {
    // SAFETY: the child calls only getrusage and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: a zeroed rusage is valid; getrusage and _exit are
        // async-signal-safe.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            libc::_exit(usage.ru_minflt.min(255) as i32);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    i64::from(libc::WEXITSTATUS(status))
}

#[test]
fn a_fork_writes_few_pages() {
    // Every class and tier in use, so that every lock has been taken.
    let mut blocks = Vec::new();
    for size in (16..=64 * 1024).step_by(48).chain([300_000, 2 << 20]) {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: a valid layout of non-zero size.
        let block = unsafe { GLOBAL.alloc(layout) };
        assert!(!block.is_null());
        blocks.push((block, layout));
    }
    // The first fork finds the lock pages private to the parent; from the
    // second on, each one the handlers write is a fault in the child.
    let faults: Vec<i64> = (0..4).map(|_| faults_of_a_fork()).collect();
    let steady = faults[1..].iter().copied().max().unwrap();
    assert!(
        steady <= MOST_FAULTS,
        "a child took {steady} page faults before fork returned (forks: {faults:?})"
    );
    for (block, layout) in blocks {
        // SAFETY: live blocks of these layouts, freed once.
        unsafe { GLOBAL.dealloc(block, layout) };
    }
    eprintln!("faults before fork returned in the child: {faults:?}");
}
