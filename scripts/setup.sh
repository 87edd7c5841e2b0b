#!/usr/bin/env bash
# Installs what building llama-rs needs and is missing (cmake, clang, libclang-dev via apt-get;
# a Rust toolchain must already be there), then fetches the default model.
#   usage: scripts/setup.sh        (prints the model path on its last line)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} ..." >&2
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
"$root/scripts/fetch-model.sh"
