#!/usr/bin/env bash
# Load fuzzer: semantically mutated GGUF models through our checks and through llama.cpp
# (each in a child process), for a fixed time. See docs/FUZZING.md ("The load fuzzer").
#
#   scripts/fuzz-load.sh [SECONDS] [extra load_fuzz flags...]   (default 120)
#
# Findings (files llama.cpp crashed or hung on that our check accepted, and files the
# preflight refused that llama.cpp runs) are saved under fuzz/artifacts/load_fuzz/findings/
# (git-ignored; LOAD_FUZZ_OUT names another folder); the exit status is 1 when there is any.
set -euo pipefail

SECONDS_TO_RUN="${1:-120}"
shift || true
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${LOAD_FUZZ_OUT:-$ROOT/fuzz/artifacts/load_fuzz}"
mkdir -p "$OUT"
exec cargo run --quiet --release -p llama-core --example load_fuzz -- \
    --seconds "$SECONDS_TO_RUN" --out "$OUT" "$@"
