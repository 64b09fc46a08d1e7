//! fork while other threads allocate: the child can allocate and free.
//!
//! Three threads hammer alloc/free (small, medium and large blocks, plus `trim()`
//! and `stats()`) while the main thread forks 20 times. Each child allocates and
//! frees a few MB through the global allocator and `_exit(0)`s. A child that hangs
//! for more than 5 s is deadlocked on an allocator lock that a thread which does
//! not exist in the child held at fork time: the test then prints the child's
//! backtrace (gdb) and kills it.
//!
//! Runs in each rseq mode (the fallback's per-CPU locks are locks too), in a
//! child process of this binary re-run on its `child` test.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rseq_core::Mode;
use support::{Rng, MIB};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const FORKS: usize = 20;
const WORKERS: u64 = 3;
const HANG_TIMEOUT: Duration = Duration::from_secs(5);
/// The child's exit status when its allocations failed (as opposed to hanging).
const CHILD_FAILED: i32 = 3;

#[test]
fn fork_while_allocating_in_glibc_mode() {
    support::assert_child_ok("glibc", Mode::Glibc, "FORK CLEAN");
}

#[test]
fn fork_while_allocating_in_own_registration_mode() {
    support::assert_child_ok("own", Mode::Own, "FORK CLEAN");
}

#[test]
fn fork_while_allocating_in_fallback_mode() {
    support::assert_child_ok("fallback", Mode::Fallback, "FORK CLEAN");
}

/// Whether every byte is `value` (two memcmp-speed comparisons, fast in debug
/// builds too).
fn all_bytes_are(bytes: &[u8], value: u8) -> bool {
    bytes.first().is_none_or(|&b| b == value) && bytes[1..] == bytes[..bytes.len() - 1]
}

/// One round of a worker: a little of every tier.
fn hammer(rng: &mut Rng, kept: &mut Vec<Box<[u8]>>) {
    for _ in 0..32 {
        let size = match rng.below(100) {
            0..=79 => rng.range(1, 1024),
            80..=97 => rng.range(1025, 200_000),
            _ => rng.range(300_000, 2 * MIB),
        };
        let b = vec![size as u8; size].into_boxed_slice();
        if kept.len() < 64 {
            kept.push(b);
        } else {
            let old = std::mem::replace(&mut kept[rng.below(64)], b);
            assert!(all_bytes_are(&old, old.len() as u8));
        }
    }
    let layout = Layout::from_size_align(rng.range(1, 8192), 1 << rng.below(13)).unwrap();
    // SAFETY: non-zero size; freed right away.
    unsafe {
        let p = GLOBAL.alloc(layout);
        assert!(!p.is_null());
        p.write_bytes(7, layout.size());
        GLOBAL.dealloc(p, layout);
    }
}

/// What a forked child does: allocate and free a few MB, every tier.
fn child_work(round: u64) -> bool {
    let mut rng = Rng::new(round + 1000);
    let mut small: Vec<Box<[u64]>> = (0..4000)
        .map(|i| vec![i as u64; 1 + rng.below(64)].into_boxed_slice())
        .collect();
    let medium: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 20_000 + i * 1000]).collect();
    let large = vec![0xabu8; 3 * MIB];
    let mut sum = 0u64;
    for (i, s) in small.iter().enumerate() {
        sum += s.iter().filter(|&&x| x == i as u64).count() as u64;
    }
    let ok_small = sum == small.iter().map(|s| s.len() as u64).sum::<u64>();
    let ok_medium = medium
        .iter()
        .enumerate()
        .all(|(i, v)| v.len() == 20_000 + i * 1000 && all_bytes_are(v, i as u8));
    let ok_large = all_bytes_are(&large, 0xab);
    small.truncate(10);
    drop((medium, large));
    cpuslab::trim();
    let stats = cpuslab::stats();
    let again: Vec<u8> = vec![1; 5 * MIB];
    ok_small && ok_medium && ok_large && stats.allocated > 0 && again.len() == 5 * MIB
}

/// Backtraces of every thread of `pid`, from gdb.
fn backtrace_of(pid: libc::pid_t) -> String {
    let output = std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "info threads",
            "-ex",
            "thread apply all bt",
        ])
        .output();
    match output {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        }
        Err(e) => format!("(could not run gdb: {e})"),
    }
}

/// Waits for the child; on a hang, returns its backtrace after killing it.
fn wait_with_timeout(pid: libc::pid_t) -> Result<i32, String> {
    let deadline = Instant::now() + HANG_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: polling our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid failed");
        if r == pid {
            if libc::WIFEXITED(status) {
                return Ok(libc::WEXITSTATUS(status));
            }
            return Err(format!("child killed by signal {}", libc::WTERMSIG(status)));
        }
        if Instant::now() > deadline {
            let trace = backtrace_of(pid);
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!(
                "child {pid} hung for more than {HANG_TIMEOUT:?} (deadlock?); its threads:\n{trace}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn child() {
    if support::child_mode().is_none() {
        return; // not a child: nothing to do
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let rounds = Arc::clone(&rounds);
            std::thread::spawn(move || {
                let mut rng = Rng::new(t + 1);
                let mut kept = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    hammer(&mut rng, &mut kept);
                    match t {
                        0 if rng.below(50) == 0 => cpuslab::trim(),
                        1 => {
                            std::hint::black_box(cpuslab::stats());
                        }
                        _ => {}
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the workers get going.
    while rounds.load(Ordering::Relaxed) < 100 {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let mut failures = Vec::new();
    for round in 0..FORKS {
        // Fork at a random moment of the workers' churn.
        std::thread::sleep(Duration::from_micros(200 + 500 * (round as u64 % 7)));
        // SAFETY: fork in a multi-threaded process; the child runs only
        // allocator code and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| child_work(round as u64)).unwrap_or(false);
            // SAFETY: leaving the child without destructors or the test harness.
            unsafe { libc::_exit(if ok { 0 } else { CHILD_FAILED }) };
        }
        match wait_with_timeout(pid) {
            Ok(0) => {}
            Ok(code) => failures.push(format!("fork {round}: child exited with {code}")),
            Err(hang) => {
                failures.push(format!("fork {round}: {hang}"));
                break; // one backtrace says enough
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    println!(
        "{FORKS} forks in {:.0} ms while {WORKERS} threads ran {} rounds; stats: {}",
        start.elapsed().as_secs_f64() * 1e3,
        rounds.load(Ordering::Relaxed),
        support::brief(&cpuslab::stats())
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("FORK CLEAN");
}
