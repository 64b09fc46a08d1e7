#!/usr/bin/env bash
# Every test: the workspace suite (whose stress tests re-run themselves in each
# rseq mode), then rseq-core alone, without the `shared-object` feature that the
# preload library turns on for the whole workspace build (so own mode's inline
# first attempt runs too), with its single-threaded operation tests in the two
# other modes of the whole process (own registration, no rseq).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace
echo "== operation counters (the op-counters feature)"
cargo test -p cpuslab --features op-counters --test stats_json --test alloc_stress
echo "== a program outside the workspace that depends on cpuslab by path"
cargo run --quiet --manifest-path scripts/external-program/Cargo.toml \
    --target-dir target/external-program
echo "== rseq-core alone, as a Rust program links it (no shared-object feature)"
cargo test -p rseq-core --test ops --test stress
echo "== rseq-core operations with our own registration (GLIBC_TUNABLES=glibc.pthread.rseq=0)"
GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo test -p rseq-core --test ops --test elf_tables
echo "== rseq-core operations without rseq (RSEQ_CORE_TEST_NO_RSEQ: the tests call rseq_core::disable_rseq)"
RSEQ_CORE_TEST_NO_RSEQ=1 GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo test -p rseq-core --test ops --test elf_tables
