#!/usr/bin/env bash
# Creates (once) a Python virtual environment under the git-ignored .cache/ with the packages the
# tests and benchmarks use (from PyPI: the official `openai` and `anthropic` clients for the
# server tests, `huggingface_hub` for the model store's cache interoperability tests,
# `schemathesis` for the API fuzzer), and prints the path of its python on the last line.
#   usage: scripts/python-env.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/python-venv"
python="$venv/bin/python"
if ! "$python" -c "import openai, huggingface_hub, schemathesis" >/dev/null 2>&1; then
  echo "creating $venv with the openai, huggingface_hub and schemathesis packages ..." >&2
  python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "openai>=1.40,<3" \
    "huggingface_hub>=0.30,<3" "schemathesis>=4,<5" >&2
fi
if ! "$python" -c "import anthropic" >/dev/null 2>&1; then
  echo "adding the anthropic package to $venv ..." >&2
  "$python" -m pip install --quiet --disable-pip-version-check "anthropic>=0.40,<1" >&2 || true
fi
echo "$python"
