//! Real programs under LD_PRELOAD, with glibc's rseq and without rseq:
//! python3 and perl (allocation-heavy scripts in tests/programs/, checksum
//! compared with a run without the library), git (a repository of 300 files
//! and 10 commits, log, gc, fsck), gcc (compiles tests/c/api.c; the binary it
//! built passes under the library) and g++ (compiles a C++ test program).
//!
//! A tool that is not installed is skipped with a message, not failed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Mode, Outcome};

const LIMIT: Duration = Duration::from_secs(120);

/// Whether `tool` runs at all (without the library).
fn available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// Runs `program args` without and then with the library in each main mode
/// and checks that the output is the same and names `marker`.
fn same_output_as_without_library(program: &Path, args: &[&Path], marker: &str) {
    let mut cmd = common::plain(program);
    cmd.args(args);
    let reference = common::run_with_limit(cmd, LIMIT);
    reference.assert_success(&format!("{} without the library", program.display()));
    assert!(reference.stdout.contains(marker), "{reference}");
    for mode in Mode::MAIN {
        let mut cmd = common::preloaded(program, mode);
        cmd.args(args).env("CPUSLAB_STATS", "1");
        let outcome = common::run_with_limit(cmd, LIMIT);
        outcome.assert_success(&format!("{} ({mode:?})", program.display()));
        assert!(
            outcome.stderr.contains(mode.reported()),
            "{} ({mode:?}) did not run under the library: {outcome}",
            program.display()
        );
        assert_eq!(
            outcome.stdout,
            reference.stdout,
            "{} ({mode:?}): output differs from the run without the library",
            program.display()
        );
        eprintln!(
            "{} {mode:?}: {:.2} s: {}",
            program.display(),
            outcome.elapsed.as_secs_f64(),
            outcome.stdout.trim()
        );
    }
}

#[test]
fn python3_dicts_sorts_strings_threads() {
    if !available("python3") {
        return;
    }
    // Resolve the interpreter itself (python3 may be a wrapper script).
    let which = common::run_with_limit(
        {
            let mut cmd = common::plain("python3");
            cmd.args(["-c", "import sys; print(sys.executable)"]);
            cmd
        },
        LIMIT,
    );
    which.assert_success("python3 -c 'print(sys.executable)'");
    let python = PathBuf::from(which.stdout.trim());
    same_output_as_without_library(&python, &[&script("workload.py")], "python checksum");
}

#[test]
fn perl_hash_sort_strings() {
    if !available("perl") {
        return;
    }
    same_output_as_without_library(
        Path::new("perl"),
        &[&script("workload.pl")],
        "perl checksum",
    );
}

/// Runs git in `repo` under the library; panics unless it succeeds.
fn git(repo: &Path, home: &Path, mode: Mode, args: &[&str]) -> Outcome {
    let mut cmd = common::preloaded("git", mode);
    cmd.args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "cpuslab")
        .env("GIT_AUTHOR_EMAIL", "cpuslab@example.invalid")
        .env("GIT_COMMITTER_NAME", "cpuslab")
        .env("GIT_COMMITTER_EMAIL", "cpuslab@example.invalid");
    let outcome = common::run_with_limit(cmd, LIMIT);
    outcome.assert_success(&format!("git {args:?} ({mode:?})"));
    outcome
}

fn git_repository(mode: Mode) {
    let home = common::fresh_dir(&format!("git-{mode:?}"));
    let repo = home.join("repo");
    std::fs::create_dir_all(&repo).expect("create repo dir");
    git(&repo, &home, mode, &["init", "-q", "-b", "main"]);
    let write_files = |round: usize, step: usize| {
        for i in (0..300).step_by(step) {
            let dir = repo.join(format!("dir{}", i % 17));
            std::fs::create_dir_all(&dir).expect("create dir");
            let line = format!("file {i} round {round}: {}\n", "x".repeat(i % 120));
            std::fs::write(dir.join(format!("file{i}.txt")), line.repeat(1 + i % 40))
                .expect("write file");
        }
    };
    write_files(0, 1);
    git(&repo, &home, mode, &["add", "-A"]);
    git(&repo, &home, mode, &["commit", "-q", "-m", "300 files"]);
    for round in 1..10 {
        write_files(round, 7 + round);
        git(&repo, &home, mode, &["add", "-A"]);
        git(
            &repo,
            &home,
            mode,
            &["commit", "-q", "-m", &format!("round {round}")],
        );
    }
    let log = git(&repo, &home, mode, &["log", "--oneline"]);
    assert_eq!(log.stdout.lines().count(), 10, "git log --oneline: {log}");
    let files = git(&repo, &home, mode, &["ls-files"]);
    assert_eq!(files.stdout.lines().count(), 300, "git ls-files: {files}");
    git(&repo, &home, mode, &["-c", "pack.threads=2", "gc", "-q"]);
    git(&repo, &home, mode, &["fsck", "--full", "--strict"]);
    let status = git(&repo, &home, mode, &["status", "--porcelain"]);
    assert!(status.stdout.trim().is_empty(), "git status: {status}");
    // The library really was loaded into git.
    let mut cmd = common::preloaded("git", mode);
    cmd.args(["rev-list", "--count", "HEAD"])
        .current_dir(&repo)
        .env("CPUSLAB_STATS", "1");
    let count = common::run_with_limit(cmd, LIMIT);
    count.assert_success("git rev-list --count HEAD");
    assert_eq!(count.stdout.trim(), "10", "{count}");
    assert!(count.stderr.contains(mode.reported()), "{count}");
}

#[test]
fn git_commit_log_gc_fsck() {
    if !available("git") {
        return;
    }
    for mode in Mode::MAIN {
        git_repository(mode);
    }
}

#[test]
fn gcc_compiles_and_the_result_runs() {
    if !available("gcc") || !available("g++") {
        return;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    for mode in Mode::MAIN {
        let dir = common::fresh_dir(&format!("gcc-{mode:?}"));
        let binary = dir.join("api");
        let mut cmd = common::preloaded("gcc", mode);
        cmd.args(["-O2", "-fno-builtin", "-Wall", "-o"])
            .arg(&binary)
            .arg(source.join("api.c"));
        common::run_with_limit(cmd, LIMIT).assert_success(&format!("gcc ({mode:?})"));
        let outcome = common::run_checked(&binary, &[], mode, LIMIT);
        assert!(outcome.stdout.contains("checks passed"), "{outcome}");

        let mut cmd = common::preloaded("g++", mode);
        cmd.args(["-std=c++17", "-O1", "-pthread", "-o"])
            .arg(dir.join("churn_tls"))
            .arg(source.join("churn_tls.cpp"));
        common::run_with_limit(cmd, LIMIT).assert_success(&format!("g++ ({mode:?})"));
        let outcome = common::run_checked(&dir.join("churn_tls"), &["100"], mode, LIMIT);
        assert!(outcome.stdout.contains("100 threads"), "{outcome}");
    }
}
