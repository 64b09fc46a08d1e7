#!/usr/bin/env bash
# Debian packages the build, the tests and the benchmarks need: libclang for
# bindgen, cmake and g++ for snmalloc. Installs only what is missing.
set -euo pipefail
need=()
# libclang itself (bindgen loads it), not libclang-cpp, which the image ships alone.
ldconfig -p | grep -qE 'libclang(-[0-9.]+)?\.so' || need+=(libclang-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
