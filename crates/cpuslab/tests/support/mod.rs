//! Helpers shared by the `alloc_*` integration tests (each of which installs
//! `cpuslab::CpuSlab` as its global allocator): re-running the test binary as a
//! child process in a chosen rseq mode, content patterns, fault injection, and
//! reading the resident set size.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use rseq_core::Mode;

// ---- child processes -------------------------------------------------------------

/// The environment variable that makes the `child` test of a binary do its work.
pub const CHILD_ENV: &str = "TEST_CPUSLAB_ALLOC_TEST_CHILD";

/// The rseq modes and the environment that selects each.
pub const MODES: [Mode; 3] = [Mode::Glibc, Mode::Own, Mode::Fallback];

/// Environment variables to set and to remove so that the child runs in `mode`.
pub fn mode_env(mode: Mode) -> (Vec<(&'static str, &'static str)>, Vec<&'static str>) {
    match mode {
        Mode::Glibc => (vec![], vec!["GLIBC_TUNABLES", "CPUSLAB_RSEQ"]),
        Mode::Own => (
            vec![("GLIBC_TUNABLES", "glibc.pthread.rseq=0")],
            vec!["CPUSLAB_RSEQ"],
        ),
        Mode::Fallback => (
            vec![
                ("GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
                ("CPUSLAB_RSEQ", "0"),
            ],
            vec![],
        ),
    }
}

/// The name a child receives for `mode` (see [`mode_named`]).
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Glibc => "glibc",
        Mode::Own => "own",
        Mode::Fallback => "fallback",
    }
}

pub fn mode_named(name: &str) -> Mode {
    match name {
        "glibc" => Mode::Glibc,
        "own" => Mode::Own,
        "fallback" => Mode::Fallback,
        other => panic!("unknown mode {other}"),
    }
}

/// What the child was asked to do, or `None` in a normal test run.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// In a child whose scenario is a mode's name: that mode, checked to be in
/// effect ([`assert_mode`]); `None` in a normal test run.
pub fn child_mode() -> Option<Mode> {
    let mode = mode_named(&child_scenario()?);
    assert_mode(mode);
    Some(mode)
}

/// This test binary as a command, with the environment of `mode` applied.
pub fn this_binary_in(mode: Mode) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    let (set, remove) = mode_env(mode);
    for name in remove {
        command.env_remove(name);
    }
    for (name, value) in set {
        command.env(name, value);
    }
    command
}

/// Runs `command` to its end; returns its exit status (-1 when killed by a
/// signal, with the signal in the text) and its output, which it also prints
/// under `title`.
pub fn run_to_end(mut command: Command, title: &str) -> (i32, String) {
    let output = command.output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&output.status) {
        text += &format!("\n[child killed by signal {signal}]");
    }
    println!("---- {title} ----\n{text}");
    (output.status.code().unwrap_or(-1), text)
}

/// Re-runs this test binary on its `child` test with `scenario` in [`CHILD_ENV`],
/// the environment of `mode` applied, and `extra` set. Returns the exit status
/// (-1 when killed by a signal, with the signal in the text) and the output.
pub fn run_child(scenario: &str, mode: Mode, extra: &[(&str, &str)]) -> (i32, String) {
    let mut command = this_binary_in(mode);
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .envs(extra.iter().copied());
    run_to_end(
        command,
        &format!("child {scenario} in mode {}", mode_name(mode)),
    )
}

/// Runs the child and asserts that it exited 0 and printed `marker`.
pub fn assert_child_ok(scenario: &str, mode: Mode, marker: &str) -> String {
    let (code, text) = run_child(scenario, mode, &[]);
    assert_eq!(
        code,
        0,
        "child {scenario} in mode {} failed:\n{text}",
        mode_name(mode)
    );
    assert!(
        text.contains(marker),
        "child {scenario} in mode {} did not print {marker:?}:\n{text}",
        mode_name(mode)
    );
    text
}

/// Asserts that the allocator runs in the mode the environment selected.
pub fn assert_mode(expected: Mode) {
    let stats = cpuslab::stats();
    assert_eq!(
        stats.mode, expected,
        "the environment did not select the mode (stats: {stats})"
    );
    assert_eq!(rseq_core::mode(), expected);
}

// ---- randomness ------------------------------------------------------------------

