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
cargo test --workspace --locked "$@"
