#!/usr/bin/env python3
"""Planned vs measured peak RSS of `llama-cli prompt --max-mem` across contexts.

For each context: one run with a short prompt (32 new tokens), one with a prompt that fills about
half the context (prompt processing touches the compute buffers). The planned total comes from
the run's own `--stats` line; the measured peak is the child's ru_maxrss (its VmHWM).

usage: scripts/memory_table.py LLAMA_CLI MODEL [--budget 1G]
"""
import argparse
import os
import re
import subprocess

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def size(text):
    value, unit = text.split()
    return float(value) * UNITS[unit]


def run(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(argv[:8]), err))
    planned = size(re.search(r"stats: planned (\S+ \S+) of budget", err).group(1))
    return planned, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("model")
    ap.add_argument("--budget", default="1G")
    a = ap.parse_args()
    print("| ctx-size | planned | measured, short prompt | ratio | measured, prompt of ctx/2 | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for ctx in (256, 512, 1024, 2048, 4096, 8192):
        base = [a.cli, "prompt", "--raw", "-m", a.model, "--max-mem", a.budget, "-c", str(ctx), "-t", "2",
                "--temp", "0", "--stats", "--strict"]
        planned, short = run(base + ["-n", "32", "The history of the printing press"])
        long_prompt = "word " * (ctx // 2)
        _, long = run(base + ["-n", "8", long_prompt])
        mib = lambda b: "%.1f MiB" % (b / (1 << 20))
        print("| %d | %s | %s | %.2f | %s | %.2f |" % (ctx, mib(planned), mib(short), short / planned, mib(long),
                                                      long / planned))


if __name__ == "__main__":
    main()
