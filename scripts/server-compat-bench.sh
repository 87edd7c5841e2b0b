#!/usr/bin/env bash
# The compatibility benchmark of docs/SERVER.md: llama.cpp's own server test suite
# (tools/server/tests, pytest) run against the reference llama-server and against
# `llama-cli serve` in the same run, both on one local model through
# scripts/llama-server-compat.py (which the suite starts as its LLAMA_SERVER_BIN_PATH).
#
# The suite is copied into a temporary directory and run there; the llama.cpp tree is never
# modified. The copy's conftest.py does not download the presets' models (no hub is reachable:
# the launcher swaps every preset's model for MODEL). Out of scope, left out: vision, LoRA,
# speculative decoding, infill, MCP and GCP files.
#
#   usage: scripts/server-compat-bench.sh [FILE.py ...]     (default: every file in scope)
#   env:   LLAMA_CPP_DIR  llama.cpp tree (default ~/.cache/llama-cpp-reference/llama.cpp)
#          MODEL          the model (default .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#          OURS           our binary (default $CARGO_TARGET_DIR or target, release/llama-cli)
#          REFERENCE      llama-server (default $LLAMA_CPP_DIR/build/bin/llama-server)
#          TIMEOUT        seconds per test (default 120)
#          REFERENCE_PORT, OURS_PORT   the servers' ports (default 8080, 8180)
#          SKIP_REFERENCE  set: run ours only (compare with llama-server's recorded results)
# Prints one line per file (tests, passed on llama-server, passed on ours) and the totals;
# the pytest logs stay in the printed directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
llama_cpp=${LLAMA_CPP_DIR:-$HOME/.cache/llama-cpp-reference/llama.cpp}
model=$(realpath "${MODEL:-$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}")
target_dir=${CARGO_TARGET_DIR:-$root/target}
ours=$(realpath "${OURS:-$target_dir/release/llama-cli}")
reference=$(realpath "${REFERENCE:-$llama_cpp/build/bin/llama-server}")
timeout=${TIMEOUT:-120}
for f in "$model" "$ours" "$reference" "$llama_cpp/tools/server/tests/utils.py"; do
  [[ -e $f ]] || { echo "missing: $f" >&2; exit 2; }
done

python=$("$root/scripts/python-env.sh" | tail -n 1)
if ! "$python" -c "import pytest, pytest_timeout, wget, filelock, numpy, prometheus_client, requests, aiohttp" 2>/dev/null; then
  echo "adding the suite's packages to the Python environment ..." >&2
  "$python" -m pip install --quiet --disable-pip-version-check pytest pytest-timeout filelock \
    numpy prometheus-client requests wget aiohttp >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/llama-compat-XXXXXX")
# One copy of the suite per target (it writes into its own directory: tmp/, slot files), at
# its place in a tree of links to the rest of llama.cpp, so that the tests' relative paths
# (../../../models/templates, ../../../tools/mtmd) still resolve.
for target in reference ours; do
  tree="$work/$target"
  mkdir -p "$tree/tools/server"
  for entry in "$llama_cpp"/*; do
    [[ $(basename "$entry") == tools ]] || ln -s "$entry" "$tree/"
  done
  for entry in "$llama_cpp"/tools/*; do
    [[ $(basename "$entry") == server ]] || ln -s "$entry" "$tree/tools/"
  done
  for entry in "$llama_cpp"/tools/server/*; do
    [[ $(basename "$entry") == tests ]] || ln -s "$entry" "$tree/tools/server/"
  done
  cp -r "$llama_cpp/tools/server/tests" "$tree/tools/server/tests"
  # The presets' models are not downloaded: the launcher gives every preset MODEL.
  sed -i 's/^\(\s*\)ServerPreset.load_all()/\1pass  # models: scripts\/llama-server-compat.py/' \
    "$tree/tools/server/tests/conftest.py"
done
chmod +x "$root/scripts/llama-server-compat.py"

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  files=()
  for f in "$work"/ours/tools/server/tests/unit/test_*.py; do
    name=$(basename "$f")
    case $name in
      test_vision_api.py|test_lora.py|test_speculative.py|test_infill.py|test_mcp_servers.py|test_compat_gcp.py) ;;
      *) files+=("$name") ;;
    esac
  done
fi

# One target's run of one file; writes its JUnit XML.
run_one() {
  local target=$1 port=$2 file=$3
  (cd "$work/$target/tools/server/tests" && LLAMA_COMPAT_TARGET=$target LLAMA_COMPAT_MODEL=$model \
    LLAMA_COMPAT_REFERENCE=$reference LLAMA_COMPAT_OURS=$ours \
    LLAMA_SERVER_BIN_PATH="$root/scripts/llama-server-compat.py" PORT=$port LLAMA_CACHE="$work/$target/cache" \
    "$python" -m pytest -q -p no:cacheprovider --timeout "$timeout" "unit/$file" \
      --junitxml "$work/$target-$file.xml" >"$work/$target-$file.log" 2>&1) || true
}

count() { # tests passed in a JUnit file
  "$python" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0"); sys.exit()
cases = root.iter("testcase")
total = passed = 0
for c in cases:
    total += 1
    if not any(child.tag in ("failure", "error", "skipped") for child in c):
        passed += 1
print(total, passed)
EOF
}

echo "command: $0 ${*:-}" >&2
echo "model: $model; reference: $reference; ours: $ours; logs: $work" >&2
printf '%-32s %6s %12s %6s\n' file tests llama-server ours
total=0; ref_total=0; ours_total=0
for file in "${files[@]}"; do
  # Both targets at once, on different ports.
  [[ -n ${SKIP_REFERENCE:-} ]] || run_one reference "${REFERENCE_PORT:-8080}" "$file" &
  run_one ours "${OURS_PORT:-8180}" "$file" &
  wait
  read -r n ref < <(count "$work/reference-$file.xml")
  read -r n2 our < <(count "$work/ours-$file.xml")
  (( n2 > n )) && n=$n2
  printf '%-32s %6d %12d %6d\n' "$file" "$n" "$ref" "$our"
  total=$((total + n)); ref_total=$((ref_total + ref)); ours_total=$((ours_total + our))
done
printf '%-32s %6d %12d %6d\n' total "$total" "$ref_total" "$ours_total"
