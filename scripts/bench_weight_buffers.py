#!/usr/bin/env python3
"""Speed by where the weights go (issue 10), llama-cli against llama-bench in one run.

For each model, interleaved rounds of:
  - llama-bench with its defaults (extra buffer types on) and llama-bench --repack 0,
  - llama-cli bench (default: CPU_REPACK on, AMX off) and llama-cli bench --no-repack.

On a CPU with AMX, llama-bench's default crashes (llama.cpp #20824), so it is left out and
llama-cli bench is compared with llama-bench --repack 0, the only reference configuration that
runs there.

usage: scripts/bench_weight_buffers.py LLAMA_CLI REFERENCE_BIN_DIR MODEL [MODEL ...]
           [--threads 2] [--rounds 3] [--reps 3]
"""
import argparse
import json
import os
import statistics
import subprocess


def cpu_has_amx():
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in ("amx_int8", "amx_tile") for line in f if line.startswith("flags")
                       for flag in line.split())
    except OSError:
        return False


def bench_ours(cli, model, threads, reps, extra):
    out = subprocess.run([cli, "bench", "-m", model, "-t", str(threads), "-p", "512", "-n", "128",
                          "-r", str(reps), "--json"] + extra, check=True, capture_output=True,
                         text=True).stdout
    return {row["test"]: row["avg_ts"] for row in json.loads(out)}


def bench_ref(bindir, model, threads, reps, extra):
    out = subprocess.run([os.path.join(bindir, "llama-bench"), "-m", model, "-t", str(threads), "-p", "512",
                          "-n", "128", "-r", str(reps), "-o", "json"] + extra, check=True,
                         capture_output=True, text=True).stdout
    return {("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"]): r["avg_ts"]
            for r in json.loads(out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("bindir")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    amx = cpu_has_amx()
    configs = [("llama-bench --repack 0", lambda m: bench_ref(a.bindir, m, a.threads, a.reps, ["--repack", "0"])),
               ("llama-cli bench --no-repack", lambda m: bench_ours(a.cli, m, a.threads, a.reps, ["--no-repack"])),
               ("llama-cli bench", lambda m: bench_ours(a.cli, m, a.threads, a.reps, []))]
    if not amx:
        configs.insert(0, ("llama-bench", lambda m: bench_ref(a.bindir, m, a.threads, a.reps, [])))
    print("CPU with AMX: %s; %d threads, mean of %d rounds x %d repetitions, interleaved"
          % ("yes" if amx else "no", a.threads, a.rounds, a.reps))
    for model in a.models:
        figures = {name: {"pp512": [], "tg128": []} for name, _ in configs}
        for _ in range(a.rounds):
            for name, run in configs:
                for test, value in run(model).items():
                    figures[name][test].append(value)
        mean = {name: {t: statistics.mean(v) for t, v in f.items()} for name, f in figures.items()}
        reference = "llama-bench --repack 0" if amx else "llama-bench"
        print()
        print("### %s" % os.path.basename(model))
        print()
        print("| configuration | pp512 t/s | tg128 t/s | pp512 / %s | tg128 / %s |" % (reference, reference))
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, _ in configs:
            m = mean[name]
            print("| %s | %.2f | %.2f | %.3f | %.3f |" % (
                name, m["pp512"], m["tg128"], m["pp512"] / mean[reference]["pp512"],
                m["tg128"] / mean[reference]["tg128"]))
        print()
        print("same weights placement: llama-cli bench / llama-bench%s = pp512 %.3f, tg128 %.3f; "
              "--no-repack / --repack 0 = pp512 %.3f, tg128 %.3f" % (
                  " --repack 0 (AMX CPU)" if amx else "",
                  mean["llama-cli bench"]["pp512"] / mean[reference]["pp512"],
                  mean["llama-cli bench"]["tg128"] / mean[reference]["tg128"],
                  mean["llama-cli bench --no-repack"]["pp512"] / mean["llama-bench --repack 0"]["pp512"],
                  mean["llama-cli bench --no-repack"]["tg128"] / mean["llama-bench --repack 0"]["tg128"]))


if __name__ == "__main__":
    main()
