//! The configuration layer: every `CPUSLAB_*` variable the code reads is listed
//! in docs/tuning.md and vice versa; each option set from the environment takes
//! effect; invalid values and unknown variables print one line and keep the
//! defaults; `Config::apply` sets options from code and refuses, changing
//! nothing, what can no longer change.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use cpuslab::{ConfigError, Index, Mode};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// `CPUSLAB_<UPPER_CASE>` names in `text`.
fn variable_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("CPUSLAB_") {
        let tail = &rest[at + "CPUSLAB_".len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_name = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if len > 0 && !preceded_by_name {
            names.insert(format!("CPUSLAB_{}", tail[..len].trim_end_matches('_')));
        }
        rest = &tail[len..];
    }
    names
}

fn rust_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_variable_in_the_code_is_documented_and_vice_versa() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let options: BTreeSet<String> = cpuslab::internals::OPTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();

    let tuning = std::fs::read_to_string(root.join("docs/tuning.md")).unwrap();
    let section = tuning
        .split("## Options")
        .nth(1)
        .expect("docs/tuning.md has an \"## Options\" section");
    let section = section.split("\n## ").next().unwrap();
    let table: String = section
        .lines()
        .filter(|line| line.starts_with("| `CPUSLAB_"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        variable_names(&table),
        options,
        "docs/tuning.md's option table and config::OPTIONS differ"
    );

    let mut files = Vec::new();
    for krate in ["rseq-sys", "rseq-core", "cpuslab", "cpuslab-preload"] {
        rust_sources(&root.join("crates").join(krate).join("src"), &mut files);
    }
    let mut in_code = BTreeSet::new();
    for file in &files {
        in_code.extend(variable_names(&std::fs::read_to_string(file).unwrap()));
    }
    let undocumented: Vec<_> = in_code.difference(&options).collect();
    assert!(
        undocumented.is_empty(),
        "variables named in the code but not options: {undocumented:?}"
    );
    assert_eq!(options.len(), cpuslab::internals::OPTIONS.len());
}

/// Runs the `child` scenario with `env` set (glibc mode's environment).
fn run(scenario: &str, env: &[(&str, &str)]) -> String {
    let (code, text) = support::run_child(scenario, Mode::Glibc, env);
    assert_eq!(code, 0, "child {scenario} failed:\n{text}");
    assert!(
        text.contains("CHILD DONE"),
        "child {scenario} did not finish:\n{text}"
    );
    text
}

#[test]
fn options_from_the_environment_take_effect() {
    run(
        "environment",
        &[
            ("CPUSLAB_INDEX", "cpu"),
            ("CPUSLAB_DECAY_MS", "250"),
            ("CPUSLAB_CPU_CACHE_BYTES", "16k"),
            ("CPUSLAB_RSEQ", "OFF"),
            ("CPUSLAB_STATS", "no"),
        ],
    );
}

#[test]
fn invalid_values_print_one_line_each_and_keep_the_defaults() {
    let text = run(
        "defaults",
        &[
            ("CPUSLAB_DECAY_MS", "soon"),
            ("CPUSLAB_CPU_CACHE_BYTES", "1M"),
            ("CPUSLAB_INDEX", "cpu0"),
            ("CPUSLAB_RSEQ", "maybe"),
            ("CPUSLAB_STATS", "FALSE!"),
            ("CPUSLAB_DECAY", "5"),
        ],
    );
    for expected in [
        "cpuslab: ignoring CPUSLAB_DECAY_MS=soon: expected milliseconds, or never; keeping the default",
        "cpuslab: ignoring CPUSLAB_CPU_CACHE_BYTES=1M: expected bytes up to 262144",
        "cpuslab: ignoring CPUSLAB_INDEX=cpu0: expected cpu or mm_cid; keeping the default",
        "cpuslab: ignoring CPUSLAB_RSEQ=maybe: expected 1/on/yes/true or 0/off/no/false",
        "cpuslab: ignoring CPUSLAB_STATS=FALSE!:",
        "cpuslab: ignoring unknown variable CPUSLAB_DECAY (docs/tuning.md lists the options)",
    ] {
        assert_eq!(text.matches(expected).count(), 1, "{expected:?} once in:\n{text}");
    }
    assert!(
        !text.contains("cpuslab: rseq mode"),
        "no report at exit:\n{text}"
    );
}

#[test]
fn verbose_prints_the_start_up_line_and_stats_the_report_at_exit() {
    let text = run(
        "verbose",
        &[("CPUSLAB_VERBOSE", "1"), ("CPUSLAB_STATS", "yes")],
    );
    let version = env!("CARGO_PKG_VERSION");
    let start = format!("cpuslab {version}: rseq mode Glibc, caches indexed by ");
    assert_eq!(
        text.matches(&start).count(),
        1,
        "one start-up line:\n{text}"
    );
    let done = text.find("CHILD DONE").unwrap();
    let report = text
        .find("cpuslab: rseq mode Glibc")
        .expect("report at exit");
    assert!(report > done, "the report comes at exit:\n{text}");
}

