//! One (workload, allocator, repetition) per child process, so that peak RSS
//! (VmHWM, per process) belongs to that run alone.
//!
//! The parent re-executes its own binary as `cpuslab-bench --child WORKLOAD
//! ALLOCATOR SCALE`; the child runs the workload through that allocator and prints
//! one line, `result key=value ...`, on stdout (`-` where a figure is unknown).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cpuslab_bench::ALLOCATORS;

use crate::memory::{proc_status_kib, Sample};
use crate::workloads::{self, Ctx};

/// The figures of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunResult {
    /// Wall time of the workload (thread creation included).
    pub seconds: f64,
    /// Peak RSS of the child process (VmHWM).
    pub peak_rss_kib: u64,
    /// RSS before the workload started (the harness alone).
    pub start_rss_kib: u64,
    /// At the workload's sample point, with its working set live.
    pub live: Sample,
    /// After the workload freed everything.
    pub after: Sample,
    /// Pattern checks made (all passed, or the child would have failed).
    pub checks: u64,
    /// CPU time of the child (user + system, all threads).
    pub cpu_seconds: f64,
    /// CPUs kept busy by other processes while the child ran, on average (from
    /// /proc/stat, less the child's own CPU time): other load on the machine.
    pub other_load: f64,
}

/// The child's side: runs one workload and prints the result line. Exits the
/// process with an error message on bad arguments; a failed check panics.
pub fn child_main(args: &[String]) -> ! {
    let [workload, allocator, scale] = args else {
        eprintln!("usage: cpuslab-bench --child WORKLOAD ALLOCATOR SCALE");
        std::process::exit(2);
    };
    let Some(&(allocator_name, alloc)) = ALLOCATORS.iter().find(|(name, _)| name == allocator)
    else {
        eprintln!("unknown allocator {allocator}");
        std::process::exit(2);
    };
    let workloads = workloads::all(crate::cpus());
    let Some(workload) = workloads.iter().find(|w| &w.name == workload) else {
        eprintln!("unknown workload {workload}");
        std::process::exit(2);
    };
    let scale: f64 = scale.parse().expect("scale is a number");
    let ctx = Ctx::new(alloc, allocator_name, scale);
    let start_rss_kib = proc_status_kib("VmRSS").unwrap_or(0);
    let began = Instant::now();
    let checks = workload.run(&ctx);
    let seconds = began.elapsed().as_secs_f64();
    let live = ctx.take_sample().unwrap_or_default();
    let after = Sample::now(allocator_name);
    let result = RunResult {
        seconds,
        peak_rss_kib: proc_status_kib("VmHWM").unwrap_or(0),
        start_rss_kib,
        live,
        after,
        checks,
        cpu_seconds: cpu_seconds(),
        other_load: 0.0,
    };
    println!("{}", result.line());
    std::process::exit(0)
}

/// User + system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU time spent by the whole machine so far (busy, not idle), from /proc/stat.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let busy: f64 = cpu
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .take(6)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy / ticks)
}

fn opt(value: Option<u64>) -> String {
    value.map_or("-".to_string(), |v| v.to_string())
}

impl RunResult {
    fn line(&self) -> String {
        format!(
            "result seconds={:.6} peak_rss_kib={} start_rss_kib={} live_rss_kib={} \
             live_allocated={} live_resident={} live_cached={} after_rss_kib={} \
             after_allocated={} after_resident={} after_cached={} checks={} cpu_seconds={:.6}",
            self.seconds,
            self.peak_rss_kib,
            self.start_rss_kib,
            self.live.rss_kib,
            opt(self.live.allocated),
            opt(self.live.resident),
            opt(self.live.cached),
            self.after.rss_kib,
            opt(self.after.allocated),
            opt(self.after.resident),
            opt(self.after.cached),
            self.checks,
            self.cpu_seconds
        )
    }

    fn parse(line: &str) -> Option<RunResult> {
        let fields = line.strip_prefix("result ")?;
        let mut result = RunResult::default();
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let number = || value.parse::<u64>().ok();
            match key {
                "seconds" => result.seconds = value.parse().ok()?,
                "peak_rss_kib" => result.peak_rss_kib = number()?,
                "start_rss_kib" => result.start_rss_kib = number()?,
                "live_rss_kib" => result.live.rss_kib = number()?,
                "live_allocated" => result.live.allocated = number(),
                "live_resident" => result.live.resident = number(),
                "live_cached" => result.live.cached = number(),
                "after_rss_kib" => result.after.rss_kib = number()?,
                "after_allocated" => result.after.allocated = number(),
                "after_resident" => result.after.resident = number(),
                "after_cached" => result.after.cached = number(),
                "checks" => result.checks = number()?,
                "cpu_seconds" => result.cpu_seconds = value.parse().ok()?,
                _ => {}
            }
        }
        Some(result)
    }
}

/// The parent's side: runs one child and waits for it at most `limit`. Returns the
/// result or a one-line reason (exit status, the end of its stderr).
pub fn run_child(
    workload: &str,
    allocator: &str,
    scale: f64,
    limit: Duration,
) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let busy_before = machine_busy_seconds();
    let began = Instant::now();
    let mut child = Command::new(exe)
        .args(["--child", workload, allocator, &scale.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let err_reader = std::thread::spawn(move || {
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let _ = stdout.read_to_string(&mut out);
        let err = err_reader.join().unwrap_or_default();
        let status = child.wait();
        let _ = done.send((status, out, err));
    });
    let (status, out, err) = match finished.recv_timeout(limit) {
        Ok(finished) => finished,
        Err(_) => {
            // SAFETY: plain kill(2) of our own child, which has not been reaped yet
            // (the waiting thread is still blocked reading its output).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = finished.recv();
            return Err(format!("timed out after {} s", limit.as_secs()));
        }
    };
    let status = status.map_err(|e| format!("wait: {e}"))?;
    // The panic message (a failed check says which block and word) is at the end.
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    if !status.success() {
        return Err(format!("{status}: {tail}"));
    }
    let wall = began.elapsed().as_secs_f64();
    let mut result = out
        .lines()
        .find_map(RunResult::parse)
        .ok_or_else(|| format!("no result line (stderr: {tail})"))?;
    if let (Some(before), Some(after)) = (busy_before, machine_busy_seconds()) {
        result.other_load = ((after - before - result.cpu_seconds) / wall).max(0.0);
    }
    Ok(result)
}
