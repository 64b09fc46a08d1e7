//! Every exported function and its edge cases (tests/c/api.c), in each rseq
//! mode: malloc(0), impossible sizes, calloc/reallocarray overflow, realloc's
//! cases, every aligned allocator with good and bad alignments, usable sizes,
//! free_sized, the `__libc_*` names, malloc_trim, mallinfo/mallinfo2,
//! malloc_stats, malloc_info, mallopt.

mod common;

use std::time::Duration;

use common::Mode;

#[test]
fn every_function_and_its_edge_cases() {
    let binary = common::compile("api.c", "api", &[]);
    for mode in Mode::ALL {
        let outcome = common::run_checked(&binary, &[], mode, Duration::from_secs(30));
        assert!(outcome.stdout.contains("checks passed"), "{outcome}");
    }
}

#[test]
fn the_program_fails_without_the_library() {
    // The check that the library is loaded works: without it, api.c stops at
    // its first check.
    let binary = common::compile("api.c", "api-plain", &[]);
    let outcome = common::run_with_limit(common::plain(&binary), Duration::from_secs(30));
    assert!(!outcome.success(), "{outcome}");
    assert!(outcome.stderr.contains("not preloaded"), "{outcome}");
}
