//! libcpuslab.so loaded with `dlopen` after start-up instead of preloaded
//! (tests/c/dlopen.c): its own-mode rseq area (initial-exec TLS) fits glibc's
//! static TLS surplus, and its functions work from the main thread and from
//! threads started later, in each rseq mode.

mod common;

use std::time::Duration;

use common::Mode;

#[test]
fn the_library_works_when_dlopened() {
    let binary = common::compile("dlopen.c", "dlopen", &["-ldl", "-pthread"]);
    for mode in Mode::ALL {
        let mut cmd = common::plain(&binary);
        mode.apply(&mut cmd);
        cmd.arg(common::library());
        let outcome = common::run_with_limit(cmd, Duration::from_secs(30));
        outcome.assert_success(&format!("dlopen ({mode:?})"));
        assert!(outcome.stdout.contains("dlopen checks passed"), "{outcome}");
    }
}
