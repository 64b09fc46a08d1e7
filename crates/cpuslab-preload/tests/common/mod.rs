//! Shared by the LD_PRELOAD tests: builds libcpuslab.so (once per test binary),
//! compiles the C and C++ programs of `tests/c/`, and runs programs under the
//! library in each rseq mode with a time limit (a hang is a failure, not a
//! stuck test run).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The rseq modes of the whole process that a program runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// glibc registers rseq for every thread; cpuslab uses glibc's area.
    Glibc,
    /// `GLIBC_TUNABLES=glibc.pthread.rseq=0`: cpuslab registers its own area.
    Own,
    /// `CPUSLAB_RSEQ=0`: no rseq, per-CPU locks.
    Fallback,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Glibc, Mode::Own, Mode::Fallback];
    /// glibc's rseq and none: the modes every test runs in.
    pub const MAIN: [Mode; 2] = [Mode::Glibc, Mode::Fallback];

    /// The name `malloc_stats` / `CPUSLAB_STATS=1` prints for this mode.
    pub fn reported(self) -> &'static str {
        match self {
            Mode::Glibc => "rseq mode Glibc",
            Mode::Own => "rseq mode Own",
            Mode::Fallback => "rseq mode Fallback",
        }
    }

    /// Sets the environment of `cmd` for this mode (and clears the switches a
    /// caller's environment may hold).
    pub fn apply(self, cmd: &mut Command) {
        for var in [
            "CPUSLAB_RSEQ",
            "CPUSLAB_INDEX",
            "CPUSLAB_STATS",
            "GLIBC_TUNABLES",
            "LD_PRELOAD",
        ] {
            cmd.env_remove(var);
        }
        match self {
            Mode::Glibc => {}
            Mode::Own => {
                cmd.env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
            }
            Mode::Fallback => {
                cmd.env("CPUSLAB_RSEQ", "0");
            }
        }
    }
}

/// The target directory cargo builds into (`CARGO_TARGET_DIR` or the
/// workspace's `target/`).
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The absolute path of libcpuslab.so, built in release mode on first use.
pub fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "cpuslab-preload"])
            .current_dir(&workspace)
            .status()
            .expect("cannot run cargo");
        assert!(
            status.success(),
            "cargo build --release -p cpuslab-preload failed"
        );
        let library = target_dir().join("release/libcpuslab.so");
        assert!(library.exists(), "{} was not built", library.display());
        library.canonicalize().expect("canonical library path")
    })
}

/// Where compiled test programs and scratch files go.
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpuslab-preload");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A fresh, empty scratch directory named `name`.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Compiles `tests/c/<source>` (C with gcc, `.cpp` with g++) into the scratch
/// directory as `<output>`, with warnings on (printed, not fatal) and the
/// compiler's built-in knowledge of malloc off, so that every call reaches the
/// library.
pub fn compile(source: &str, output: &str, extra: &[&str]) -> PathBuf {
    let source_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    let binary = scratch_dir().join(output);
    let cpp = source.ends_with(".cpp");
    let mut cmd = Command::new(if cpp { "g++" } else { "gcc" });
    cmd.args(["-O2", "-g", "-Wall", "-Wextra", "-pthread", "-fno-builtin"]);
    if cpp {
        cmd.arg("-std=c++17");
    } else {
        cmd.arg("-std=gnu11");
    }
    cmd.arg("-o").arg(&binary).arg(&source_path).args(extra);
    let output = cmd.output().expect("cannot run the compiler (gcc/g++)");
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "compiling {} failed:\n{warnings}",
        source_path.display()
    );
    if !warnings.trim().is_empty() {
        eprintln!("warnings compiling {}:\n{warnings}", source_path.display());
    }
    binary
}

/// What a program did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status (None: killed after the time limit).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The signal that ended it, if one did.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.and_then(|s| s.signal())
    }

    /// Panics with everything known unless the program exited with 0.
    pub fn assert_success(&self, what: &str) {
        assert!(self.success(), "{what} failed: {self}");
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}")?,
            None => write!(
                f,
                "killed after {:.1} s (hang?)",
                self.elapsed.as_secs_f64()
            )?,
        }
        let tail = |text: &str| {
            let start = text.len().saturating_sub(4000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text[start..].to_string()
        };
        write!(
            f,
            "\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// Runs `cmd` to completion or until `limit`, whichever comes first (then it
/// is killed), collecting its output.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Outcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let collect = |stream: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break Some(status),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    let elapsed = start.elapsed();
    Outcome {
        status,
        // A killed program's descendants may keep the pipes open: do not wait
        // for them forever.
        stdout: join_within(stdout, Duration::from_secs(5)),
        stderr: join_within(stderr, Duration::from_secs(5)),
        elapsed,
    }
}

fn join_within(handle: thread::JoinHandle<String>, limit: Duration) -> String {
    let start = Instant::now();
    while !handle.is_finished() {
        if start.elapsed() > limit {
            return "<output still open>".to_string();
        }
        thread::sleep(Duration::from_millis(10));
    }
    handle.join().unwrap_or_default()
}

/// A command that runs `program` under libcpuslab.so in `mode`.
pub fn preloaded(program: impl AsRef<std::ffi::OsStr>, mode: Mode) -> Command {
    let mut cmd = Command::new(program);
    mode.apply(&mut cmd);
    cmd.env("LD_PRELOAD", library());
    cmd
}

/// A command that runs `program` without the library (the reference run).
pub fn plain(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    Mode::Glibc.apply(&mut cmd);
    cmd
}

/// Runs a compiled test program under the library in `mode` with the
/// statistics report on, checks that it exited with 0 and that the report
/// names `mode` (so the library was loaded and the mode took effect), and
/// returns its outcome.
pub fn run_checked(binary: &Path, args: &[&str], mode: Mode, limit: Duration) -> Outcome {
    let mut cmd = preloaded(binary, mode);
    cmd.args(args).env("CPUSLAB_STATS", "1");
    let outcome = run_with_limit(cmd, limit);
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    outcome.assert_success(&format!("{name} {args:?} in {mode:?} mode"));
    assert!(
        outcome.stderr.contains(mode.reported()),
        "{name} in {mode:?} mode: the statistics report does not say \"{}\": {outcome}",
        mode.reported()
    );
    eprintln!(
        "{name} {args:?} {mode:?}: {:.2} s: {}",
        outcome.elapsed.as_secs_f64(),
        outcome.stdout.trim()
    );
    outcome
}
