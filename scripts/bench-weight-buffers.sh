#!/usr/bin/env bash
# Builds llama-cli (release) and llama.cpp's reference tools, makes a Q4_0 copy of the test model
# with llama-quantize (a type CPU_REPACK repacks), then runs scripts/bench_weight_buffers.py on the
# test model (Q4_1, not repacked) and the Q4_0 copy. Figures go to stdout (markdown tables).
#   usage: scripts/bench-weight-buffers.sh [--threads N] [--rounds N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=$("$root/scripts/setup.sh" | tail -n 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/llama-rs-target}
cargo build --release --locked -p llama-cli >&2
refdir=$(bash "$root/../shared/tools/build-llama-cpp-reference.sh" | tail -n 1)
q4_0="$root/.cache/models/SmolLM2-135M-Instruct.Q4_0.gguf"
if [[ ! -f $q4_0 ]]; then
  "$refdir/llama-quantize" --allow-requantize "$model" "$q4_0.part" Q4_0 >&2
  mv "$q4_0.part" "$q4_0"
fi
python3 "$root/scripts/bench_weight_buffers.py" "$CARGO_TARGET_DIR/release/llama-cli" "$refdir" "$model" "$q4_0" "$@"
