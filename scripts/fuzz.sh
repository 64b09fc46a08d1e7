#!/usr/bin/env bash
# Runs the allocator fuzz target for N seconds (default 60) with cargo-fuzz on the
# nightly toolchain; skips (successfully) where no nightly toolchain is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "no nightly toolchain: fuzzing skipped"
  exit 0
fi
if [ ! -d fuzz/fuzz_targets ]; then
  echo "no fuzz targets yet: fuzzing skipped"
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo +nightly install --locked cargo-fuzz
cd fuzz
for target in $(cargo +nightly fuzz list); do
  echo "== fuzz $target for ${seconds}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