#[path = "../shared/rng.rs"]
mod rng;
#[allow(unused_imports)]
pub use rng::Rng;

/// A 64-bit mix (splitmix64's finalizer).
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

// ---- content patterns ------------------------------------------------------------

/// The 8-byte word a block with key `key` repeats over its whole length.
/// Never zero, so that a zeroed block never passes for a filled one.
pub fn pattern_word(key: u64) -> u64 {
    mix(key) | 0x0100_0000_0000_0001
}

/// Fills `len` bytes at `p` with `word` repeated (byte i = byte i % 8 of word).
/// Uses a doubling memcpy, so it is fast even in debug builds.
///
/// # Safety
/// `p` points to `len` writable bytes.
pub unsafe fn fill(p: *mut u8, len: usize, word: u64) {
    let bytes = word.to_le_bytes();
    let first = len.min(8);
    // SAFETY: first <= len bytes of the block.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, first) };
    let mut done = first;
    while done < len {
        let n = done.min(len - done);
        // SAFETY: [0, done) is filled and [done, done + n) lies within the block; the
        // two do not overlap. done is a multiple of 8, so the period is kept.
        unsafe { std::ptr::copy_nonoverlapping(p, p.add(done), n) };
        done += n;
    }
}

/// Checks what [`fill`] wrote over the first `len` bytes. Returns the offset of the
/// first 8-byte window that differs (None when intact).
///
/// # Safety
/// `p` points to `len` readable bytes.
pub unsafe fn check(p: *const u8, len: usize, word: u64) -> Option<usize> {
    // SAFETY: the caller's promise.
    let block = unsafe { std::slice::from_raw_parts(p, len) };
    let bytes = word.to_le_bytes();
    let first = len.min(8);
    if block[..first] != bytes[..first] {
        return Some(0);
    }
    // Period 8 plus a correct first word means every byte is correct; both
    // comparisons are memcmp calls.
    if len > 8 && block[8..] != block[..len - 8] {
        let bad = (8..len).find(|&i| block[i] != bytes[i % 8]).unwrap_or(8);
        return Some(bad);
    }
    None
}

/// Whether `len` bytes at `p` are all zero.
///
/// # Safety
/// `p` points to `len` readable bytes.
pub unsafe fn is_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: the caller's promise.
    unsafe { check_zero(p, len) }.is_none()
}

/// The offset of the first non-zero byte, if any.
///
/// # Safety
/// `p` points to `len` readable bytes.
pub unsafe fn check_zero(p: *const u8, len: usize) -> Option<usize> {
    // SAFETY: the caller's promise.
    let block = unsafe { std::slice::from_raw_parts(p, len) };
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(ZEROS.len());
        if block[off..off + n] != ZEROS[..n] {
            return block[off..off + n]
                .iter()
                .position(|&b| b != 0)
                .map(|i| off + i);
        }
        off += n;
    }
    None
}

// ---- process memory --------------------------------------------------------------

pub fn page_size() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// (virtual size, resident set) of this process in bytes, from /proc/self/statm.
/// Reads through a stack buffer so that it does not allocate.
pub fn statm() -> (usize, usize) {
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated path; a buffer of buf.len() bytes; our own fd.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0, "open /proc/self/statm");
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    assert!(n > 0, "read /proc/self/statm");
    let text = std::str::from_utf8(&buf[..n as usize]).unwrap();
    let mut fields = text.split_ascii_whitespace();
    let mut next = || -> usize { fields.next().unwrap().parse().unwrap() };
    let size = next();
    let resident = next();
    (size * page_size(), resident * page_size())
}

pub fn rss_bytes() -> usize {
    statm().1
}

pub const MIB: usize = 1 << 20;

pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

// ---- fault injection -------------------------------------------------------------

pub static SIGNALS: AtomicU64 = AtomicU64::new(0);

/// SIGPROF's handler: counts and returns. It must not allocate (malloc is not
/// async-signal-safe); its job is to interrupt threads, often inside a
/// restartable section, which the kernel then aborts.
extern "C" fn on_sigprof(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the counting SIGPROF handler and arms the process's profiling timer
/// to fire every `interval_us` microseconds of CPU time.
pub fn start_sigprof(interval_us: i64) {
    // SAFETY: installing a handler that only touches an atomic, and arming the
    // process's profiling timer.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(
            libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()),
            0
        );
        let interval = libc::timeval {
            tv_sec: 0,
            tv_usec: interval_us,
        };
        let timer = libc::itimerval {
            it_interval: interval,
            it_value: interval,
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()),
            0
        );
    }
}

