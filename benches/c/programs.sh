#!/usr/bin/env bash
# Real programs under each allocator, by LD_PRELOAD: wall seconds of one
# allocation-heavy command per program, each (program, allocator) pair once
# per round, the allocators in turn, and the median of the rounds.
#
#   sqlite   an in-memory table of 400 000 rows of random text, indexed
#   node     3 million small objects pushed into arrays dropped every 100 000
#   python   a dict of a million keys, each a list of up to 6 ints
#   jq       an array of 400 000 objects built and counted
#   gcc      -O2 compile of one C file
#   perl     a hash of a million keys, each an array of an int and a string
#   bash     1000 command substitutions: a fork each (what the allocator's fork
#            handlers and page tables cost a program that forks)
#
# A program that is not installed is skipped. The peers are the ones
# benches/c/run.sh uses, where they are already there (Debian's packages;
# mimalloc 3 and snmalloc once run.sh has built them in target/peers).
#
# usage: benches/c/programs.sh [--rounds N] [--lib FILE]
#   --rounds N   rounds (default 3)
#   --lib FILE   the cpuslab library (default: build target/release/libcpuslab.so)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3
lib=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --lib) lib="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
if [ -z "$lib" ]; then
  cargo build --release -p cpuslab-preload >&2
  lib="$PWD/${CARGO_TARGET_DIR:-target}/release/libcpuslab.so"
fi
[ -x /usr/bin/time ] || { echo "programs.sh: /usr/bin/time is missing (Debian package time)" >&2; exit 1; }

find_lib() { ldconfig -p 2>/dev/null | awk -v name="$1" '$1 == name { print $NF; exit }'; }
names=(cpuslab glibc)
declare -A preload=([cpuslab]="$lib" [glibc]="")
add() { [ -n "$2" ] && [ -e "$2" ] && { names+=("$1"); preload[$1]="$2"; } || true; }
add jemalloc "$(find_lib libjemalloc.so.2)"
mimalloc2="$(find_lib libmimalloc.so.2.0)"
add mimalloc2 "${mimalloc2:-$(find_lib libmimalloc.so.2)}"
add tcmalloc "$(find_lib libtcmalloc_minimal.so.4)"
add mimalloc3 "$(ls target/peers/mimalloc3-*/libmimalloc3.so 2>/dev/null | head -1)"
add snmalloc "$(ls target/peers/snmalloc-*/libsnmalloc.so 2>/dev/null | head -1)"

source_file="$PWD/crates/cpuslab-preload/tests/c/stress.c"
declare -A command=(
  [sqlite]="sqlite3 :memory: \"create table t(a,b); with recursive c(x) as (select 1 union all select x+1 from c where x<400000) insert into t select x, hex(randomblob(50)) from c; create index i on t(b); select count(*), sum(length(b)) from t;\""
  [node]="node -e 'let a=[];for(let i=0;i<3e6;i++){a.push({x:i,s:\"v\"+i});if(a.length>1e5)a=[]}console.log(a.length)'"
  [python]="python3 -c 'd={}
for i in range(1000000): d[str(i)]=[i]*(i%7)
print(len(d))'"
  [jq]="jq -n '[range(0;400000)] | map({a:., b:(tostring)}) | length'"
  [gcc]="gcc -O2 -c $source_file -o /dev/null"
  [perl]="perl -e 'my %h; for my \$i (1..1000000) { \$h{\"k\$i\"} = [\$i, \"x\" x (\$i % 50)] } print scalar(keys %h), qq(\\n)'"
  [bash]="bash -c 'for i in \$(seq 1000); do x=\$(echo \$i); done'"
)
programs=()
for p in sqlite node python jq gcc perl bash; do
  tool="${command[$p]%% *}"
  if command -v "$tool" > /dev/null; then programs+=("$p"); else echo "programs.sh: skipping $p ($tool is not installed)" >&2; fi
done

times="$(mktemp)"
trap 'rm -f "$times" "$times.one"' EXIT
for round in $(seq "$rounds"); do
  for p in "${programs[@]}"; do
    for a in "${names[@]}"; do
      /usr/bin/time -o "$times.one" -f "%e" env LD_PRELOAD="${preload[$a]}" bash -c "${command[$p]}" > /dev/null 2>&1 ||
        echo "programs.sh: $p under $a failed (round $round)" >&2
      echo "$p $a $(tail -1 "$times.one")" >> "$times"
    done
  done
done

# One row per program: each allocator's median seconds, and cpuslab's ratio
# to the fastest (best time / cpuslab's: above 1, cpuslab is faster).
printf '| program |'; printf ' %s |' "${names[@]}"; printf ' cpuslab vs best |\n'
printf '|---|'; printf -- '---|%.0s' "${names[@]}"; printf -- '---|\n'
for p in "${programs[@]}"; do
  awk -v p="$p" -v order="${names[*]}" '
    $1 == p { v[$2] = v[$2] " " $3 }
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
      k = split(order, names, " "); best = 0; line = "| " p " |"
      for (i = 1; i <= k; i++) {
        m[i] = median(v[names[i]]); line = line " " m[i] " |"
        if (i > 1 && (best == 0 || m[i] < best)) best = m[i]
      }
      printf "%s %.2fx |\n", line, (m[1] > 0 ? best / m[1] : 0)
    }' "$times"
done
