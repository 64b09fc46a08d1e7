//! The fork handlers are registered on the allocator's first use, whatever
//! serves it: even when the per-CPU caches cannot be mapped (RLIMIT_AS), so the
//! allocator runs on the depot's and the page heap's locks, a fork never hands a
//! child a lock held by a thread that does not exist there.
//!
//! This binary keeps glibc's malloc as its global allocator, so that cpuslab's
//! first use is the child's own call, made after it limits its address space.
//! The child (this binary, re-run on its `child` test) runs in a separate
//! process because the limit and the allocator's state are process-wide.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

const CHILD_ENV: &str = "TEST_CPUSLAB_FORK_HANDLERS_CHILD";

#[test]
fn fork_handlers_are_registered_when_the_per_cpu_caches_cannot_be_mapped() {
    for case in ["small", "large"] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, case)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        println!("---- first use: {case} ----\n{text}");
        assert!(output.status.success(), "{case}: the child failed:\n{text}");
        assert!(
            text.contains("CASE PASSED"),
            "{case}: did not finish:\n{text}"
        );
    }
}

/// The process's virtual size in bytes (from /proc/self/statm, in pages).
fn virtual_size() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    assert!(
        !cpuslab::internals::fork_handlers_registered(),
        "cpuslab was used before the child's first call"
    );
    // Room for a few pages, not for the per-CPU region (a block of 512 KiB per
    // possible CPU) nor a page-heap chunk.
    let limit = virtual_size() + 64 * 1024;
    let rlimit = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setting this process's own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    let size = if case == "small" { 64 } else { 1 << 20 };
    let layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: a valid layout; freed at once if we get it.
    let p = unsafe { cpuslab::CpuSlab.alloc(layout) };
    println!(
        "first use ({size} B) under RLIMIT_AS: {}",
        if p.is_null() { "null" } else { "served" }
    );
    if !p.is_null() {
        // SAFETY: allocated just above with this layout.
        unsafe { cpuslab::CpuSlab.dealloc(p, layout) };
    }
    assert!(
        cpuslab::internals::fork_handlers_registered(),
        "the first use left the allocator without fork handlers"
    );
    println!("CASE PASSED");
}