pub fn stop_sigprof() {
    // SAFETY: disarming the timer.
    unsafe {
        let zero: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_PROF, &zero, std::ptr::null_mut());
    }
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[path = "../../../rseq-core/tests/support/affinity.rs"]
mod affinity;
#[allow(unused_imports)] // not every test binary pins
pub use affinity::pin_to_first_allowed_cpu;

/// Pins the calling thread to one random online CPU (a forced migration).
pub fn migrate(rng: &mut Rng) {
    let cpu = rng.below(online_cpus());
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Lets the calling thread run on every online CPU again.
pub fn unpin() {
    // SAFETY: a cpu_set_t with every online CPU set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..online_cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

pub fn sched_yield() {
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
}

// ---- statistics ------------------------------------------------------------------

/// The allocator's statistics without the per-class table (one line).
pub fn brief(stats: &cpuslab::Stats) -> String {
    stats
        .to_string()
        .lines()
        .take_while(|line| !line.trim_start().starts_with("class"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- targeted signals ------------------------------------------------------------

/// Threads registered to receive signals from the [`Signaller`].
static TARGETS: [std::sync::atomic::AtomicI32; 256] =
    [const { std::sync::atomic::AtomicI32::new(0) }; 256];
static TARGET_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Registers the calling thread as a target of the [`Signaller`].
pub fn register_signal_target() {
    // SAFETY: no preconditions.
    let tid = unsafe { libc::gettid() };
    let i = TARGET_COUNT.fetch_add(1, Ordering::Relaxed);
    assert!(i < TARGETS.len(), "too many signal targets");
    TARGETS[i].store(tid, Ordering::Relaxed);
}

/// Removes the calling thread from the targets (before it exits, so that its
/// thread id is not signalled after reuse).
pub fn unregister_signal_target() {
    // SAFETY: no preconditions.
    let tid = unsafe { libc::gettid() };
    for t in &TARGETS {
        let _ = t.compare_exchange(tid, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A thread that sends SIGPROF (to the counting handler [`start_sigprof`]
/// installs) to a random registered thread every `interval_us` microseconds: far
/// more often than the profiling timer, whose resolution is the scheduler tick.
pub struct Signaller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Signaller {
    pub fn start(interval_us: u64) -> Signaller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(0x5163);
            let mut sent = 0;
            // SAFETY: no preconditions.
            let pid = unsafe { libc::getpid() };
            while !flag.load(Ordering::Relaxed) {
                let n = TARGET_COUNT.load(Ordering::Relaxed).min(TARGETS.len());
                if n > 0 {
                    let tid = TARGETS[rng.below(n)].load(Ordering::Relaxed);
                    if tid != 0 {
                        // SAFETY: signalling a thread of this process; SIGPROF has
                        // a handler that only counts.
                        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGPROF) };
                        sent += 1;
                    }
                }
                std::thread::sleep(std::time::Duration::from_micros(interval_us));
            }
            sent
        });
        Signaller {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread; returns how many signals it sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

// ---- block tracking for memory tests -----------------------------------------------

/// Blocks a [`Tracker`] holds at most.
const MAX_BLOCKS: usize = 2_500_000;

/// (address, size) of every block of a memory test, in memory mapped outside
/// the allocator (and unmapped when dropped), so that the measurements need not
/// count it.
pub struct Tracker {
    entries: *mut (usize, usize),
    pub len: usize,
}

impl Tracker {
    pub fn new() -> Tracker {
        // SAFETY: an anonymous private mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAX_BLOCKS * 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Tracker {
            entries: p.cast(),
            len: 0,
        }
    }

    pub fn push(&mut self, entry: (usize, usize)) {
        assert!(self.len < MAX_BLOCKS);
        // SAFETY: len < MAX_BLOCKS entries fit in the mapping.
        unsafe { self.entries.add(self.len).write(entry) };
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[(usize, usize)] {
        // SAFETY: the first len entries were written.
        unsafe { std::slice::from_raw_parts(self.entries, self.len) }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer borrowed.
        unsafe { libc::munmap(self.entries.cast(), MAX_BLOCKS * 16) };
    }
}
