#!/usr/bin/env python3
"""Peak RSS of a one-shot at a long context: llama-cli prompt next to llama-server (issue 12).

For each model and context: `llama-cli prompt -c N` on a prompt that fills most of the context
(peak RSS: the child's ru_maxrss, its VmHWM), then `llama-server -c N -np 1` answering the same
prompt once (peak RSS: VmHWM from /proc/PID/status after the answer). Same context, one sequence,
f16 cache, sliding-window layers capped (both defaults), flash attention auto, 2 threads; the two
programs alternate, `--rounds` times.

usage: scripts/bench_memory_vs_server.py LLAMA_CLI REFERENCE_BIN_DIR MODEL:CTX[:TOKENS_PER_CHAR] ...
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_ours(cli, model, ctx, prompt, threads):
    proc = subprocess.Popen([cli, "prompt", "-m", model, "--raw", "-n", "16", "--temp", "0", "--ignore-eos",
                             "-c", str(ctx), "-t", str(threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(prompt.encode())
    proc.stdin.close()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit("llama-cli failed: %s" % err.decode()[-400:])
    return usage.ru_maxrss * 1024


def run_server(bindir, model, ctx, prompt, threads):
    port = free_port()
    proc = subprocess.Popen([os.path.join(bindir, "llama-server"), "-m", model, "-c", str(ctx), "-np", "1",
                             "-t", str(threads), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.2)
        body = json.dumps({"prompt": prompt, "n_predict": 16, "temperature": 0, "ignore_eos": True}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/completion" % port, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SystemExit("llama-server refused %s -c %d: %s" % (model, ctx, e.read()[:300]))
        return vm_hwm(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("bindir")
    ap.add_argument("cases", nargs="+", help="MODEL:CTX[:WORD] (the prompt repeats WORD)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print("| model | -c | prompt | llama-server peak RSS (MiB) | llama-cli prompt peak RSS (MiB) | ratio |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for case in a.cases:
        parts = case.split(":")
        model, ctx = parts[0], int(parts[1])
        word = parts[2] if len(parts) > 2 else "x"
        # About 3/4 of the context: whole words for SmolLM2 ("hello " is one token), single
        # bytes for the generated models' byte-level vocabulary.
        n = ctx * 3 // 4
        prompt = (word + " ") * n if word != "x" else "x" * n
        ref, us = [], []
        for _ in range(a.rounds):
            ref.append(run_server(a.bindir, model, ctx, prompt, a.threads))
            us.append(run_ours(a.cli, model, ctx, prompt, a.threads))
        r, o = max(ref), max(us)
        print("| %s | %d | %s x %d | %.1f | %.1f | %.3f |" % (os.path.basename(model), ctx, word, n,
                                                       r / 2**20, o / 2**20, o / r))


if __name__ == "__main__":
    main()