#[test]
fn verbose_does_not_decide_the_mode_before_the_rseq_switch() {
    let text = run(
        "verbose-fallback",
        &[("CPUSLAB_VERBOSE", "1"), ("CPUSLAB_RSEQ", "off")],
    );
    assert!(text.contains("rseq mode Fallback"), "{text}");
}

#[test]
fn the_background_thread_sleeps_between_sweeps_even_at_decay_0() {
    run(
        "background-decay-0",
        &[("CPUSLAB_BACKGROUND", "1"), ("CPUSLAB_DECAY_MS", "0")],
    );
}

/// CPU time this process used so far.
fn cpu_time() -> std::time::Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[test]
fn code_sets_options_and_refuses_what_is_too_late() {
    run("code", &[]);
}

#[test]
fn child() {
    let Some(scenario) = support::child_scenario() else {
        return;
    };
    let _warm = std::hint::black_box(Box::new([1u8; 100]));
    let config = cpuslab::config();
    match scenario.as_str() {
        "environment" => {
            assert_eq!(config.index, Index::Cpu);
            assert_eq!(config.decay_ms, 250);
            assert_eq!(config.cpu_cache_bytes, 16 << 10);
            assert!(!config.rseq);
            assert!(!config.stats_at_exit);
            let stats = cpuslab::stats();
            assert_eq!(stats.mode, Mode::Fallback);
            assert_eq!(stats.index, Index::Cpu);
            // A 16 KiB budget: 64-byte objects fill 256 slots, not 1024.
            let blocks: Vec<Box<[u8; 64]>> = (0..4096).map(|_| Box::new([7; 64])).collect();
            drop(blocks);
            let class = stats.classes.iter().position(|c| c.size == 64).unwrap();
            let cached = cpuslab::stats().classes[class].cpu_cached;
            assert!(cached <= 256 * stats.shelves as usize, "{cached} cached");
            let shelf = cpuslab::cached_bytes_bound(1) - cpuslab::cached_bytes_bound(0);
            assert!(shelf <= cpuslab::NUM_CLASSES * (16 << 10), "{shelf}");
        }
        "defaults" => {
            assert_eq!(config.index, Index::ConcurrencyId);
            assert_eq!(config.decay_ms, 1000);
            assert_eq!(config.cpu_cache_bytes, cpuslab::MAX_CPU_CACHE_BYTES);
            assert!(config.rseq);
            assert!(!config.stats_at_exit);
            assert!(!config.verbose);
        }
        "verbose" => {
            assert!(config.verbose && config.stats_at_exit);
        }
        "verbose-fallback" => {
            assert_eq!(cpuslab::stats().mode, Mode::Fallback);
        }
        "background-decay-0" => {
            assert!(cpuslab::background_running());
            let before = cpu_time();
            std::thread::sleep(std::time::Duration::from_millis(500));
            let used = cpu_time() - before;
            // A thread that never slept would use most of the 500 ms.
            assert!(
                used < std::time::Duration::from_millis(150),
                "{used:?} of CPU"
            );
        }
        "code" => {
            let mut changed = config;
            changed.decay_ms = 40;
            changed.cpu_cache_bytes = 8 << 10;
            changed.apply().unwrap();
            let now = cpuslab::config();
            assert_eq!((now.decay_ms, now.cpu_cache_bytes), (40, 8 << 10));

            // The caches exist already (the warm-up allocated): the index and
            // rseq are fixed, and a refused apply changes nothing at all.
            let mut late = now;
            late.index = Index::Cpu;
            late.decay_ms = 77;
            assert_eq!(late.apply(), Err(ConfigError::TooLate("CPUSLAB_INDEX")));
            let mut late = now;
            late.rseq = false;
            late.decay_ms = 77;
            assert_eq!(late.apply(), Err(ConfigError::TooLate("CPUSLAB_RSEQ")));
            let mut big = now;
            big.cpu_cache_bytes = cpuslab::MAX_CPU_CACHE_BYTES + 1;
            assert_eq!(
                big.apply(),
                Err(ConfigError::OutOfRange("CPUSLAB_CPU_CACHE_BYTES"))
            );
            assert_eq!(cpuslab::config(), now);
            assert_eq!(cpuslab::stats().mode, Mode::Glibc);

            let mut background = now;
            background.background = true;
            background.apply().unwrap();
            assert!(cpuslab::background_running());
            background.background = false;
            assert_eq!(
                background.apply(),
                Err(ConfigError::TooLate("CPUSLAB_BACKGROUND"))
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("CHILD DONE");
}
