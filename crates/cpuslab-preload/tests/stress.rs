//! Multi-threaded random allocation with content checks and cross-thread frees
//! (tests/c/stress.c): 6 x CPUs threads, mixed sizes and alignments, blocks
//! handed between threads through a locked queue. Run in every rseq mode:
//! glibc's area, our own registration, and no rseq.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::Mode;

/// Seconds each run lasts.
const SECONDS: &str = "2";

fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::compile("stress.c", "stress", &[]))
}

fn stress(mode: Mode) {
    let outcome = common::run_checked(binary(), &[SECONDS], mode, Duration::from_secs(60));
    assert!(outcome.stdout.contains("operations"), "{outcome}");
}

#[test]
fn stress_with_glibc_rseq() {
    stress(Mode::Glibc);
}

#[test]
fn stress_with_own_rseq_registration() {
    stress(Mode::Own);
}

#[test]
fn stress_without_rseq() {
    stress(Mode::Fallback);
}
