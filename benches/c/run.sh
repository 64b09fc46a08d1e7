#!/usr/bin/env bash
# Whole-program C allocation benchmarks under each allocator, by LD_PRELOAD:
# cpuslab (target/release/libcpuslab.so), glibc (no preload), jemalloc,
# mimalloc2 (mimalloc 2.0) and tcmalloc from Debian packages (libjemalloc2,
# libmimalloc2.0, libtcmalloc-minimal4), and mimalloc3 (mimalloc 3) and snmalloc
# built by benches/c/peers.sh from the sources inside the libmimalloc-sys and
# snmalloc-sys crates (cmake, or gcc/g++ directly; once, kept in target/peers/).
# A peer that cannot be installed or built is left out, with a message on
# stderr; the others still run.
#
# The cases: every multi-threaded program (pairs, threads, prodcons, server,
# larson, xmalloc, mixed, scratch) at each thread count of --threads, as <program>-<n>t
# (the same total work at every count: the threads split it), and the
# single-threaded batch, teardown, large and fork. prodcons and xmalloc pair their threads (half
# allocate, half free), so they run at the even counts only.
#
# Every (case, allocator) pair runs once per repetition, repetition-major (rep 1
# of everything, then rep 2, ...), with the allocator order rotated from one
# case and repetition to the next, so that drift on the machine (other load,
# frequency, page cache) spreads over all allocators. Wall time and peak RSS
# come from GNU time (/usr/bin/time -f "%e %M") around the program.
#
# usage: benches/c/run.sh [--quick] [--reps N] [--threads LIST] [--lib FILE] [--peers LIST]
#                         [--out DIR] [--prepare DIR | --prebuilt DIR]
#   --quick         a tenth of the work and 1 repetition (about half a minute)
#   --reps N        repetitions (default 3; --quick: 1)
#   --threads LIST  thread counts, comma-separated (default 1,2,4,8,16)
#   --lib FILE      use this libcpuslab.so instead of building one (cargo build
#                   --release -p cpuslab-preload)
#   --peers LIST    the peers, comma-separated, of glibc, jemalloc, mimalloc2,
#                   mimalloc3, snmalloc, tcmalloc (default: all)
#   --out DIR       where preload.csv, preload.md and the binaries go (default results/)
#   --prepare DIR   find or build everything as for a run, copy it into DIR (the
#                   programs and GNU time in DIR/bin, DIR/libcpuslab.so, the peers
#                   in DIR/peers), and stop: a folder to take to another machine
#   --prebuilt DIR  run with what --prepare put in DIR: nothing is installed or
#                   built, for a machine without compilers or package sources (a
#                   peer that does not load there is left out)
#
# Writes DIR/preload.csv (benchmark,allocator,rep,seconds,max_rss_kib; the
# benchmark column names the case) and DIR/preload.md (medians, ratios to
# cpuslab, the best peer per case, time by thread count).
set -euo pipefail

caller="$PWD"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

quick=0
reps=""
out="results"
thread_counts="1,2,4,8,16"
lib=""
prebuilt=""
prepare=""
peer_list="glibc,jemalloc,mimalloc2,mimalloc3,snmalloc,tcmalloc"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --reps) reps="$2"; shift ;;
    --reps=*) reps="${1#--reps=}" ;;
    --threads) thread_counts="$2"; shift ;;
    --threads=*) thread_counts="${1#--threads=}" ;;
    --lib) lib="$2"; shift ;;
    --lib=*) lib="${1#--lib=}" ;;
    --peers) peer_list="$2"; shift ;;
    --peers=*) peer_list="${1#--peers=}" ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --prebuilt) prebuilt="$2"; shift ;;
    --prebuilt=*) prebuilt="${1#--prebuilt=}" ;;
    --prepare) prepare="$2"; shift ;;
    --prepare=*) prepare="${1#--prepare=}" ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$reps" ]; then
  if [ "$quick" = 1 ]; then reps=1; else reps=3; fi
