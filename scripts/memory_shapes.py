#!/usr/bin/env python3
"""Planned vs measured peak RSS for the generated model shapes (issue 12).

Writes each shape of `llama_core::gguf::synthetic` (Q8_0) with the synthetic_model example, then
runs `llama-cli prompt --max-mem BUDGET -c N` for every budget and context with a prompt that
fills the context the plan gives it (`plan --json`) but for the 4-token answer (one byte token per
character, four more for the text's start), and prints the plan's total, the streaming window's
read-ahead (counted in the plan, held in the page cache, not in the RSS), and the child's peak RSS
(ru_maxrss, its VmHWM) next to what the plan counts in the RSS. A run that plans a context one
step below `plan`'s (its own baseline differs by a few hundred KiB) runs again with a prompt that
fills the context it holds.

With --scaled, the shapes' layers are grown like a small real model's (`SyntheticModel::scaled_up`,
the shapes the grid test in llama-cli/tests/cli/shapes.rs runs).

usage: scripts/memory_shapes.py LLAMA_CLI SYNTHETIC_MODEL_EXAMPLE [--ctx 512,2048,8192]
                                [--budget 1G[,64M,...]] [--scaled] [--temp 0]
"""
import argparse
import json
import os
import re
import subprocess
import tempfile

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
SHAPES = ["llama", "gemma3-swa", "large-vocab", "moe", "mamba"]


def size(text):
    value, unit = text.split()
    return float(value) * UNITS[unit]


def prompt_argv(cli, model, budget, ctx, n_predict=4, temp="0"):
    """`llama-cli prompt` as the measurements run it: raw text on stdin, a fixed number of
    tokens (no end of text), 2 threads, --stats, under --max-mem BUDGET at -c CTX."""
    return [cli, "prompt", "-m", model, "--raw", "-n", str(n_predict), "--temp", temp, "--ignore-eos",
            "--stats", "-t", "2", "--max-mem", budget, "-c", str(ctx)]


def run(a, path, budget, ctx, n_ctx):
    """One prompt run with a prompt that fills n_ctx but for the answer: (status, stderr, rusage)."""
    proc = subprocess.Popen(prompt_argv(a.cli, path, budget, ctx, temp=a.temp), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("x" * (n_ctx - 8))
    proc.stdin.close()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return status, err, usage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("example")
    ap.add_argument("--ctx", default="512,2048,8192")
    ap.add_argument("--budget", default="1G")
    ap.add_argument("--scaled", action="store_true")
    ap.add_argument("--temp", default="0")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print("| shape | -c | --max-mem | context run | streamed | planned | read ahead | measured peak | planned RSS / peak |")
        print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
        for shape in SHAPES:
            path = os.path.join(d, shape + ".gguf")
            subprocess.run([a.example, path, shape, "q8_0", "131072"] + (["--scaled"] if a.scaled else []),
                           check=True, capture_output=True)
            for ctx in [int(c) for c in a.ctx.split(",")]:
                for budget in a.budget.split(","):
                    row = "| %s | %d | %s |" % (shape, ctx, budget)
                    plan = subprocess.run([a.cli, "plan", "--json", "-m", path, "--max-mem", budget,
                                           "-c", str(ctx)], capture_output=True, text=True)
                    if plan.returncode != 0:
                        print(row + " refused | | | | | |")
                        continue
                    n_ctx = json.loads(plan.stdout)["plan"]["candidate"]["n_ctx"]
                    status, err, usage = run(a, path, budget, ctx, n_ctx)
                    held = re.search(r"the context holds (\d+)", err) if status != 0 else None
                    if held and int(held.group(1)) < n_ctx:
                        # The run planned from its own baseline, a step below `plan`'s context.
                        n_ctx = int(held.group(1))
                        status, err, usage = run(a, path, budget, ctx, n_ctx)
                    if status != 0:
                        print(row + " failed | | | | | |")
                        continue
                    planned = size(re.search(r"stats: planned (\S+ \S+) of budget", err).group(1))
                    streaming = re.search(r"stats: streaming (\d+) of .*read ahead (\S+ \S+),", err)
                    streamed = bool(streaming) and streaming.group(1) != "0"
                    read_ahead = size(streaming.group(2)) if streaming else 0
                    peak = usage.ru_maxrss * 1024
                    print(row + " %d | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.3f |"
                          % (n_ctx, "yes" if streamed else "no", planned / 2**20, read_ahead / 2**20,
                             peak / 2**20, (planned - read_ahead) / peak))


if __name__ == "__main__":
    main()
