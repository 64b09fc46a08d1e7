#!/usr/bin/env bash
# Regenerates crates/rseq-sys/src/generated.rs from crates/rseq-sys/abi/rseq.h
# with bindgen (crates/rseq-sys/codegen, a standalone package).
#
#   ./crates/rseq-sys/regenerate.sh           rewrite src/generated.rs
#   ./crates/rseq-sys/regenerate.sh --check   fail if src/generated.rs is stale
#
# Works from any directory. Installs libclang-dev with apt-get if it is missing.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "$script_dir/../.." && pwd)"
cd "$repo_root"

crate=crates/rseq-sys
committed="$crate/src/generated.rs"

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

have_libclang() {
    if [[ -n "${LIBCLANG_PATH:-}" ]] && compgen -G "$LIBCLANG_PATH/libclang*.so*" >/dev/null; then
        return 0
    fi
    # libclang itself, not libclang-cpp (which some images ship alone).
    if command -v ldconfig >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so'; then
        return 0
    fi
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}

if ! have_libclang; then
    echo "regenerate.sh: libclang not found; installing libclang-dev" >&2
    if [[ "$(id -u)" -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "regenerate.sh: libclang missing, not root and no sudo: install libclang-dev" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y libclang-dev
fi

run_codegen() {
    cargo run --quiet --release --locked --manifest-path "$crate/codegen/Cargo.toml" -- "$1"
}

if [[ "$check" -eq 0 ]]; then
    run_codegen "$repo_root/$committed"
    exit 0
fi

tmp="$(mktemp "${TMPDIR:-/tmp}/rseq-sys-generated.XXXXXX.rs")"
trap 'rm -f -- "$tmp"' EXIT
run_codegen "$tmp"
if ! diff -u --label "$committed (committed)" --label "$committed (regenerated)" "$committed" "$tmp"; then
    echo "regenerate.sh --check: $committed is stale; run ./crates/rseq-sys/regenerate.sh and commit the result" >&2
    exit 1
fi
echo "regenerate.sh --check: $committed is up to date" >&2
