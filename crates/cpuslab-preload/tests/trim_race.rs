//! `malloc_trim(0)` in a loop while threads allocate and free owner-tagged
//! blocks (tests/c/trim_race.c): the remote drain of every CPU's cache must
//! never hand a block to two owners. Run in every rseq mode: glibc's area, our
//! own registration, and no rseq. (The race is forced deterministically in
//! cpuslab's own `alloc_trim_race` test, whose build injects delays; this one
//! runs the shipped library as a C program sees it.)

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::Mode;

/// Seconds each run lasts.
const SECONDS: &str = "2";

fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::compile("trim_race.c", "trim_race", &[]))
}

fn trim_race(mode: Mode) {
    let outcome = common::run_checked(binary(), &[SECONDS], mode, Duration::from_secs(60));
    assert!(outcome.stdout.contains("no broken tag"), "{outcome}");
}

#[test]
fn malloc_trim_races_allocation_with_glibc_rseq() {
    trim_race(Mode::Glibc);
}

#[test]
fn malloc_trim_races_allocation_with_own_rseq_registration() {
    trim_race(Mode::Own);
}

#[test]
fn malloc_trim_races_allocation_without_rseq() {
    trim_race(Mode::Fallback);
}
