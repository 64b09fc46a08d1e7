//! malloc is not async-signal-safe, and cpuslab says so rather than hang: a
//! signal handler that allocates while its own thread holds one of the
//! allocator's locks (it interrupted the allocator there) gets a one-line report
//! on stderr and an abort, never a silent deadlock.
//!
//! The child (this binary, re-run on its `child` test) takes every lock of the
//! lower tiers, as a thread inside a span refill would hold some, raises SIGUSR1,
//! and its handler allocates 1 MiB. The parent watches it with a timeout. In each
//! rseq mode.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rseq_core::Mode;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const LIMIT: Duration = Duration::from_secs(30);
const REPORT: &str = "cpuslab: the allocator was entered from a signal handler";

/// Runs the child in `mode`; returns its signal (if killed by one) and output.
fn run_watched(mode: Mode) -> (Option<i32>, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(support::CHILD_ENV, support::mode_name(mode))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (set, remove) = support::mode_env(mode);
    for name in remove {
        command.env_remove(name);
    }
    for (name, value) in set {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the child deadlocked in {mode:?} mode:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("---- child in {mode:?} mode ----\n{text}");
    let signal = std::os::unix::process::ExitStatusExt::signal(&output.status);
    (signal, text)
}

fn reported_not_deadlocked(mode: Mode) {
    let (signal, text) = run_watched(mode);
    assert_eq!(
        signal,
        Some(libc::SIGABRT),
        "the child did not abort:\n{text}"
    );
    assert!(text.contains(REPORT), "no report on stderr:\n{text}");
    assert!(
        text.contains("handler allocates"),
        "the handler did not run:\n{text}"
    );
}

#[test]
fn a_handler_reentering_a_held_lock_is_reported_in_glibc_mode() {
    reported_not_deadlocked(Mode::Glibc);
}

#[test]
fn a_handler_reentering_a_held_lock_is_reported_in_own_registration_mode() {
    reported_not_deadlocked(Mode::Own);
}

#[test]
fn a_handler_reentering_a_held_lock_is_reported_in_fallback_mode() {
    reported_not_deadlocked(Mode::Fallback);
}

// ---- the child side --------------------------------------------------------------

extern "C" fn allocate_in_handler(_: libc::c_int) {
    let line = b"handler allocates 1 MiB\n";
    // SAFETY: write(2) of a static buffer is async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) };
    let layout = Layout::from_size_align(1 << 20, 8).unwrap();
    // SAFETY: a valid layout; the block is freed at once (if we get it at all).
    unsafe {
        let p = GLOBAL.alloc(layout);
        if !p.is_null() {
            GLOBAL.dealloc(p, layout);
        }
    }
}

#[test]
fn child() {
    if support::child_mode().is_none() {
        return; // not a child: nothing to do
    }
    // SAFETY: installing a handler for SIGUSR1 in this child process.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = allocate_in_handler as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    cpuslab::internals::lock_lower_tiers();
    // SAFETY: raise only signals the calling thread; the handler must not return
    // here (it aborts), so the locks are never released.
    unsafe { libc::raise(libc::SIGUSR1) };
    println!("the handler returned: no report, no abort");
}
