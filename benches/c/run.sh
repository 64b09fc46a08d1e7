#!/usr/bin/env bash
# Whole-program C allocation benchmarks under each allocator, by LD_PRELOAD:
# cpuslab (target/release/libcpuslab.so), glibc (no preload), and jemalloc,
# mimalloc, tcmalloc from Debian packages (libjemalloc2, libmimalloc2.0,
# libtcmalloc-minimal4).
#
# Every (benchmark, allocator) pair runs once per repetition, repetition-major
# (rep 1 of everything, then rep 2, ...), with the allocator order rotated from
# one benchmark and repetition to the next, so that drift on the machine (other
# load, frequency, page cache) spreads over all allocators. Wall time and peak
# RSS come from /usr/bin/time -f "%e %M" around the program.
#
# usage: benches/c/run.sh [--quick] [--reps N] [--out DIR]
#   --quick   smaller sizes and 1 repetition (under a minute)
#   --reps N  repetitions (default 3; --quick: 1)
#   --out DIR where preload.csv, preload.md and the binaries go (default results/)
#
# Writes DIR/preload.csv (benchmark,allocator,rep,seconds,max_rss_kib) and
# DIR/preload.md (medians, ratios to cpuslab, the best peer per case).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

quick=0
reps=""
out="results"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --reps) reps="$2"; shift ;;
    --reps=*) reps="${1#--reps=}" ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$reps" ]; then
  if [ "$quick" = 1 ]; then reps=1; else reps=3; fi
fi
case "$reps" in ''|*[!0-9]*|0) echo "run.sh: --reps needs a positive number" >&2; exit 2 ;; esac

log() { echo "run.sh: $*"; }

# --- Debian packages: the peers and GNU time -------------------------------
multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
[ -n "$multiarch" ] || multiarch="x86_64-linux-gnu"
libdir="/usr/lib/$multiarch"

# Finds a shared library by its soname: the multiarch directory first, then
# the loader cache.
find_lib() {
  if [ -e "$libdir/$1" ]; then
    echo "$libdir/$1"
    return
  fi
  ldconfig -p 2>/dev/null | awk -v name="$1" '$1 == name { print $NF; exit }'
}

need=()
[ -n "$(find_lib libjemalloc.so.2)" ] || need+=(libjemalloc2)
[ -n "$(find_lib libmimalloc.so.2.0)$(find_lib libmimalloc.so.2)" ] || need+=(libmimalloc2.0)
[ -n "$(find_lib libtcmalloc_minimal.so.4)" ] || need+=(libtcmalloc-minimal4)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

jemalloc="$(find_lib libjemalloc.so.2)"
mimalloc="$(find_lib libmimalloc.so.2.0)"
[ -n "$mimalloc" ] || mimalloc="$(find_lib libmimalloc.so.2)"
tcmalloc="$(find_lib libtcmalloc_minimal.so.4)"
for lib in "$jemalloc" "$mimalloc" "$tcmalloc"; do
  [ -n "$lib" ] && [ -e "$lib" ] || { echo "run.sh: a peer library is missing" >&2; exit 1; }
done

# --- Build -----------------------------------------------------------------
mkdir -p "$out/bin"
out="$(cd "$out" && pwd)"
benchmarks=(pairs batch threads prodcons server)
for b in "${benchmarks[@]}"; do
  gcc -O2 -pthread -Wall -Wextra -o "$out/bin/$b" "benches/c/$b.c"
done
log "building libcpuslab.so"
cargo build --release -p cpuslab-preload >&2
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
cpuslab="$target/release/libcpuslab.so"
[ -e "$cpuslab" ] || { echo "run.sh: $cpuslab was not built" >&2; exit 1; }

allocators=(cpuslab glibc jemalloc mimalloc tcmalloc)
preload_of() {
  case "$1" in
    cpuslab) echo "$cpuslab" ;;
    glibc) echo "" ;;
    jemalloc) echo "$jemalloc" ;;
    mimalloc) echo "$mimalloc" ;;
    tcmalloc) echo "$tcmalloc" ;;
  esac
}

# Arguments per benchmark (see each program's usage line).
args_of() {
  if [ "$quick" = 1 ]; then
    case "$1" in
      pairs) echo "10" ;;
      batch) echo "10" ;;
      threads) echo "4" ;;
      prodcons) echo "6" ;;
      server) echo "60" ;;
    esac
  else
    case "$1" in
      pairs) echo "100" ;;
      batch) echo "100" ;;
      threads) echo "40" ;;
      prodcons) echo "60" ;;
      server) echo "600" ;;
    esac
  fi
}

# --- Run -------------------------------------------------------------------
# One untimed run of the largest working set first: on a virtual machine the
# first touch of guest memory is slow, and that should not land on whichever
# allocator happens to run first.
log "warm-up: server with glibc (not recorded)"
"$out/bin/server" "$(args_of server)" > /dev/null

