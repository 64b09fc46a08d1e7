//! C++ under the library (tests/c/new_delete.cpp): standard containers and
//! shared_ptr in heavy use from several threads, every form of operator
//! new/delete (sized, aligned, nothrow, arrays, alignas(256) and alignas(4096)
//! types), std::bad_alloc on impossible sizes. The checksum must match the same
//! program run with glibc's malloc.

mod common;

use std::time::Duration;

use common::Mode;

#[test]
fn containers_and_every_operator_new_and_delete() {
    let binary = common::compile("new_delete.cpp", "new_delete", &[]);
    let reference = common::run_with_limit(
        {
            let mut cmd = common::plain(&binary);
            cmd.arg("3");
            cmd
        },
        Duration::from_secs(60),
    );
    reference.assert_success("new_delete with glibc malloc");
    assert!(reference.stdout.contains("checksum"), "{reference}");
    for mode in Mode::ALL {
        let outcome = common::run_checked(&binary, &["3"], mode, Duration::from_secs(60));
        assert_eq!(
            outcome.stdout, reference.stdout,
            "checksum under libcpuslab.so ({mode:?}) differs from glibc's"
        );
    }
}
