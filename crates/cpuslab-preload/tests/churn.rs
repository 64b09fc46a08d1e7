//! Thread churn and teardown: thousands of short-lived threads that allocate
//! and free, blocks freed after their thread has exited, pthread_key and
//! C++ thread_local destructors that allocate, atexit handlers and static
//! destructors that allocate, and exit() while other threads still allocate
//! (tests/c/churn.c, tests/c/churn_tls.cpp).

mod common;

use std::time::Duration;

use common::Mode;

#[test]
fn thread_churn_with_key_destructors_and_exit_while_allocating() {
    let binary = common::compile("churn.c", "churn", &[]);
    for mode in Mode::ALL {
        let outcome = common::run_checked(&binary, &["4000"], mode, Duration::from_secs(60));
        assert!(outcome.stdout.contains("key destructor runs"), "{outcome}");
        assert!(outcome.stdout.contains("atexit handlers ran"), "{outcome}");
    }
}

#[test]
fn thread_churn_with_cxx_thread_local_destructors() {
    let binary = common::compile("churn_tls.cpp", "churn_tls", &[]);
    for mode in Mode::ALL {
        let outcome = common::run_checked(&binary, &["3000"], mode, Duration::from_secs(60));
        assert!(
            outcome
                .stdout
                .contains("3000 threads, 3000 thread_local destructors"),
            "{outcome}"
        );
    }
}
