#!/usr/bin/env python3
"""Planned vs measured peak RSS for the generated model shapes (issue 12).

Writes each shape of `llama_core::gguf::synthetic` (Q8_0) with the synthetic_model example, then
runs `llama-cli prompt --max-mem BUDGET -c N` with a prompt that fills the context but for the
answer (one byte token per character), and prints the plan's total next to the child's peak RSS
(ru_maxrss, its VmHWM).

With --scaled, the shapes' layers are grown like a small real model's (`SyntheticModel::scaled_up`,
the shapes the grid test in llama-cli/tests/cli/shapes.rs runs).

usage: scripts/memory_shapes.py LLAMA_CLI SYNTHETIC_MODEL_EXAMPLE [--ctx 512,2048,8192] [--budget 1G]
                                [--scaled] [--temp 0]
"""
import argparse
import os
import re
import subprocess
import tempfile

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
SHAPES = ["llama", "gemma3-swa", "large-vocab", "moe", "mamba"]


def size(text):
    value, unit = text.split()
    return float(value) * UNITS[unit]


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
        print("| shape | -c | planned | measured peak | planned / peak |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for shape in SHAPES:
            path = os.path.join(d, shape + ".gguf")
            subprocess.run([a.example, path, shape, "q8_0", "131072"] + (["--scaled"] if a.scaled else []),
                           check=True, capture_output=True)
            for ctx in [int(c) for c in a.ctx.split(",")]:
                proc = subprocess.Popen([a.cli, "prompt", "-m", path, "--raw", "-n", "16", "--temp", a.temp,
                                         "--ignore-eos", "--stats", "-t", "2", "--max-mem", a.budget,
                                         "-c", str(ctx)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                proc.stdin.write("x" * (ctx - 40))
                proc.stdin.close()
                err = proc.stderr.read()
                _, status, usage = os.wait4(proc.pid, 0)
                if status != 0:
                    print("| %s | %d | refused | | |" % (shape, ctx))
                    continue
                planned = size(re.search(r"stats: planned (\S+ \S+) of budget", err).group(1))
                peak = usage.ru_maxrss * 1024
                print("| %s | %d | %.1f MiB | %.1f MiB | %.3f |" % (shape, ctx, planned / 2**20, peak / 2**20,
                                                                 planned / peak))


if __name__ == "__main__":
    main()
