#!/usr/bin/env bash
# Every test: the workspace suite (whose stress tests re-run themselves in each
# rseq mode), then the single-threaded operation tests of rseq-core in the two
# other modes of the whole process (own registration, no rseq).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace
echo "== rseq-core operations with our own registration (GLIBC_TUNABLES=glibc.pthread.rseq=0)"
GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo test -p rseq-core --test ops --test elf_tables
echo "== rseq-core operations without rseq (CPUSLAB_RSEQ=0)"
CPUSLAB_RSEQ=0 GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo test -p rseq-core --test ops --test elf_tables
