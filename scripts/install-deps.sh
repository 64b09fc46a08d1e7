#!/usr/bin/env bash
# Debian packages the build, the tests and the benchmarks need: libclang for
# bindgen, cmake, make and g++ for snmalloc (the crate's build, and the LD_PRELOAD
# libraries of benches/c/peers.sh). Installs only what is missing.
set -euo pipefail
need=()
# libclang itself (bindgen loads it), not libclang-cpp, which the image ships alone.
ldconfig -p | grep -qE 'libclang(-[0-9.]+)?\.so' || need+=(libclang-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
# cmake's default generator (snmalloc-sys's build, benches/c/peers.sh).
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
