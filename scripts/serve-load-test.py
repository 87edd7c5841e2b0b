#!/usr/bin/env python3
"""Bounded load test of `llama-cli serve` on loopback (Python standard library only).

Starts the server (`--port 0`, `--max-mem`), then runs CLIENTS concurrent clients for DURATION
seconds. Each client loops (until the deadline) over requests of mixed prompt lengths, streaming
or not; some stream and disconnect after a few chunks. A 429 (queue full) is deliberate
backpressure: the client waits Retry-After and goes on. Meanwhile the server's peak RSS
(/proc/PID/status VmHWM) is sampled. At the end /metrics is compared with what the clients saw.

Fails (exit 1) on: any status other than 200 and 429, a stream that ends without [DONE], a
malformed response, peak RSS over --max-mem, a budget-exceeded event, or /metrics disagreeing
with the clients' counts.

    usage: scripts/serve-load-test.py --binary target/release/llama-cli \
               --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
               [--clients 32] [--duration 60] [--max-mem 512M] [--parallel 4] [--ctx-size 1024] \
               [--queue 16] [--threads 2]
"""

import argparse
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

SHORT = "What is the capital of France?"
MEDIUM = ("Summarise the following in one sentence. " +
          "The river flows through the valley, past farms and small towns, and reaches the sea "
          "after a long journey through forests and hills. " * 3)
LONG = ("Read this text and answer the question at the end. " +
        "In the early morning the market fills with traders who bring vegetables, fruit, fish "
        "and bread from the surrounding villages; by noon most stalls are empty again. " * 9 +
        "Question: when is the market busiest?")
PROMPTS = [("short", SHORT), ("medium", MEDIUM), ("long", LONG)]
PLANNED = 'llama_memory_planned_bytes{part="total"}'


