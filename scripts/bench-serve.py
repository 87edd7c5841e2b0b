#!/usr/bin/env python3
"""Server benchmark: `llama-cli serve` next to llama.cpp's `llama-server`, same model, threads and
parallel slots, measured in the same run (Python standard library only, loopback only).

Both servers run side by side. For each concurrency level C and each repetition, C workers send
streaming chat requests (greedy, fixed max_tokens, distinct prompts, the same list for both
servers) until REQUESTS have been answered, first to one server, then to the other (the order
alternates between repetitions). Reported per level: requests/s and aggregate generated
tokens/s (median of the repetitions), and time to first token (first content chunk) p50 / p99
over all the level's requests (nearest rank).

    usage: scripts/bench-serve.py --binary target/release/llama-cli \
               --llama-server "$(bash ../shared/tools/build-llama-cpp-reference.sh | tail -1)/llama-server" \
               --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
               [--threads 2] [--parallel 8] [--ctx-per-slot 512] [--concurrency 1,4,8] \
               [--requests 24] [--max-tokens 64] [--repetitions 3] [--json out.json]
"""

import argparse
import http.client
import json
import math
import queue
import re
import socket
import subprocess
import sys
import threading
import time

TOPICS = ["a lighthouse keeper", "a lost robot", "the first snow", "a city under the sea",
          "a clockmaker's apprentice", "a dragon who fears heights", "an empty train station",
          "a garden on Mars", "the last bookshop", "a fox and a crow", "a kite festival",
          "a forgotten key", "a storm at sea", "a violin in the attic", "a bakery at dawn",
          "a map with no names"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            if ok:
                return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def start(name, args, port):
    # -c is the total of all slots, for both (serve took llama-server's meaning).
    if name == "llama-cli serve":
        cmd = [args.binary, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
               "-t", str(args.threads), "--parallel", str(args.parallel),
               "-c", str(args.ctx_per_slot * args.parallel), "--queue", "256"]
    else:
        cmd = [args.llama_server, "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
               "-t", str(args.threads), "-np", str(args.parallel),
               "-c", str(args.ctx_per_slot * args.parallel)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_healthy(port, proc):
        proc.kill()
        sys.exit(f"{name} did not start: {' '.join(cmd)}")
    return proc, " ".join(cmd)


def one(port, prompt, max_tokens):
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {resp.read()[:200]!r}")
    ttft, pieces, usage = None, 0, None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            break
        event = json.loads(payload)
        if event.get("usage"):
            usage = event["usage"]
        for ch in event.get("choices") or []:
            if (ch.get("delta") or {}).get("content"):
                pieces += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    conn.close()
    tokens = usage["completion_tokens"] if usage else pieces
    return ttft if ttft is not None else time.perf_counter() - t0, tokens


def percentile(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def level(port, concurrency, n_requests, max_tokens, offset):
    """Runs one level; returns (wall seconds, [(ttft, tokens)], errors)."""
    work = queue.Queue()
    for i in range(n_requests):
        topic = TOPICS[(offset + i) % len(TOPICS)]
        work.put(f"Request {offset + i}. Write a short story about {topic}.")
    results, errors, lock = [], [], threading.Lock()

    def worker():
        while True:
            try:
                prompt = work.get_nowait()
            except queue.Empty:
                return
            try:
                r = one(port, prompt, max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results, errors


def summarise(name, concurrency, runs, cmd):
    """Median of the repetitions' rates; TTFT percentiles over all their requests."""
    rates = sorted((len(r) / wall, sum(x[1] for x in r) / wall) for wall, r, _ in runs)
    mid = rates[len(rates) // 2] if len(rates) % 2 else tuple(
        (a + b) / 2 for a, b in zip(rates[len(rates) // 2 - 1], rates[len(rates) // 2]))
    ttfts = [x[0] for _, r, _ in runs for x in r]
    return {
        "server": name, "command": cmd, "concurrency": concurrency,
        "repetitions": len(runs), "requests": sum(len(r) for _, r, _ in runs),
        "errors": sum(len(e) for _, _, e in runs),
        "req_per_s": round(mid[0], 3), "tok_per_s": round(mid[1], 2),
        "tok_per_s_each": [round(sum(x[1] for x in r) / wall, 1) for wall, r, _ in runs],
        "ttft_p50_ms": round(percentile(ttfts, 50) * 1000, 1) if ttfts else None,
        "ttft_p99_ms": round(percentile(ttfts, 99) * 1000, 1) if ttfts else None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--llama-server", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--ctx-per-slot", type=int, default=512)
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--requests", type=int, default=24, help="requests per level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repetitions", type=int, default=3, help="runs of each level per server")
    p.add_argument("--json")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    version = subprocess.run([args.llama_server, "--version"], capture_output=True, text=True)
    ref_version = (version.stdout + version.stderr).strip().splitlines()
    report = {"llama_server_version": [l for l in ref_version if "version" in l][:1], "runs": []}
    names = ["llama-cli serve", "llama-server"]
    servers = {}
    try:
        # Both run for the whole benchmark (an idle server uses no CPU); the levels interleave
        # them, alternating which goes first, so drifts of the machine hit both alike.
        for name in names:
            port = free_port()
            servers[name] = (port,) + start(name, args, port)
        for name in names:
            level(servers[name][0], 2, 2, 8, 1000)  # warm-up, not reported
        for c in levels:
            runs = {name: [] for name in names}
            for rep in range(args.repetitions):
                order = names if rep % 2 == 0 else names[::-1]
                for name in order:
                    # Distinct prompts per level and repetition, the same for both servers.
                    runs[name].append(level(servers[name][0], c, args.requests, args.max_tokens,
                                            offset=100 * c + 1000 * rep))
            for name in names:
                r = summarise(name, c, runs[name], servers[name][2])
                report["runs"].append(r)
                print(f"{name:16} c={c:<2} {r['requests']:3} req ({r['errors']} errors) "
                      f"{r['req_per_s']:6.2f} req/s {r['tok_per_s']:7.1f} tok/s {r['tok_per_s_each']} "
                      f"TTFT p50 {r['ttft_p50_ms']} ms p99 {r['ttft_p99_ms']} ms", flush=True)
    finally:
        for port, proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print()
    print("| server | concurrency | requests | req/s | tokens/s | TTFT p50 (ms) | TTFT p99 (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in report["runs"]:
        print(f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r['req_per_s']:.2f} | "
              f"{r['tok_per_s']:.1f} | {r['ttft_p50_ms']} | {r['ttft_p99_ms']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if any(r["errors"] for r in report["runs"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