fi
case "$reps" in ''|*[!0-9]*|0) echo "run.sh: --reps needs a positive number" >&2; exit 2 ;; esac
IFS=, read -r -a counts <<< "$thread_counts"
[ ${#counts[@]} -gt 0 ] || { echo "run.sh: --threads needs a list of counts" >&2; exit 2; }
for i in "${!counts[@]}"; do
  n="${counts[$i]}"
  case "$n" in ''|*[!0-9]*) echo "run.sh: --threads: '$n' is not a number" >&2; exit 2 ;; esac
  counts[i]=$((10#$n)) # 08 is 8, not an octal error
  [ "${counts[$i]}" -gt 0 ] || { echo "run.sh: --threads: counts start at 1" >&2; exit 2; }
done
IFS=, read -r -a peers <<< "$peer_list"
for p in "${peers[@]}"; do
  case "$p" in
    glibc|jemalloc|mimalloc2|mimalloc3|snmalloc|tcmalloc) ;;
    *) echo "run.sh: --peers: unknown peer '$p'" >&2; exit 2 ;;
  esac
done
wanted() { case ",$peer_list," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if [ -n "$prebuilt" ]; then
  case "$prebuilt" in /*) ;; *) prebuilt="$caller/$prebuilt" ;; esac
  [ -d "$prebuilt/bin" ] || { echo "run.sh: --prebuilt $prebuilt has no bin/ (run.sh --prepare makes one)" >&2; exit 1; }
fi

log() { echo "run.sh: $*"; }

# --- The peers, and GNU time -------------------------------------------------
# The allocators in the order of the tables: cpuslab, then each peer that is
# there. preload[<name>] is its library (empty for glibc), about[<name>] what
# the summary says of it.
allocators=(cpuslab)
declare -A preload about
add_peer() { allocators+=("$1"); preload[$1]="$2"; about[$1]="$3"; }
skip_peer() { echo "run.sh: going on without $1: $2" >&2; }
gnu_time=/usr/bin/time
# Whether a library preloads here: a program runs with it, and the loader
# says nothing (it only warns when a preload cannot be opened, and the
# program runs without it).
loads() {
  local said
  said="$(LD_PRELOAD="$1" "$prebuilt/bin/pairs" 1 1 2>&1 > /dev/null)" || return 1
  case "$said" in *ld.so*) return 1 ;; esac
}
if [ -n "$prebuilt" ]; then
  # DIR/peers/<name>.so and <name>.about, in the order of the tables; a peer
  # that does not load here (a library it needs is missing) is left out.
  [ -x "$gnu_time" ] || gnu_time="$prebuilt/bin/time"
  wanted glibc && add_peer glibc "" "glibc malloc without preload"
  for name in jemalloc mimalloc2 mimalloc3 snmalloc tcmalloc; do
    wanted "$name" || continue
    so="$prebuilt/peers/$name.so"
    if [ ! -e "$so" ]; then
      skip_peer "$name" "$so is missing"
    elif ! loads "$so"; then
      skip_peer "$name" "$so does not load here"
    else
      add_peer "$name" "$so" "$(cat "$prebuilt/peers/$name.about" 2>/dev/null || echo "$name.so")"
    fi
  done
else
  # --- Debian packages: three peers and GNU time ------------------------------
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
  find_mimalloc2() {
    local found
    found="$(find_lib libmimalloc.so.2.0)"
    [ -n "$found" ] || found="$(find_lib libmimalloc.so.2)"
    echo "$found"
  }

  need=()
  wanted jemalloc && [ -z "$(find_lib libjemalloc.so.2)" ] && need+=(libjemalloc2)
  wanted mimalloc2 && [ -z "$(find_mimalloc2)" ] && need+=(libmimalloc2.0)
  wanted tcmalloc && [ -z "$(find_lib libtcmalloc_minimal.so.4)" ] && need+=(libtcmalloc-minimal4)
  [ -x /usr/bin/time ] || need+=(time)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${need[*]}"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"; } >&2 ||
      echo "run.sh: apt-get install ${need[*]} failed" >&2
  fi

  debian_peer() { # name, library, Debian package
    if [ -n "$2" ] && [ -e "$2" ]; then
      add_peer "$1" "$2" "$(basename "$2") ($3 $(dpkg-query -W -f '${Version}' "$3" 2>/dev/null || echo '?'))"
    else
      skip_peer "$1" "its library is missing (Debian package $3)"
    fi
  }
  wanted glibc && add_peer glibc "" "glibc malloc without preload"
  wanted jemalloc && debian_peer jemalloc "$(find_lib libjemalloc.so.2)" libjemalloc2
  wanted mimalloc2 && debian_peer mimalloc2 "$(find_mimalloc2)" libmimalloc2.0

  # --- Peers built from crate sources: mimalloc3 and snmalloc -----------------
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$root/$target" ;; esac
  built=()
  wanted mimalloc3 && built+=(mimalloc3)
  wanted snmalloc && built+=(snmalloc)
  if [ ${#built[@]} -gt 0 ]; then
    declare -A built_lib built_about
    # Progress and failures of peers.sh go to stderr; "name path description" lines come back.
    while read -r name path description; do
      built_lib[$name]="$path"
      built_about[$name]="$description"
    done < <(bash benches/c/peers.sh --dir "$target/peers" "${built[@]}" || true)
    for name in "${built[@]}"; do
      if [ -n "${built_lib[$name]:-}" ] && [ -e "${built_lib[$name]}" ]; then
        add_peer "$name" "${built_lib[$name]}" "$(basename "${built_lib[$name]}") (${built_about[$name]})"
      else
        skip_peer "$name" "benches/c/peers.sh could not build it (its messages are above)"
      fi
    done
  fi
  wanted tcmalloc && debian_peer tcmalloc "$(find_lib libtcmalloc_minimal.so.4)" libtcmalloc-minimal4
fi
[ ${#allocators[@]} -gt 1 ] || echo "run.sh: no peer: cpuslab runs alone" >&2
for a in "${allocators[@]:1}"; do log "peer $a: ${about[$a]}"; done

# --- Build -----------------------------------------------------------------
mkdir -p "$out"
out="$(cd "$out" && pwd)"
programs=(pairs batch teardown threads prodcons server larson xmalloc mixed scratch large fork)
if [ -n "$prebuilt" ]; then
  bin="$prebuilt/bin"
else
  bin="$out/bin"
  mkdir -p "$bin"
  for p in "${programs[@]}"; do
    # -fno-builtin: every malloc, free and memset in the source is a call (no
    # malloc + memset turned into calloc, no pair elided).
    gcc -O2 -pthread -fno-builtin -Wall -Wextra -o "$bin/$p" "benches/c/$p.c"
  done
fi
[ -x "$gnu_time" ] || { echo "run.sh: $gnu_time is missing (Debian package time)" >&2; exit 1; }
if [ -n "$prebuilt" ] && [ -z "$lib" ]; then
  cpuslab="$prebuilt/libcpuslab.so"
  loads "$cpuslab" || { echo "run.sh: $cpuslab is missing or does not load here" >&2; exit 1; }
  log "using $cpuslab"
elif [ -n "$lib" ]; then
  case "$lib" in /*) ;; *) lib="$caller/$lib" ;; esac
  [ -f "$lib" ] || { echo "run.sh: --lib $lib does not exist" >&2; exit 1; }
  cpuslab="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
  log "using $cpuslab"
else
  log "building libcpuslab.so"
  cargo build --release -p cpuslab-preload >&2
  cpuslab="$target/release/libcpuslab.so"
  [ -e "$cpuslab" ] || { echo "run.sh: $cpuslab was not built" >&2; exit 1; }
fi

preload[cpuslab]="$cpuslab"

if [ -n "$prepare" ]; then
  case "$prepare" in /*) ;; *) prepare="$caller/$prepare" ;; esac
  mkdir -p "$prepare/bin" "$prepare/peers"
  for p in "${programs[@]}"; do cp "$bin/$p" "$prepare/bin/"; done
  cp -L "$gnu_time" "$prepare/bin/time"
  cp -L "$cpuslab" "$prepare/libcpuslab.so"
  for a in "${allocators[@]:1}"; do
    [ -n "${preload[$a]}" ] || continue # glibc: nothing to take
    cp -L "${preload[$a]}" "$prepare/peers/$a.so"
    echo "${about[$a]}" > "$prepare/peers/$a.about"
  done
  log "prepared $prepare ($(du -sh "$prepare" | cut -f1)): benches/c/run.sh --prebuilt $prepare runs there"
  exit 0
fi

# The cases, in run order: <program>-<n>t per thread count for the
# multi-threaded programs, the bare program name for the single-threaded ones.
threaded() { for n in "${counts[@]}"; do echo "$1-${n}t"; done; }
paired() { for n in "${counts[@]}"; do [ $((n % 2)) -eq 0 ] && echo "$1-${n}t"; done; return 0; }
mapfile -t benchmarks < <(
  threaded pairs
  echo batch
  echo teardown
  threaded threads
  paired prodcons
  threaded server
  threaded larson
  paired xmalloc
  threaded mixed
  threaded scratch
  echo large
  echo fork
)
program_of() { case "$1" in *-[0-9]*t) echo "${1%-*}" ;; *) echo "$1" ;; esac; }
threads_of() { case "$1" in *-[0-9]*t) local n="${1##*-}"; echo "${n%t}" ;; *) echo 1 ;; esac; }

# The arguments of a case (each program's usage line says what they are). The
# total work is the same at every thread count; --quick does a tenth of it.
# Sized for about half a second per run under cpuslab on 2 CPUs, so that the
# full run (42 cases, 7 allocators, 3 repetitions) takes about 8 minutes.
#   pairs     millions of malloc+free pairs, threads
#   batch     rounds of 100 000 blocks
#   teardown  rounds, blocks per round
#   threads   millions of steps, threads
#   prodcons  millions of blocks, producer/consumer pairs
#   server    thousands of requests, threads
#   larson    threads, rounds in all, slots per thread, replacements per round
#   xmalloc   threads, thousands of blocks
#   mixed     threads, thousands of operations, live blocks per thread
#   scratch   threads, rounds in all, writes per round, block bytes
#   large     replacements (20 buffers of 5..25 MiB)
#   fork      forks (one child at a time), live blocks
args_of() {
  local n
  n="$(threads_of "$1")"
  case "$(program_of "$1")" in
    pairs) echo "$(work 60) $n" ;;
    batch) echo "$(work 100)" ;;
    teardown) echo "3 $(work 1000000)" ;;
    threads) echo "$(work 30) $n" ;;
    prodcons) echo "$(work 10) $((n / 2))" ;;
    server) echo "$(work 200) $n" ;;
    larson) echo "$n $(work 6000) 1000 2000" ;;
    xmalloc) echo "$n $(work 3000)" ;;
    mixed) echo "$n $(work 4000) 1000" ;;
    scratch) echo "$n $(work 6000) 10000 8" ;;
    large) echo "$(work 200)" ;;
    fork) echo "$(work 600) 1000" ;;
  esac
}
work() { if [ "$quick" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi; }

# --- Run -------------------------------------------------------------------
# Untimed runs of the largest working sets first (server's, and large's few
# hundred MiB): on a virtual machine the first touch of guest memory is slow,
# and that should not land on whichever allocator happens to run first.
log "warm-up: server and large with glibc (not recorded)"
# shellcheck disable=SC2046 # the arguments are words on purpose
"$bin/server" $(args_of server-4t) > /dev/null
"$bin/large" 20 > /dev/null

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
      # shellcheck disable=SC2046 # the arguments are words on purpose
      if "$gnu_time" -f "%e %M" -o "$timing" \
          env LD_PRELOAD="${preload[$a]}" "$bin/$(program_of "$b")" $(args_of "$b") > "$output" 2>&1; then
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
  echo "Generated by \`benches/c/run.sh$([ "$quick" = 1 ] && echo " --quick") --reps $reps --threads $thread_counts --peers $peer_list\` on $(date -u +%Y-%m-%d)."
  echo "Machine: $(lscpu 2>/dev/null | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }'),"
  echo "$(nproc) CPUs, Linux $(uname -r), $(ldd --version 2>/dev/null | head -n 1 | sed 's/^ldd //')."
  echo "Peers:"
  for a in "${allocators[@]:1}"; do echo "- $a: ${about[$a]}"; done
  echo
  echo "Medians of $reps repetition(s); ratios are peer / cpuslab"
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
      # Time by thread count: one row per (program, allocator), one column per
      # count, from the <program>-<n>t cases.
      np = 0; nt = 0
      for (i = 1; i <= nb; i++) {
        b = benches[i]
        if (!match(b, /-[0-9]+t$/)) continue
        p = substr(b, 1, RSTART - 1); t = substr(b, RSTART + 1, RLENGTH - 2) + 0
        if (!(p in pseen)) { pseen[p] = 1; progs[++np] = p }
        if (!(t in tseen)) { tseen[t] = 1; ts[++nt] = t }
        caseof[p, t] = b
      }
      if (np == 0) exit
      for (i = 2; i <= nt; i++) {
        t = ts[i]
        for (j = i - 1; j >= 1 && ts[j] > t; j--) ts[j + 1] = ts[j]
        ts[j + 1] = t
      }
      print ""
      print "Time by thread count (median seconds; the same total work at every count):"
      print ""
      line = "| program | allocator |"; rule = "|---|---|"
      for (k = 1; k <= nt; k++) { line = line " " ts[k] " |"; rule = rule "---:|" }
      print line; print rule
      for (i = 1; i <= np; i++) {
        p = progs[i]
        for (j = 1; j <= na; j++) {
          a = allocs[j]; line = "| " p " | " a " |"
          for (k = 1; k <= nt; k++) {
            if (!((p, ts[k]) in caseof)) { line = line " - |"; continue }
            b = caseof[p, ts[k]]
            line = line (ms[b, a] == "" ? " failed |" : sprintf(" %.3f |", ms[b, a]))
          }
          print line
        }
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
