#!/usr/bin/env bash
# Fuzz llama-rs's pure-Rust GGUF reader for a fixed time.
#
#   scripts/fuzz-gguf.sh [SECONDS]        (default 120)
#   FUZZ_MODE=mutate scripts/fuzz-gguf.sh  (skip libFuzzer, use the fallback runner)
#
# With libFuzzer (cargo-fuzz): installs cargo-fuzz if missing, builds fuzz/ with a
# nightly toolchain if one is installed, else with the stable one and RUSTC_BOOTSTRAP=1
# (cargo-fuzz passes -Z flags), seeds fuzz/corpus/gguf_parse with generated files and
# the first 64 KiB of the test model if present, and runs the gguf_parse target.
# If cargo-fuzz cannot be installed or run, it falls back to gguf_mutate, a plain
# mutation fuzzer that needs no nightly features.
#
# Neither path builds llama.cpp: fuzz/ depends on llama-core with default-features = false
# (no `ffi` feature), which builds only its pure parts.
set -euo pipefail

SECONDS_TO_RUN="${1:-120}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
CORPUS="$FUZZ/corpus/gguf_parse"
MODEL="${LLAMA_RS_MODEL:-$ROOT/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
MODE="${FUZZ_MODE:-libfuzzer}"

cd "$FUZZ"
mkdir -p "$CORPUS"

# Seeds: generated files, plus the start of the real model's header.
cargo run --quiet --release --no-default-features --bin gguf_mutate -- --write-seeds "$CORPUS"
if [[ -f "$MODEL" ]]; then
    head -c 65536 "$MODEL" >"$CORPUS/smollm2-head.gguf"
fi

run_mutate() {
    echo "== fallback: gguf_mutate for ${SECONDS_TO_RUN}s"
    cargo run --quiet --release --no-default-features --bin gguf_mutate -- \
        --seconds "$SECONDS_TO_RUN" --corpus "$CORPUS"
}

if [[ "$MODE" == "mutate" ]]; then
    run_mutate
    exit $?
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked; then
        echo "cargo-fuzz could not be installed; using the fallback runner" >&2
        run_mutate
        exit $?
    fi
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ_CMD=(cargo +nightly fuzz)
    echo "== using the nightly toolchain"
else
    FUZZ_CMD=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
    echo "== no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
fi

if ! "${FUZZ_CMD[@]}" build gguf_parse; then
    echo "cargo fuzz build failed; using the fallback runner" >&2
    run_mutate
    exit $?
fi

echo "== libFuzzer: gguf_parse for ${SECONDS_TO_RUN}s"
# -rss_limit_mb also limits single allocations (malloc_limit_mb defaults to it), so an
# unbounded allocation on a small input would be reported as a crash.
"${FUZZ_CMD[@]}" run gguf_parse "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1