def parse_size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def start_server(args):
    cmd = [args.binary, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", "0",
           "--max-mem", args.max_mem, "--parallel", str(args.parallel),
           # serve's -c is all sequences' context together (llama-server's meaning).
           "-c", str(args.ctx_size * args.parallel),
           "-t", str(args.threads), "--queue", str(args.queue)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    found, ready = {}, threading.Event()
    log = []

    def pump():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if m and not ready.is_set():
                found["port"] = int(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120) or "port" not in found:
        proc.kill()
        sys.exit("the server did not start:\n" + "".join(log))
    return proc, found["port"], " ".join(cmd), log


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = Counter()          # (endpoint, status) -> n
        self.completion_tokens = 0       # from usage of answers read to the end
        self.prompt_tokens = 0
        self.disconnects = 0
        self.completed = 0
        self.failures = []
        self.by_length = Counter()

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def one_request(port, totals, rng, deadline):
    kind, prompt = rng.choice(PROMPTS)
    chat = rng.random() < 0.7
    stream = rng.random() < 0.6
    disconnect = stream and rng.random() < 0.2
    max_tokens = 200 if disconnect else rng.choice([8, 16, 32, 64])
    path = "/v1/chat/completions" if chat else "/v1/completions"
    endpoint = "chat_completions" if chat else "completions"
    body = {"max_tokens": max_tokens, "temperature": rng.choice([0, 0.7]), "seed": rng.randrange(1000),
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        with totals.lock:
            totals.status[(endpoint, resp.status)] += 1
            totals.by_length[kind] += 1
        if resp.status == 429:
            resp.read()
            retry = float(resp.getheader("retry-after", "1"))
            time.sleep(min(retry + rng.random(), max(0.0, deadline - time.time())))
            return
        if resp.status != 200:
            totals.add(failures=[f"{path} -> {resp.status}: {resp.read()[:300]!r}"])
            return
        if not stream:
            data = json.loads(resp.read())
            usage = data["usage"]
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
            totals.add(completion_tokens=usage["completion_tokens"],
                       prompt_tokens=usage["prompt_tokens"], completed=1)
            return
        chunks, usage, done = 0, None, False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            event = json.loads(payload)
            if "error" in event:
                totals.add(failures=[f"{path}: stream error {event['error']}"])
                return
            if event.get("usage"):
                usage = event["usage"]
            chunks += 1
            if disconnect and chunks >= 3:
                totals.add(disconnects=1)
                conn.sock.shutdown(socket.SHUT_RDWR)  # go away mid-stream
                return
        if not done or usage is None:
            totals.add(failures=[f"{path}: stream ended without [DONE]/usage after {chunks} chunks"])
            return
        totals.add(completion_tokens=usage["completion_tokens"],
                   prompt_tokens=usage["prompt_tokens"], completed=1)
    except Exception as e:  # noqa: BLE001 - every exception is a failure to report
        totals.add(failures=[f"{path}: {type(e).__name__}: {e}"])
    finally:
        conn.close()


def client(port, totals, seed, deadline, max_requests):
    rng = random.Random(seed)
    for _ in range(max_requests):  # bounded
        if time.time() >= deadline:
            return
        one_request(port, totals, rng, deadline)


def read_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) * 1024
    return out


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    metrics = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        metrics[name] = float(value)
    return metrics


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--max-mem", default="512M")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--ctx-size", type=int, default=1024, help="context per sequence")
    p.add_argument("--queue", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-requests-per-client", type=int, default=10_000)
    args = p.parse_args()
    budget = parse_size(args.max_mem)

    proc, port, cmd, log = start_server(args)
    peak = {"VmHWM": 0, "VmRSS": 0}
    stop = threading.Event()

    def monitor():
        while not stop.wait(0.25):
            try:
                s = read_status(proc.pid)
            except OSError:
                return
            for k in peak:
                peak[k] = max(peak[k], s.get(k, 0))

    threading.Thread(target=monitor, daemon=True).start()
    totals = Totals()
    started = time.time()
    deadline = started + args.duration
    threads = [threading.Thread(target=client, args=(port, totals, i, deadline, args.max_requests_per_client))
               for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 300)
    elapsed = time.time() - started
    hung = sum(t.is_alive() for t in threads)
    time.sleep(2)  # let the server notice the last disconnects
    metrics = scrape(port)
    stop.set()
    try:
        final = read_status(proc.pid)
        peak["VmHWM"] = max(peak["VmHWM"], final.get("VmHWM", 0))
    except OSError:
        pass
    proc.terminate()
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "killed"

    problems = list(totals.failures)
    if hung:
        problems.append(f"{hung} client(s) still running after the deadline")
    for (endpoint, status), n in sorted(totals.status.items()):
        key = f'llama_requests_total{{endpoint="{endpoint}",status="{status}"}}'
        if metrics.get(key, 0) != n:
            problems.append(f"{key}: metrics {metrics.get(key, 0):.0f}, clients saw {n}")
    server_tokens = metrics.get("llama_completion_tokens_total", -1)
    # Requests the clients abandoned are never counted by the server, so the sums must agree.
    if server_tokens != totals.completion_tokens:
        problems.append(f"completion tokens: metrics {server_tokens:.0f}, clients {totals.completion_tokens}")
    cancelled = metrics.get("llama_engine_requests_cancelled_total", 0)
    if cancelled < totals.disconnects:
        problems.append(f"cancelled {cancelled:.0f} < disconnects {totals.disconnects}")
    if metrics.get("llama_budget_exceeded_events_total", 0) != 0:
        problems.append("budget exceeded events reported")
    if peak["VmHWM"] > budget:
        problems.append(f"peak RSS {peak['VmHWM']} over --max-mem {budget}")
    if metrics.get("llama_requests_active", 0) != 0 or metrics.get("llama_queue_depth", 0) != 0:
        problems.append("requests still active or queued after the run")
    if rc != 0:
        problems.append(f"server exit code after SIGTERM: {rc}")

    ok = sum(n for (e, s), n in totals.status.items() if s == 200)
    rejected = sum(n for (e, s), n in totals.status.items() if s == 429)
    mib = lambda b: b / (1 << 20)  # noqa: E731
    print(f"command: {cmd}")
    print(f"clients {args.clients}, {elapsed:.1f} s; requests: {ok} answered 200 "
          f"({totals.completed} read to the end, {totals.disconnects} disconnected early), "
          f"{rejected} refused 429; prompts by length {dict(totals.by_length)}")
    print(f"tokens: {totals.completion_tokens} generated for completed requests "
          f"({totals.completion_tokens / elapsed:.1f}/s), {totals.prompt_tokens} prompt; "
          f"engine generated {metrics.get('llama_engine_generated_tokens_total', 0):.0f} incl. cancelled")
    print(f"engine: cancelled {cancelled:.0f}, finished {metrics.get('llama_engine_requests_finished_total', 0):.0f}, "
          f"evictions {metrics.get('llama_kv_evictions_total', 0):.0f}, "
          f"KV blocks used/free at end {metrics.get('llama_kv_blocks_used', 0):.0f}/{metrics.get('llama_kv_blocks_free', 0):.0f}")
    print(f"memory: peak RSS {mib(peak['VmHWM']):.1f} MiB (VmHWM) vs --max-mem {mib(budget):.1f} MiB; "
          f"planned {mib(metrics.get(PLANNED, 0)):.1f} MiB; "
          f"budget-exceeded events {metrics.get('llama_budget_exceeded_events_total', 0):.0f}")
    print(f"failures (other than 429): {len(totals.failures)}")
    for problem in problems[:20]:
        print(f"  problem: {problem}")
    print("PASS" if not problems else "FAIL")
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
