#!/usr/bin/env bash
# Aggregate generation t/s of the engine at 1, 2, 4, 8 sessions next to llama.cpp's
# llama-batched-bench, and time to first token of turn 10 vs turn 1, in one run.
#   usage: scripts/bench-batched.sh [THREADS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
threads=${1:-2}
model=$("$root/scripts/setup.sh" | tail -n 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/llama-rs-target}
cargo build --release --locked -p llama-core --example batched_bench >&2
refdir=$(bash "$root/../shared/tools/build-llama-cpp-reference.sh" | tail -n 1)
echo "## llama-batched-bench (reference)"
"$refdir/llama-batched-bench" -m "$model" -c 4096 -b 2048 -ub 512 -npp 128 -ntg 128 -npl 1,2,4,8 -t "$threads" 2>/dev/null | grep -E '^\|'
echo
"$CARGO_TARGET_DIR/release/examples/batched_bench" "$model" "$threads" 128 128
