#!/usr/bin/env python3
"""A stand-in for `llama-server` that llama.cpp's server test suite starts (its utils.py runs
whatever `LLAMA_SERVER_BIN_PATH` names): it swaps the model the suite would download for a
local one, and either runs the reference `llama-server` with the suite's other flags, or maps
them onto `llama-cli serve`.

Environment:
  LLAMA_COMPAT_TARGET      `reference` (llama-server) or `ours` (llama-cli serve)
  LLAMA_COMPAT_MODEL       the local GGUF every preset gets (e.g. SmolLM2)
  LLAMA_COMPAT_REFERENCE   path of llama-server
  LLAMA_COMPAT_OURS        path of llama-cli

Model flags (`--hf-repo`, `--hf-file`, `--model-url`, `--model`) become `-m $LLAMA_COMPAT_MODEL`
for both. For ours, flags of llama-server that change nothing here are dropped
when `llama-cli serve --help` does not list them (`--offline`, `--cont-batching`, `--no-ui`,
`--slots`: /slots is on; `--metrics`: /metrics is on, and llama-server without `--metrics`
becomes `--no-metrics` (/metrics answers 501, as llama-server's); `--jinja`, `--no-jinja`: the
model's template is applied by llama.cpp's built-in templates; `--backend_sampling`: llama-server
samples on the accelerator, ours always on the CPU, with the same samplers and results), a few
are renamed (`--embedding` is `--embeddings`, `--reranking` is `--embeddings --pooling rank`),
and the rest are passed as they are: a flag we do not have makes `llama-cli serve` refuse to
start, and that preset's tests fail, as they should.
"""

import os
import sys

MODEL_FLAGS = {"--hf-repo", "-hf", "--hf-file", "-hff", "--model-url", "-mu", "--model", "-m"}
# Flags with a value, and flags without, that ours drops.
DROP_WITH_VALUE = {"--tags"}
DROP = {"--offline", "--cont-batching", "--no-ui", "--slots", "--metrics", "--no-slots",
        "--jinja", "--no-jinja", "--backend_sampling"}
RENAME = {
    "--embedding": ["--embeddings"],
    "--reranking": ["--embeddings", "--pooling", "rank"],
    "--n-gpu-layers": ["--gpu-layers"],
    "-ngl": ["--gpu-layers"],
}


def supported_flags(binary):
    """The long flags `llama-cli serve --help` lists (at the start of an option's line, not
    named in another's help text)."""
    import re
    import subprocess
    text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s*(?:-[A-Za-z0-9]+, )?(--[a-z][a-z0-9-]*)", text, re.M))


def mapped(args, ours, model, supported=frozenset()):
    out = ["-m", model]
    i = 0
    while i < len(args):
        a = args[i]
        if a in MODEL_FLAGS:
            i += 2
            continue
        if ours and a in DROP_WITH_VALUE and a not in supported:
            i += 2
            continue
        if ours and a in DROP and a not in supported:
            i += 1
            continue
        if ours and a in RENAME:
            out.extend(RENAME[a])
            i += 1
            continue
        out.append(a)
        i += 1
    # llama-server serves /metrics only with --metrics; ours unless --no-metrics.
    if ours and "--metrics" not in args and "--no-metrics" in supported:
        out.append("--no-metrics")
    return out


def main():
    target = os.environ.get("LLAMA_COMPAT_TARGET", "ours")
    model = os.environ["LLAMA_COMPAT_MODEL"]
    args = sys.argv[1:]
    if target == "reference":
        binary = os.environ["LLAMA_COMPAT_REFERENCE"]
        argv = [binary] + mapped(args, False, model)
    else:
        binary = os.environ["LLAMA_COMPAT_OURS"]
        argv = [binary, "serve"] + mapped(args, True, model, supported_flags(binary))
    sys.stderr.write("compat launcher: " + " ".join(argv) + "\n")
    sys.stderr.flush()
    os.execv(binary, argv)


if __name__ == "__main__":
    main()
