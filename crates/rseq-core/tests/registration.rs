//! Own-mode registration (`GLIBC_TUNABLES=glibc.pthread.rseq=0`) against the
//! kernel ABI: it never writes a kernel-owned field, and a signal whose handler
//! runs an operation while the thread registers cannot make it fail.
//!
//! Each case runs in a child process (this binary, re-run on the `child` test),
//! so that the whole process is in own mode.

use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use rseq_core::{fault, Index, Mode, OpError, PerCpu};

const CHILD_ENV: &str = "RSEQ_REGISTRATION_CASE";

fn run_case(case: &str) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("---- case {case} ----\n{text}");
    assert!(output.status.success(), "case {case} failed:\n{text}");
    assert!(
        text.contains("CASE PASSED"),
        "case {case} did not finish:\n{text}"
    );
}

#[test]
fn a_failed_registration_writes_no_kernel_owned_field() {
    run_case("foreign-area");
}

#[test]
fn a_signal_during_registration_does_not_make_it_fail() {
    run_case("signal");
}

// ---- the child side --------------------------------------------------------------

#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    assert_eq!(
        rseq_core::mode(),
        Mode::Own,
        "the environment did not select own mode"
    );
    match case.as_str() {
        "foreign-area" => foreign_area(),
        "signal" => signal_during_registration(),
        other => panic!("unknown case {other}"),
    }
    println!("CASE PASSED");
}

/// A region of per-CPU words for the cases.
fn words() -> &'static PerCpu<AtomicUsize> {
    let cpus = rseq_core::possible_cpus();
    let slots: &'static mut [AtomicUsize] =
        Box::leak((0..cpus).map(|_| AtomicUsize::new(0)).collect());
    // SAFETY: a leaked array of `cpus` words, 8 bytes apart.
    let region = unsafe {
        PerCpu::new(
            NonNull::new(slots.as_mut_ptr()).unwrap(),
            3,
            cpus,
            Index::Cpu,
        )
    };
    Box::leak(Box::new(region))
}

/// An rseq area registered by someone else (as a second runtime in the process
/// would): 32 bytes, 32-aligned.
#[repr(C, align(32))]
struct ForeignArea([u32; 8]);

/// A thread whose rseq slot is taken by a foreign area: our registration fails
/// with EBUSY. Its operations report `Unavailable`, and our area's `cpu_id` still
/// reads the -1 it started with: nothing wrote -2 (or anything) into it.
fn foreign_area() {
    let words = words();
    std::thread::spawn(move || {
        let foreign: &'static mut ForeignArea = Box::leak(Box::new(ForeignArea([0; 8])));
        foreign.0[1] = u32::MAX; // cpu_id: not registered yet
                                 // SAFETY: a leaked (never freed) area, aligned and 32 bytes long, for this
                                 // thread; the kernel drops the registration when the thread exits.
        let result = unsafe {
            libc::syscall(
                libc::SYS_rseq,
                foreign as *mut ForeignArea,
                32u32,
                0,
                rseq_sys::RSEQ_SIG,
            )
        };
        assert_eq!(result, 0, "could not register the foreign area");
        for _ in 0..3 {
            assert_eq!(words.add(1), Err(OpError::Unavailable));
            assert_eq!(
                fault::own_area_cpu_id(),
                -1,
                "a kernel-owned field of our own area was written after EBUSY"
            );
        }
        println!("EBUSY: operations Unavailable, own cpu_id still -1");
    })
    .join()
    .unwrap();
}

static HANDLER_WORDS: std::sync::atomic::AtomicPtr<PerCpu<AtomicUsize>> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
/// What the handler's operation returned: 1 Ok, 2 an error, 0 never ran.
static HANDLER_RESULT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    // SAFETY: set before the signal is raised; points to a leaked region.
    let words = unsafe { &*HANDLER_WORDS.load(Ordering::Relaxed) };
    let result = if words.add(1).is_ok() { 1 } else { 2 };
    HANDLER_RESULT.store(result, Ordering::Relaxed);
}

/// A signal raised between the registration's check and its syscall: its handler
/// (which runs an operation, so registers if it can) waits until the
/// registration is done, and then both operations succeed.
fn signal_during_registration() {
    let words = words();
    HANDLER_WORDS.store(words as *const _ as *mut _, Ordering::Relaxed);
    // SAFETY: a handler that only runs a per-CPU add and stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr1 as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    std::thread::spawn(move || {
        assert_eq!(
            fault::own_area_cpu_id(),
            -1,
            "a new thread starts unregistered"
        );
        fault::raise_during_next_registration(libc::SIGUSR1);
        let outer = words.add(1);
        assert_eq!(
            HANDLER_RESULT.load(Ordering::Relaxed),
            1,
            "the handler did not run, or its operation failed"
        );
        assert!(
            outer.is_ok(),
            "the interrupted registration failed: {outer:?}"
        );
        assert!(
            fault::own_area_cpu_id() >= 0,
            "the thread is not registered"
        );
        println!("signal during registration: handler Ok, outer Ok, registered");
    })
    .join()
    .unwrap();
}
