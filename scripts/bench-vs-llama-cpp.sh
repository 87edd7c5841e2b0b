#!/usr/bin/env bash
# Builds llama-cli (release) and llama.cpp's reference tools, then runs the side-by-side
# benchmarks of scripts/bench_vs_llama_cpp.py. Figures go to stdout (markdown tables).
#   usage: scripts/bench-vs-llama-cpp.sh [--threads N] [--rounds N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=$("$root/scripts/setup.sh" | tail -n 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/llama-rs-target}
cargo build --release --locked -p llama-cli >&2
refdir=$(bash "$root/../shared/tools/build-llama-cpp-reference.sh" | tail -n 1)
python3 "$root/scripts/bench_vs_llama_cpp.py" "$CARGO_TARGET_DIR/release/llama-cli" "$refdir" "$model" "$@"
