#!/usr/bin/env python3
"""Model switching: `llama-cli serve` without -m next to llama-server's router, same run.

Both servers serve the same models directory (the files given with --model, linked into a
temporary directory as m0.gguf, m1.gguf, ...), with room for one model at a time: ours with
--max-mem (a budget that holds one), llama-server with --models-max 1. Requests alternate
between the models, so every request is a switch: the model asked for is loaded after the other
is unloaded. Each request streams a greedy completion; measured on the client: the time to the
first text (first-token latency after a switch, which includes the switch) and to the end.
A warm request (the same model again) is measured too. The servers take turns within each
round (the order alternates), so both see the same machine state; the ratios are same-run.

Standard library only. Example:

  scripts/router-bench.py --binary target/debug/llama-cli \
      --llama-server ~/.cache/llama-cpp-reference/llama.cpp/build/bin/llama-server \
      --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --max-mem 200M --rounds 5
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def start(cmd, env, ready_path, port):
    """Starts a server and waits until ready_path answers 200."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            sys.exit(f"server exited: {' '.join(cmd)}\n{log.read().decode(errors='replace')}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", ready_path)
            if c.getresponse().status == 200:
                return proc, log
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"server did not start: {' '.join(cmd)}")


def stream_completion(port, model, prompt, max_tokens):
    """One streamed greedy completion: (seconds to the first text, seconds to the end)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True})
    started = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{model}: {r.status} {r.read()[:300]!r}")
    first = None
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    continue
                try:
                    text = json.loads(data)["choices"][0].get("text", "")
                except (ValueError, KeyError, IndexError):
                    text = ""
                if text and first is None:
                    first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started,
            time.perf_counter() - started)


def peak_rss_tree(pid):
    """The RSS of pid and its descendants, in bytes."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    total += peak_rss_tree(int(child))
    except OSError:
        pass
    return total


class Sampler(threading.Thread):
    """Samples a process tree's RSS every 20 ms and keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, peak_rss_tree(self.pid))
            time.sleep(0.02)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--llama-server", required=True)
    p.add_argument("--model", action="append", required=True, help="two or more GGUF files")
    p.add_argument("--max-mem", default="200M", help="our budget: room for one model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--threads", default="2")
    args = p.parse_args()
    if len(args.model) < 2:
        sys.exit("give two or more --model files")
    work = tempfile.TemporaryDirectory()
    models_dir = os.path.join(work.name, "models")
    os.mkdir(models_dir)
    names = []
    for k, path in enumerate(args.model):
        name = f"m{k}"
        os.symlink(os.path.abspath(path), os.path.join(models_dir, name + ".gguf"))
        names.append(name)
    env = dict(os.environ, HF_HOME=os.path.join(work.name, "hf"),
               LLAMA_CACHE=os.path.join(work.name, "llama-cache"), OMP_WAIT_POLICY="PASSIVE")
    env.pop("RUST_LOG", None)
    ours_port, ref_port = 18701, 18702
    common = ["-c", "512", "-t", args.threads]
    ours_cmd = [args.binary, "serve", "--models-dir", models_dir, "--no-models-store",
                "--max-mem", args.max_mem, "--host", "127.0.0.1", "--port", str(ours_port),
                "--parallel", "1"] + common
    ref_cmd = [args.llama_server, "--models-dir", models_dir, "--models-max", "1",
               "--host", "127.0.0.1", "--port", str(ref_port), "-np", "1"] + common
    servers = {}
    for label, cmd, port, ready in [("llama-cli", ours_cmd, ours_port, "/v1/models"),
                                    ("llama-server", ref_cmd, ref_port, "/models")]:
        proc, log = start(cmd, env, ready, port)
        sampler = Sampler(proc.pid)
        sampler.start()
        servers[label] = {"proc": proc, "log": log, "port": port, "sampler": sampler,
                          "switch_first": [], "switch_total": [], "warm_first": [],
                          "warm_total": []}
    prompt = "The capital of France is"
    try:
        # One load of each model first, so that the files are in the page cache for both.
        for s in servers.values():
            for name in names:
                stream_completion(s["port"], name, prompt, 1)
        order = list(servers)
        for r in range(args.rounds):
            for label in (order if r % 2 == 0 else order[::-1]):
                s = servers[label]
                # The last model used is names[-1]: each of these is a switch.
                for name in names:
                    first, total = stream_completion(s["port"], name, prompt, args.max_tokens)
                    s["switch_first"].append(first)
                    s["switch_total"].append(total)
                first, total = stream_completion(s["port"], names[-1], prompt, args.max_tokens)
                s["warm_first"].append(first)
                s["warm_total"].append(total)
    finally:
        for s in servers.values():
            s["sampler"].stop = True
            s["proc"].terminate()
            try:
                s["proc"].wait(timeout=15)
            except subprocess.TimeoutExpired:
                s["proc"].kill()
    med = lambda xs: statistics.median(xs) * 1000
    print(f"models: {', '.join(args.model)}; rounds {args.rounds}, {args.max_tokens} tokens, "
          f"threads {args.threads}")
    print(f"llama-cli:    {' '.join(ours_cmd)}")
    print(f"llama-server: {' '.join(ref_cmd)}")
    print(f"{'':14}{'switch: first token':>22}{'switch: whole answer':>22}"
          f"{'warm: first token':>20}{'peak RSS (tree)':>18}")
    for label, s in servers.items():
        print(f"{label:14}{med(s['switch_first']):>19.1f} ms{med(s['switch_total']):>19.1f} ms"
              f"{med(s['warm_first']):>17.1f} ms{s['sampler'].peak / 2**20:>14.1f} MiB")
    o, ref = servers["llama-cli"], servers["llama-server"]
    print("ratio llama-cli / llama-server (median, < 1: llama-cli faster): "
          f"switch first token {med(o['switch_first']) / med(ref['switch_first']):.2f}, "
          f"switch whole answer {med(o['switch_total']) / med(ref['switch_total']):.2f}, "
          f"warm first token {med(o['warm_first']) / med(ref['warm_first']):.2f}")


if __name__ == "__main__":
    main()
