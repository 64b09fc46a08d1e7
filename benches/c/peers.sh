#!/usr/bin/env bash
# Builds the LD_PRELOAD peers that no Debian package provides, from the C and
# C++ sources that crates.io ships inside two -sys crates benches/Cargo.toml
# depends on (the Rust comparison links the same sources):
#
#   mimalloc3  mimalloc 3, libmimalloc-sys's c_src/mimalloc/v3: the shared
#              `mimalloc` target, release, MI_OVERRIDE=ON -> libmimalloc3.so
#   snmalloc   snmalloc, snmalloc-sys's upstream/: the `snmallocshim` shared
#              library (malloc and operator new), release -> libsnmalloc.so
#
# The crates' directories come from `cargo metadata` run in the workspace (on a
# fresh machine it downloads them first), else from the newest matching folder
# under $CARGO_HOME/registry/src. Each library is built with cmake from the
# crate's CMakeLists.txt; where that fails (a crate's package can leave out files
# its CMakeLists.txt includes: libmimalloc-sys 0.1.49 ships no cmake/ folder),
# the same sources are compiled with gcc/g++ directly, with the flags cmake
# would have used. A library is built once, into DIR/<name>-<crate>-<version>/
# (with the build's log and a one-line description), and reused while that
# folder exists: delete it to rebuild.
#
# usage: benches/c/peers.sh [--dir DIR] NAME...
#   NAME       mimalloc3, snmalloc
#   --dir DIR  the cache (default: target/peers, under $CARGO_TARGET_DIR if set)
# PEERS_NO_CMAKE=1 in the environment skips cmake (to check the direct builds).
#
# Prints "NAME PATH DESCRIPTION" on stdout for each library built or reused;
# progress and failures go to stderr. Exit status 1 when one NAME could not be
# built (the others are still printed).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

dir=""
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift ;;
    --dir=*) dir="${1#--dir=}" ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "peers.sh: unknown argument $1" >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done
if [ -z "$dir" ]; then
  dir="${CARGO_TARGET_DIR:-target}/peers"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
jobs="$(nproc 2>/dev/null || echo 2)"

say() { echo "peers.sh: $*" >&2; }

# The package directories of the workspace's dependencies, from cargo metadata
# (run once; "none" when cargo cannot say).
metadata=""
load_metadata() {
  [ -z "$metadata" ] || return 0
  if command -v cargo >/dev/null; then
    metadata="$(cargo metadata --format-version 1 2>/dev/null ||
                cargo metadata --format-version 1 --offline 2>/dev/null || true)"
  fi
  [ -n "$metadata" ] || metadata="none"
}

# The package directory of a crate (<crate>-<version>), from cargo metadata; the
# registry folders as a fallback. Empty when neither has it.
crate_dir() {
  local path=""
  if [ "$metadata" != "none" ]; then
    path="$(grep -o "\"manifest_path\":\"[^\"]*/$1-[0-9][^\"/]*/Cargo.toml\"" <<< "$metadata" |
            sed 's/^"manifest_path":"//; s/"$//' | sort -V | tail -n 1 || true)"
    path="${path%/Cargo.toml}"
  fi
  if [ -z "$path" ] || [ ! -d "$path" ]; then
    path="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$1"-[0-9]* 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -z "$path" ] || say "$1: not in cargo metadata; using $path"
  fi
  echo "$path"
}

# Why cmake did not build (its first error), for the message.
cmake_failure() {
  if ! command -v cmake >/dev/null; then
    echo "cmake is not installed"
  elif [ "${PEERS_NO_CMAKE:-0}" = 1 ]; then
    echo "PEERS_NO_CMAKE=1"
  elif grep -q 'CMake Error' "$1"; then
    grep -m 1 -A 3 'CMake Error' "$1" | tr -s ' \n' ' ' | sed 's/ *$//'
  else
    echo "see $1"
  fi
}

# mimalloc 3. cmake: the release shared library with MI_OVERRIDE (its only
# target here). Direct: src/static.c (mimalloc's single-file build of the same
# sources) with the compile options, definitions and libraries that cmake's
# configuration reports for that target with gcc (Release: -O3 -DNDEBUG).
build_mimalloc3() { # crate dir, work dir, output library
  local src="$1/c_src/mimalloc/v3" work="$2" lib="$3" version
  [ -f "$src/src/static.c" ] || { say "mimalloc3: $src/src/static.c is missing"; return 1; }
  version="$(awk '/#define MI_MALLOC_VERSION/ { v = $3; printf "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100 }' "$src/include/mimalloc.h")"
  if [ "${PEERS_NO_CMAKE:-0}" != 1 ] && command -v cmake >/dev/null && [ -f "$src/CMakeLists.txt" ] &&
     cmake -S "$src" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release -DMI_OVERRIDE=ON \
       -DMI_BUILD_SHARED=ON -DMI_BUILD_STATIC=OFF -DMI_BUILD_OBJECT=OFF -DMI_BUILD_TESTS=OFF \
       >> "$work/build.log" 2>&1 &&
     cmake --build "$work/cmake" --target mimalloc -j "$jobs" --verbose >> "$work/build.log" 2>&1; then
    cp -L "$work/cmake/libmimalloc.so" "$lib"
    echo "mimalloc $version, cmake release build" > "$work/description"
    return 0
  fi
  say "mimalloc3: no cmake build ($(cmake_failure "$work/build.log"));" \
      "compiling src/static.c with gcc"
  (
    set -x
    gcc -O3 -DNDEBUG -std=gnu11 -fPIC -shared -Wall -Wextra -Wno-unknown-pragmas \
      -Wstrict-prototypes -fvisibility=hidden -ftls-model=initial-exec -fno-builtin-malloc \
      -DMI_MALLOC_OVERRIDE -DMI_SHARED_LIB -DMI_SHARED_LIB_EXPORT -DMI_BUILD_RELEASE \
      -DMI_CMAKE_BUILD_TYPE=release -I"$src/include" "$src/src/static.c" \
      -o "$lib" -Wl,-soname,libmimalloc3.so -pthread -lrt -latomic
  ) >> "$work/build.log" 2>&1 || return 1
  echo "mimalloc $version, gcc -O3 (src/static.c)" > "$work/description"
}

