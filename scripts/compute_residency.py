#!/usr/bin/env python3
"""Which pages of llama.cpp's CPU buffers a run makes resident (issue 12).

Runs `llama-cli prompt` with a prompt that fills the context the plan gives it but for the
answer, under an LD_PRELOAD shim (scripts/compute_residency_shim.c, built here with `cc`) that
logs every block of 256 KiB or more llama.cpp allocates for its CPU buffers (KV cache, compute
buffers). While the run decodes, it reads /proc/PID/pagemap over each block and keeps the sample
with the most resident pages; it prints each block's size, how much of it was never made
resident, and where the untouched runs of pages lie (offset and length in KiB).

The compute buffer's two untouched runs of `n_embd` floats a micro-batch token are the graph's
inputs for batches of vector embeddings and mixed batches, which token batches never write
(`budget::margin::unwritten_embedding_inputs`).

usage: scripts/compute_residency.py LLAMA_CLI MODEL [--ctx 2048] [--budget 1G] [-n 4] [-- EXTRA...]
"""
import argparse
import json
import os
import struct
import subprocess
import tempfile
import time

from memory_shapes import prompt_argv

PAGE = 4096


def resident_pages(pid, address, size):
    first, last = address // PAGE, (address + size - 1) // PAGE
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        data = pagemap.read((last - first + 1) * 8)
    return [struct.unpack_from("<Q", data, i * 8)[0] >> 63 for i in range(len(data) // 8)]


def untouched_runs(bits):
    runs, i = [], 0
    while i < len(bits):
        if bits[i]:
            i += 1
            continue
        j = i
        while j < len(bits) and not bits[j]:
            j += 1
        runs.append((i * PAGE // 1024, (j - i) * PAGE // 1024))
        i = j
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("model")
    ap.add_argument("--ctx", default="2048")
    ap.add_argument("--budget", default="1G")
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        shim = os.path.join(tmp, "shim.so")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim,
                        os.path.join(here, "compute_residency_shim.c"), "-ldl"], check=True)
        log = os.path.join(tmp, "blocks.log")
        plan = subprocess.run([args.cli, "plan", "--json", "-m", args.model, "--max-mem", args.budget,
                               "-c", args.ctx] + args.extra, capture_output=True, text=True, check=True)
        n_ctx = json.loads(plan.stdout)["plan"]["candidate"]["n_ctx"]
        env = dict(os.environ, LD_PRELOAD=shim, COMPUTE_RESIDENCY_LOG=log)
        child = subprocess.Popen(prompt_argv(args.cli, args.model, args.budget, args.ctx, n_predict=args.n)
                                 + args.extra, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, env=env)
        # One byte token a character with the generated models, four more for the text's start.
        child.stdin.write("x" * max(1, n_ctx - args.n - 4))
        child.stdin.close()
        best, best_resident = [], -1
        while child.poll() is None:
            try:
                with open(log) as f:
                    blocks = [(int(a, 16), int(s)) for a, s in (line.split() for line in f)]
                sample = [(a, s, resident_pages(child.pid, a, s)) for a, s in blocks]
            except (OSError, ValueError):
                continue
            resident = sum(sum(bits) for _, _, bits in sample)
            if resident >= best_resident:
                best, best_resident = sample, resident
            time.sleep(0.001)
        stderr = child.stderr.read()
    # A block freed and allocated again is logged twice: keep the last block at each address.
    latest = {a: (a, s, bits) for a, s, bits in best}
    for _, size, bits in latest.values():
        untouched = size - sum(bits) * PAGE
        print(f"block {size / 1024:10.1f} KiB  never resident {max(0, untouched) / 1024:8.1f} KiB  "
              f"untouched runs (KiB offset, KiB) {untouched_runs(bits)[:8]}")
    for line in stderr.splitlines():
        if line.startswith(("stats: planned", "stats: peak")):
            print(line)


if __name__ == "__main__":
    main()