csv="$out/preload.csv"
echo "benchmark,allocator,rep,seconds,max_rss_kib" > "$csv"
timing="$(mktemp)"
output="$(mktemp)"
trap 'rm -f "$timing" "$output"' EXIT
failures=0
n=${#allocators[@]}
turn=0
for rep in $(seq 1 "$reps"); do
  for b in "${benchmarks[@]}"; do
    for i in $(seq 0 $((n - 1))); do
      a="${allocators[$(((i + turn) % n))]}"
      preload="$(preload_of "$a")"
      # shellcheck disable=SC2046 # the arguments are words on purpose
      if /usr/bin/time -f "%e %M" -o "$timing" \
          env LD_PRELOAD="$preload" "$out/bin/$b" $(args_of "$b") > "$output" 2>&1; then
        read -r seconds rss < <(tail -n 1 "$timing")
        echo "$b,$a,$rep,$seconds,$rss" >> "$csv"
        log "rep $rep $b $a: ${seconds} s, ${rss} KiB: $(tail -n 1 "$output")"
      else
        failures=$((failures + 1))
        echo "$b,$a,$rep,fail,fail" >> "$csv"
        log "rep $rep $b $a: FAILED: $(tail -n 3 "$output" | tr '\n' ' ')"
      fi
    done
    turn=$((turn + 1))
  done
done

# --- Summary ---------------------------------------------------------------
{
  echo "# Whole-program allocation benchmarks under LD_PRELOAD"
  echo
  echo "Generated by \`benches/c/run.sh$([ "$quick" = 1 ] && echo " --quick") --reps $reps\` on $(date -u +%Y-%m-%d)."
  echo "Machine: $(lscpu 2>/dev/null | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }'),"
  echo "$(nproc) CPUs, Linux $(uname -r), $(ldd --version 2>/dev/null | head -n 1 | sed 's/^ldd //')."
  echo "Peers: $(basename "$jemalloc") ($(dpkg-query -W -f '${Version}' libjemalloc2 2>/dev/null || echo '?')),"
  echo "$(basename "$mimalloc") ($(dpkg-query -W -f '${Version}' libmimalloc2.0 2>/dev/null || echo '?')),"
  echo "$(basename "$tcmalloc") ($(dpkg-query -W -f '${Version}' libtcmalloc-minimal4 2>/dev/null || echo '?'));"
  echo "glibc malloc without preload. Medians of $reps repetition(s); ratios are peer / cpuslab"
  echo "(above 1.00: cpuslab is faster or smaller)."
  echo
  awk -F, -v order="${allocators[*]}" '
    function median(list,    v, k, i, j, t, c) {
      c = split(list, v, " ")
      if (c == 0) return ""
      for (i = 2; i <= c; i++) {
        t = v[i] + 0
        for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]
        v[j + 1] = t
      }
      if (c % 2) return v[(c + 1) / 2] + 0
      return (v[c / 2] + v[c / 2 + 1]) / 2
    }
    function pct(x, y) { return sprintf("%.0f%%", (x / y - 1) * 100) }
    NR == 1 { next }
    {
      if (!($1 in seen)) { seen[$1] = 1; benches[++nb] = $1 }
      if ($4 != "fail") { secs[$1, $2] = secs[$1, $2] " " $4; rss[$1, $2] = rss[$1, $2] " " $5 }
    }
    END {
      na = split(order, allocs, " ")
      print "| benchmark | allocator | time (s) | time / cpuslab | peak RSS (MiB) | RSS / cpuslab |"
      print "|---|---|---:|---:|---:|---:|"
      for (i = 1; i <= nb; i++) {
        b = benches[i]
        for (j = 1; j <= na; j++) {
          a = allocs[j]
          ms[b, a] = median(secs[b, a]); mr[b, a] = median(rss[b, a])
        }
        cs = ms[b, "cpuslab"]; cr = mr[b, "cpuslab"]
        for (j = 1; j <= na; j++) {
          a = allocs[j]
          if (ms[b, a] == "") { printf "| %s | %s | failed | | | |\n", b, a; continue }
          printf "| %s | %s | %.3f | %s | %.1f | %s |\n", b, a, ms[b, a],
            (cs > 0 ? sprintf("%.2f", ms[b, a] / cs) : "-"), mr[b, a] / 1024,
            (cr > 0 ? sprintf("%.2f", mr[b, a] / cr) : "-")
        }
      }
      print ""
      print "| benchmark | fastest peer | cpuslab time | lowest-RSS peer | cpuslab peak RSS |"
      print "|---|---|---|---|---|"
      for (i = 1; i <= nb; i++) {
        b = benches[i]; bt = ""; br = ""
        for (j = 1; j <= na; j++) {
          a = allocs[j]
          if (a == "cpuslab" || ms[b, a] == "") continue
          if (bt == "" || ms[b, a] < ms[b, bt]) bt = a
          if (br == "" || mr[b, a] < mr[b, br]) br = a
        }
        cs = ms[b, "cpuslab"]; cr = mr[b, "cpuslab"]
        if (cs == "" || bt == "") { printf "| %s | %s | failed | %s | failed |\n", b, bt, br; continue }
        tv = (cs <= ms[b, bt]) ? sprintf("fastest (%s takes %s more)", bt, pct(ms[b, bt], cs)) \
                               : sprintf("**+%s time** vs %s", pct(cs, ms[b, bt]), bt)
        rv = (cr <= mr[b, br]) ? sprintf("lowest (%s uses %s more)", br, pct(mr[b, br], cr)) \
                               : sprintf("**+%s RSS** vs %s", pct(cr, mr[b, br]), br)
        printf "| %s | %s %.3f s | %.3f s: %s | %s %.1f MiB | %.1f MiB: %s |\n", b, bt, ms[b, bt],
          cs, tv, br, mr[b, br] / 1024, cr / 1024, rv
      }
    }
  ' "$csv"
} > "$out/preload.md"

log "wrote $csv and $out/preload.md"
cat "$out/preload.md"
if [ "$failures" -gt 0 ]; then
  log "$failures run(s) failed"
  exit 1
fi