# snmalloc. cmake: the release `snmallocshim` (tests and the static library
# off). Direct: malloc.cc and new.cc with the command lines of cmake's build of
# that target with g++ 12 on Debian 12 (C++20, -fno-rtti, -mcx16, initial-exec
# TLS, hidden visibility but for the entry points, thread cleanup by
# __cxa_thread_atexit, libstdc++ linked statically, and the definitions of the
# features its configuration finds on Linux with glibc).
build_snmalloc() { # crate dir, work dir, output library
  local src="$1/upstream" work="$2" lib="$3"
  [ -f "$src/src/snmalloc/override/malloc.cc" ] || { say "snmalloc: $src/src/snmalloc/override/malloc.cc is missing"; return 1; }
  if [ "${PEERS_NO_CMAKE:-0}" != 1 ] && command -v cmake >/dev/null && [ -f "$src/CMakeLists.txt" ] &&
     cmake -S "$src" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
       -DSNMALLOC_BUILD_TESTING=OFF -DSNMALLOC_STATIC_LIBRARY=OFF \
       >> "$work/build.log" 2>&1 &&
     cmake --build "$work/cmake" --target snmallocshim -j "$jobs" --verbose >> "$work/build.log" 2>&1; then
    cp -L "$work/cmake/libsnmallocshim.so" "$lib"
    echo "snmalloc, cmake release build of snmallocshim" > "$work/description"
    return 0
  fi
  say "snmalloc: no cmake build ($(cmake_failure "$work/build.log"));" \
      "compiling malloc.cc and new.cc with g++"
  (
    set -x
    g++ -O3 -DNDEBUG -std=gnu++20 -fPIC -shared -fvisibility=hidden -fno-rtti \
      -Wall -Wextra -Wundef -fomit-frame-pointer -ftls-model=initial-exec -ffunction-sections -mcx16 \
      -DMALLOC_USABLE_SIZE_QUALIFIER=const -DSNMALLOC_CHECK_LOADS=false -DSNMALLOC_PAGEID=false \
      '-DSNMALLOC_EXPORT=__attribute__((visibility("default")))' \
      -DSNMALLOC_HAS_LINUX_FUTEX_H -DSNMALLOC_HAS_LINUX_RANDOM_H -DSNMALLOC_PLATFORM_HAS_GETENTROPY \
      -DSNMALLOC_PTHREAD_ATFORK_WORKS -DSNMALLOC_NO_REALLOCARR -DSNMALLOC_NO_REALLOCARRAY \
      -DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT -DSNMALLOC_USE_WAIT_ON_ADDRESS=1 \
      -I"$src/src" "$src/src/snmalloc/override/malloc.cc" "$src/src/snmalloc/override/new.cc" \
      -o "$lib" -Wl,-soname,libsnmalloc.so -Wl,--no-undefined -static-libstdc++ -rdynamic -latomic
  ) >> "$work/build.log" 2>&1 || return 1
  echo "snmalloc, g++ -O3 (malloc.cc, new.cc)" > "$work/description"
}

status=0
load_metadata
for name in "${names[@]}"; do
  case "$name" in
    mimalloc3) crate=libmimalloc-sys ;;
    snmalloc) crate=snmalloc-sys ;;
    *) say "unknown peer $name (mimalloc3, snmalloc)"; status=1; continue ;;
  esac
  src="$(crate_dir "$crate")"
  if [ -z "$src" ]; then
    say "$name: the $crate crate is not in cargo's registry (cargo fetch downloads it)"
    status=1
    continue
  fi
  package="$(basename "$src")" # <crate>-<version>
  keep="$dir/$name-$package"
  lib="$keep/lib$name.so"
  if [ ! -f "$lib" ]; then
    say "$name: building from $src (once; kept in $keep)"
    work="$dir/.$name-$package.$$"
    rm -rf "$dir/.$name-$package".* # earlier failed attempts
    mkdir -p "$work"
    start=$SECONDS
    if "build_$name" "$src" "$work" "$work/lib$name.so" && [ -f "$work/lib$name.so" ]; then
      sed -i "s/^\([^,]*\)/\1 from $package/" "$work/description"
      echo "built in $((SECONDS - start)) s" >> "$work/build.log"
      rm -rf "$work/cmake" "$keep"
      mv "$work" "$keep"
      say "$name: built $lib in $((SECONDS - start)) s"
    else
      say "$name: build failed; the last lines of $work/build.log:"
      tail -n 15 "$work/build.log" | sed 's/^/  /' >&2
      status=1
      continue
    fi
  fi
  echo "$name $lib $(head -n 1 "$keep/description" 2>/dev/null || echo "$package")"
done
exit "$status"
