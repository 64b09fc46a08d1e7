//! A signal handler that runs an operation while its own thread holds that
//! CPU's lock (fallback mode, or a remote stop in any mode) gets an answer
//! instead of a deadlock: `Unavailable` for an operation, `Reentered` for a
//! remote stop. And fork hooks run from such a handler leave that lock held.
//!
//! The case runs in a child process (this binary, re-run on the `child` test) in
//! fallback mode, watched by a timeout: the old locks hung here.

use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rseq_core::{FenceError, Index, Mode, OpError, PerCpu, Stack};

const CHILD_ENV: &str = "RSEQ_REENTRY_CASE";
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_signal_handler_that_reenters_a_held_cpu_lock_is_refused_not_deadlocked() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "fallback")
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the child deadlocked: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("{text}");
    assert!(output.status.success(), "the child failed:\n{text}");
    assert!(
        text.contains("CASE PASSED"),
        "the child did not finish:\n{text}"
    );
}

static REGION: AtomicPtr<PerCpu<Stack>> = AtomicPtr::new(std::ptr::null_mut());
/// What the handler saw: 1 for the expected refusals, 2 for anything else.
static HANDLER: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    // SAFETY: set before the signal is raised; a leaked region.
    let region = unsafe { &*REGION.load(Ordering::Relaxed) };
    let pop = region.pop();
    let push = region.push(0x1000 as *mut u8);
    let stop = region.with_stopped(0, |_| ());
    let expected = pop == Err(OpError::Unavailable)
        && push == Err(OpError::Unavailable)
        && stop.err() == Some(FenceError::Reentered);
    if !expected {
        println!(
            "handler saw pop {pop:?}, push {push:?}, stop {:?}",
            stop.err()
        );
    }
    HANDLER.store(if expected { 1 } else { 2 }, Ordering::Relaxed);
}

/// What pthread_atfork runs around a fork, called from a signal handler.
extern "C" fn fork_hooks_in_handler(_: libc::c_int) {
    rseq_core::fork_prepare();
    rseq_core::fork_parent();
}

#[test]
fn child() {
    if std::env::var(CHILD_ENV).is_err() {
        return; // not a child: nothing to do
    }
    assert!(rseq_core::disable_rseq(), "rseq is in use already");
    assert_eq!(rseq_core::mode(), Mode::Fallback);
    // Run on CPU 0, whose lock the remote stop below takes.
    // SAFETY: a cpu_set_t with CPU 0, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
    let cpus = rseq_core::possible_cpus();
    let stacks: &'static mut [Stack] = Box::leak((0..cpus).map(|_| Stack::new()).collect());
    let slots: &'static mut [*mut u8] = Box::leak(vec![std::ptr::null_mut(); 8].into());
    // SAFETY: a leaked array of `cpus` stacks, 16 bytes apart.
    let region = unsafe {
        PerCpu::new(
            NonNull::new(stacks.as_mut_ptr()).unwrap(),
            4,
            cpus,
            Index::Cpu,
        )
    };
    let region: &'static PerCpu<Stack> = Box::leak(Box::new(region));
    // SAFETY: the slot array is leaked and used by this stack alone.
    assert!(unsafe { region.install(0, slots.as_mut_ptr(), 8) });
    region.push(0x2000 as *mut u8).unwrap();
    REGION.store(region as *const _ as *mut _, Ordering::Relaxed);
    // SAFETY: a handler that runs per-CPU operations and stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr1 as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    // Hold CPU 0's lock (a remote stop holds it), and take the signal there.
    region
        .with_stopped(0, |parts| {
            assert_eq!(parts.top, 1);
            // SAFETY: raise only signals the calling thread.
            unsafe { libc::raise(libc::SIGUSR1) };
        })
        .unwrap();
    assert_eq!(
        HANDLER.load(Ordering::Relaxed),
        1,
        "the handler did not get Unavailable / Reentered"
    );
    // fork() from a handler that interrupted a remote stop: the fork hooks must
    // leave the interrupted stop's lock held (the old hooks released every lock).
    // SAFETY: a handler that only runs rseq-core's fork hooks.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = fork_hooks_in_handler as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }
    region
        .with_stopped(0, |_| {
            // SAFETY: raise only signals the calling thread.
            unsafe { libc::raise(libc::SIGUSR2) };
            assert_eq!(
                region.pop(),
                Err(OpError::Unavailable),
                "the fork hooks released a lock that the interrupted stop still holds"
            );
        })
        .unwrap();
    // Outside the handler, the same operations work.
    assert_eq!(region.pop(), Ok(0x2000 as *mut u8));
    println!("handler refused, not deadlocked; outer operations fine");
    println!("CASE PASSED");
}
