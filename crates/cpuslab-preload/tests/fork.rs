//! fork() while other threads allocate (tests/c/fork.c): 200 forks from the
//! main thread plus some from workers and grandchildren; every child allocates
//! and frees at once, from two threads. A deadlocked child is killed by its
//! alarm() and reported; a deadlocked parent hits the time limit here.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::Mode;

fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::compile("fork.c", "fork", &[]))
}

fn fork_while_allocating(mode: Mode) {
    let outcome = common::run_checked(binary(), &["200", "4"], mode, Duration::from_secs(60));
    assert!(
        outcome.stdout.contains("all children finished"),
        "{outcome}"
    );
}

#[test]
fn fork_while_allocating_with_glibc_rseq() {
    fork_while_allocating(Mode::Glibc);
}

#[test]
fn fork_while_allocating_with_own_rseq_registration() {
    fork_while_allocating(Mode::Own);
}

#[test]
fn fork_while_allocating_without_rseq() {
    fork_while_allocating(Mode::Fallback);
}
