//! Invalid and double frees (tests/c/bad_free.c), each in its own process, in
//! the two main rseq modes.
//!
//! Invalid pointers (stack, interior of a small or large block, static data,
//! an mmap'ed page, a wild address, a block from glibc's own malloc; free and
//! realloc): the library prints one line naming the pointer and aborts.
//!
//! Double frees, what really happens:
//! - a large block: its mapping is gone after the first free, so the second is
//!   an invalid pointer: reported, abort;
//! - a small block whose first free has reached the spans (caches drained in
//!   between), or whose two copies both reach the spans: the span's bitmap says
//!   it is already free; the second copy is ignored (counted), later
//!   allocations are distinct;
//! - a small block freed twice in a row into the same per-CPU cache: the push
//!   finds it is the cache's top item already: reported, abort;
//! - a small block freed twice with other frees of its class in between: NOT
//!   detected (the fast path is one restartable push with no per-object
//!   metadata); the cache holds the pointer twice and two mallocs of that class
//!   return the same block. This is the documented price of the per-CPU fast
//!   path, asserted here so that a change in it is noticed;
//! - a large block freed again after its address was reused: frees the new
//!   owner's block (no allocator can tell); the heap stays consistent.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Mode, Outcome};

const SIGABRT: i32 = 6;

fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::compile("bad_free.c", "bad_free", &["-ldl"]))
}

fn run_case(case: &str, mode: Mode) -> Outcome {
    let mut cmd = common::preloaded(binary(), mode);
    cmd.arg(case);
    common::run_with_limit(cmd, Duration::from_secs(30))
}

/// The pointer the program announced ("pointer 0x...").
fn announced(outcome: &Outcome) -> usize {
    let text = outcome
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("pointer 0x"))
        .unwrap_or_else(|| panic!("no pointer announced: {outcome}"));
    usize::from_str_radix(text.trim(), 16).expect("hex pointer")
}

/// Asserts the process aborted after printing exactly one line that names
/// the announced pointer and the function it was passed to.
fn assert_reported(case: &str, mode: Mode, function: &str) {
    assert_reported_as(case, mode, function, "invalid pointer");
}

/// As [`assert_reported`], with the problem the line names.
fn assert_reported_as(case: &str, mode: Mode, function: &str, problem: &str) {
    let outcome = run_case(case, mode);
    let pointer = announced(&outcome);
    assert_eq!(
        outcome.signal(),
        Some(SIGABRT),
        "{case} ({mode:?}): expected SIGABRT: {outcome}"
    );
    let expected = format!("cpuslab: {function}(): {problem} 0x{pointer:016x}");
    let lines: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("cpuslab:"))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with(&expected),
        "{case} ({mode:?}): expected one line \"{expected} ...\": {outcome}"
    );
    assert!(
        !outcome.stdout.contains("returned"),
        "{case} ({mode:?}): {function} returned: {outcome}"
    );
}

#[test]
fn free_of_pointers_never_allocated_is_reported_and_aborts() {
    for mode in Mode::MAIN {
        for case in [
            "stack",
            "interior",
            "interior-large",
            "static",
            "mmap",
            "wild",
            "glibc",
        ] {
            assert_reported(case, mode, "free");
        }
    }
}

#[test]
fn realloc_of_pointers_never_allocated_is_reported_and_aborts() {
    for mode in Mode::MAIN {
        for case in ["realloc-stack", "realloc-interior"] {
            assert_reported(case, mode, "realloc");
        }
    }
}

#[test]
fn double_free_of_a_large_block_is_reported_and_aborts() {
    for mode in Mode::MAIN {
        assert_reported("double-large", mode, "free");
    }
}

#[test]
fn double_free_reaching_the_spans_is_ignored() {
    for mode in Mode::MAIN {
        let case = "double-small-drained";
        let outcome = run_case(case, mode);
        outcome.assert_success(&format!("{case} ({mode:?})"));
        assert!(
            outcome.stdout.contains("distinct: 4096 allocations"),
            "{case} ({mode:?}): {outcome}"
        );
    }
}

#[test]
fn double_free_after_reuse_keeps_the_heap_consistent() {
    for mode in Mode::MAIN {
        let outcome = run_case("double-large-reused", mode);
        outcome.assert_success(&format!("double-large-reused ({mode:?})"));
        assert!(outcome.stdout.contains("distinct"), "({mode:?}): {outcome}");
    }
}

#[test]
fn double_free_in_a_row_is_reported_and_aborts() {
    for mode in Mode::MAIN {
        for case in ["double-small", "double-small-kept"] {
            assert_reported_as(case, mode, "free", "double free of");
        }
    }
}

#[test]
fn interleaved_double_free_in_the_cpu_cache_is_not_detected() {
    // KNOWN LIMITATION: the same small block pushed twice on a CPU's stack, with
    // other frees in between, is handed out twice. If the library starts to detect
    // this (abort with a line, or distinct blocks), change this expectation and the
    // module doc.
    for mode in Mode::MAIN {
        let outcome = run_case("double-small-interleaved", mode);
        outcome.assert_success(&format!("double-small-interleaved ({mode:?})"));
        let pointer = announced(&outcome);
        let expected = format!("DUPLICATE: malloc(48) returned {pointer:#x} twice");
        assert!(
            outcome.stdout.contains(&expected),
            "double-small-interleaved ({mode:?}): behaviour changed (expected \"{expected}\"): {outcome}"
        );
    }
}
