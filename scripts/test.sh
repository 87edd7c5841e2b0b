#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs build dependencies and the test model if
# missing, then runs every test of the workspace (unit, property, integration on the real model).
#   usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh" >/dev/null
# The official `openai` Python client (from PyPI) for the server tests, in a git-ignored venv.
"$root/scripts/python-env.sh" >/dev/null
# Reuse one target directory outside the clone, so repeated runs are incremental.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/llama-rs-target}
# Tests run several llama.cpp processes at once on few cores; OpenMP threads that spin while
# waiting would starve each other (oversubscription), so let them sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# The pure parts of llama-core (GGUF, cache spec, KV pool, planner, ...) build and test without
# llama.cpp or any C toolchain: without the default features, neither llama-cpp-sys-2 nor a crate
# that compiles C (cc, cmake, bindgen, ring, aws-lc-sys) may be among its dependencies or their
# build scripts' dependencies.
echo "== llama-core without llama.cpp (--no-default-features)"
tree=$(cargo tree -p llama-core --no-default-features -e normal,build --prefix none --locked)
c_crates='^(llama-cpp-sys-2|llama-sys|cc|cmake|bindgen|ring|aws-lc-sys) '
if grep -Eq "$c_crates" <<<"$tree"; then
    echo "error: llama-core --no-default-features depends on llama.cpp or C code:" >&2
    grep -E "$c_crates" <<<"$tree" | sort -u >&2
    exit 1
fi
cargo test -p llama-core --no-default-features --locked
# The fuzz crate (its own workspace and lock file) depends on those pure parts only.
if ! cargo check --manifest-path fuzz/Cargo.toml --no-default-features --locked --bins; then
    echo "error: the fuzz crate does not build; if fuzz/Cargo.lock is out of date (llama-core's" >&2
    echo "dependencies changed), run: cargo update --manifest-path fuzz/Cargo.toml -p llama-core" >&2
    exit 1
fi

echo "== the workspace"
cargo test --workspace --locked "$@"
