#!/usr/bin/env python3
"""Side-by-side benchmarks of llama-cli against llama.cpp's own tools, measured in one run.

1. Throughput: `llama-cli bench` vs `llama-bench` (pp512, tg128), interleaved rounds, ratio.
2. One-shot prompt as a process (start, load, generate 32 tokens, exit): wall time and peak RSS
   (the child's ru_maxrss, i.e. its VmHWM) of `llama-cli prompt --raw` vs `llama-simple`.

usage: scripts/bench_vs_llama_cpp.py LLAMA_CLI REFERENCE_BIN_DIR MODEL [--threads 2] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def bench_ours(cli, model, threads, reps):
    out = subprocess.run([cli, "bench", "-m", model, "-t", str(threads), "-p", "512", "-n", "128",
                          "-r", str(reps), "--json"], check=True, capture_output=True, text=True).stdout
    return {row["test"]: row["avg_ts"] for row in json.loads(out)}


def bench_ref(bindir, model, threads, reps):
    out = subprocess.run([os.path.join(bindir, "llama-bench"), "-m", model, "-t", str(threads), "-p", "512",
                          "-n", "128", "-r", str(reps), "-o", "json"], check=True, capture_output=True,
                         text=True).stdout
    rows = json.loads(out)
    return {("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"]): r["avg_ts"] for r in rows}


def run_process(argv):
    """Runs argv, returns (wall seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit("failed: %s" % " ".join(argv))
    return wall, usage.ru_maxrss * 1024, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("bindir")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    ours, ref = {"pp512": [], "tg128": []}, {"pp512": [], "tg128": []}
    for _ in range(a.rounds):
        for k, v in bench_ref(a.bindir, a.model, a.threads, a.reps).items():
            ref[k].append(v)
        for k, v in bench_ours(a.cli, a.model, a.threads, a.reps).items():
            ours[k].append(v)
    print("## Throughput (t/s, mean of %d rounds x %d repetitions, %d threads)" % (a.rounds, a.reps, a.threads))
    print("| test | llama-bench | llama-cli bench | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for test in ("pp512", "tg128"):
        r, o = statistics.mean(ref[test]), statistics.mean(ours[test])
        print("| %s | %.2f | %.2f | %.3f |" % (test, r, o, o / r))

    prompt = "The history of the printing press begins"
    ref_argv = [os.path.join(a.bindir, "llama-simple"), "-m", a.model, "-n", "32", prompt]
    ours_argv = [a.cli, "prompt", "--raw", "-m", a.model, "-n", "32", "--temp", "0", "-t", str(a.threads)]
    rows = []
    for name, argv in (("llama-simple", ref_argv),
                       ("llama-cli prompt -c 256", ours_argv + ["-c", "256", prompt]),
                       ("llama-cli prompt (default -c 4096)", ours_argv + [prompt])):
        runs = [run_process(argv) for _ in range(a.rounds)]
        rows.append((name, statistics.median(r[0] for r in runs), max(r[1] for r in runs)))
    print()
    print("## One-shot prompt, 32 tokens, whole process (median wall time, max peak RSS of %d runs)" % a.rounds)
    print("| program | wall time (s) | peak RSS (MiB) |")
    print("| --- | ---: | ---: |")
    for name, wall, rss in rows:
        print("| %s | %.3f | %.1f |" % (name, wall, rss / 2**20))


if __name__ == "__main__":
    main()
