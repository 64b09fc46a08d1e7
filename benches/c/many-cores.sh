#!/usr/bin/env bash
# The multi-thread benchmarks on a machine with many cores, for the scaling
# figures of docs/benchmarks-preload.md. Such a machine may be lent for minutes
# only, and may have neither compilers nor package sources, so the work is in
# three steps:
#
#   here   benches/c/many-cores.sh prepare [DIR]
#            builds and gathers everything into DIR (default target/many-cores,
#            a few MiB): benches/c/run.sh --prepare (the C programs, GNU time,
#            libcpuslab.so and the peers' libraries), and the Rust comparison
#            binary (cpuslab-bench, which needs libstdc++ there: snmalloc's C++
#            is linked in)
#   there  benches/c/many-cores.sh run [DIR] OUT [--threads LIST] [--reps N]
#            the C programs at each thread count of LIST (default 1,4,16,64),
#            N repetitions (default 2), into OUT/preload; then the Rust
#            comparison's --quick run (its thread counts follow the machine's
#            CPUs), into OUT/rust. Both write as they go: a run cut short
#            leaves what it measured. About 5 minutes on 16 cores.
#   here   benches/c/many-cores.sh plot OUT
#            the tables and plots of OUT/preload/preload.csv (time by thread
#            count: preload-scaling.svg) into OUT/plots
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
log() { echo "many-cores.sh: $*" >&2; }

step="${1:-}"
[ $# -gt 0 ] && shift
case "$step" in
  prepare)
    dir="$(absolute "${1:-$root/target/many-cores}")"
    target="${CARGO_TARGET_DIR:-target}"
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    rm -rf "$dir/c" "$dir/cpuslab-bench" # only what an earlier prepare put there
    bash "$root/benches/c/run.sh" --prepare "$dir/c"
    (cd "$root" && cargo build --release -p cpuslab-bench)
    cp "$target/release/cpuslab-bench" "$dir/"
    log "prepared $dir ($(du -sh "$dir" | cut -f1)); there: benches/c/many-cores.sh run $dir OUT"
    ;;
  run)
    dir="$root/target/many-cores"
    if [ $# -ge 2 ] && [ "${2#--}" = "$2" ]; then dir="$(absolute "$1")"; shift; fi
    [ $# -ge 1 ] || { usage; exit 2; }
    out="$(absolute "$1")"
    shift
    threads="1,4,16,64"
    reps=2
    while [ $# -gt 0 ]; do
      case "$1" in
        --threads) threads="$2"; shift ;;
        --reps) reps="$2"; shift ;;
        *) echo "many-cores.sh: unknown argument $1" >&2; exit 2 ;;
      esac
      shift
    done
    [ -x "$dir/cpuslab-bench" ] || { echo "many-cores.sh: $dir is not prepared (many-cores.sh prepare)" >&2; exit 1; }
    mkdir -p "$out"
    { nproc; lscpu 2>/dev/null || true; uname -a; ldd --version 2>&1 | sed -n 1p; } > "$out/machine.txt"
    status=0
    bash "$root/benches/c/run.sh" --prebuilt "$dir/c" --threads "$threads" --reps "$reps" \
      --out "$out/preload" > "$out/preload.log" 2>&1 || status=1
    tail -n 40 "$out/preload.log"
    (cd "$root" && "$dir/cpuslab-bench" --quick --no-preload --no-timeline --out "$out/rust") \
      > "$out/rust.log" 2>&1 || status=1
    tail -n 40 "$out/rust.log"
    exit "$status"
    ;;
  plot)
    [ $# -ge 1 ] || { usage; exit 2; }
    out="$(absolute "$1")"
    csv="$out/preload/preload.csv"
    [ -f "$csv" ] || { echo "many-cores.sh: $csv is missing" >&2; exit 1; }
    # The report needs one workload of its own: the smallest, cpuslab alone.
    (cd "$root" && cargo run --release -q -p cpuslab-bench -- --preload-csv "$csv" \
      --workloads pair-16B --allocators cpuslab --reps 1 --scale 0.05 --no-timeline \
      --out "$out/plots")
    ;;
  -h|--help) usage ;;
  *) usage; exit 2 ;;
esac
