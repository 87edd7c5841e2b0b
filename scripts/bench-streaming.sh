#!/usr/bin/env bash
# Builds llama-cli (release) and llama.cpp's reference tools, then runs the layer streaming
# benchmark of scripts/bench_streaming.py (tokens/s, disk bytes per token, peak RSS, fraction
# of the disk-read limit). Run as root for the cgroup-limited llama-bench rows.
#   usage: scripts/bench-streaming.sh [--budgets 84M,90M,110M] [--rounds N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=$("$root/scripts/setup.sh" | tail -n 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/llama-rs-target}
cargo build --release --locked -p llama-cli >&2
refdir=$(bash "$root/../shared/tools/build-llama-cpp-reference.sh" | tail -n 1)
python3 "$root/scripts/bench_streaming.py" "$CARGO_TARGET_DIR/release/llama-cli" "$refdir" "$model" "$@"
