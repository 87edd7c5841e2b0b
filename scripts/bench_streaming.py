#!/usr/bin/env python3
"""Layer streaming benchmark (issue #6), measured in one run.

For each budget, and for the fully resident run, generation tokens/s, disk bytes read per
generated token and peak RSS of:
  - llama-cli, resident (`--stream off -c 512`, no budget),
  - llama-cli streaming at `--max-mem BUDGET`,
  - llama.cpp's `llama-bench` with its plain mmap load (`-lm mmap --repack 0`), unconstrained,
  - the same inside a memory cgroup (v1) limited to BUDGET: the kernel keeps its RSS and page
    cache under the budget by evicting and re-reading pages (skipped when no cgroup can be made).
Disk bytes per token are the difference between a long and a short run of the same
configuration (`read_bytes` of /proc/self/io, which includes reaped children), divided by the
difference in generated tokens, so loading and warm-up cancel out.

The disk-read limit of a streaming run is the sequential read bandwidth of the model file
(buffered reads after dropping its pages from the page cache, measured before each streaming
run) divided by its bytes per token; the run's tokens/s is reported as a fraction of it.

usage: scripts/bench_streaming.py LLAMA_CLI REFERENCE_BIN_DIR MODEL [--budgets 84M,90M,110M]
       [--threads 2] [--rounds 3] [--short 32] [--long 160]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

PROMPT = "Tell me a story about a lighthouse keeper."


def disk_read_bytes():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    raise SystemExit("no read_bytes in /proc/self/io")


def drop_file_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sequential_read_bandwidth(path, seconds=3.0):
    """Sequential read bandwidth of `path` from storage in bytes/s, over whole-file reads
    repeated for `seconds` (the disk of a virtual machine is bursty: one 100 MB read is not a
    measurement). O_DIRECT reads of 4 MiB into one aligned buffer, as `dd iflag=direct bs=4M`;
    buffered reads after dropping the file's pages where O_DIRECT is refused."""
    import mmap
    buf = mmap.mmap(-1, 4 << 20)
    total = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        drop_file_cache(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                n = os.readv(fd, [buf])
                if n <= 0:
                    break
                total += n
        finally:
            os.close(fd)
    bandwidth = total / (time.perf_counter() - start)
    drop_file_cache(path)
    return bandwidth


def parse_size(text):
    m = re.fullmatch(r"([\d.]+)\s*([KMG]?)(i?B)?", text.strip())
    if not m:
        raise SystemExit("bad size %r" % text)
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


class Cgroup:
    """A memory cgroup (v1) with a hard limit, or None when one cannot be made."""

    ROOT = "/sys/fs/cgroup/memory"

    def __init__(self, limit):
        self.path = os.path.join(self.ROOT, "llama-rs-bench-%d" % os.getpid())
        os.mkdir(self.path)
        with open(os.path.join(self.path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))

    @classmethod
    def make(cls, limit):
        try:
            return cls(limit)
        except OSError:
            return None

    def enter(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def ours(cli, model, threads, n, budget):
    argv = [cli, "prompt", "-m", model, "-t", str(threads), "-n", str(n), "--temp", "0",
            "--ignore-eos", "--stats", PROMPT]
    # The resident run at a context like llama-bench's (its -n), the others as planned.
    argv += ["--max-mem", budget] if budget else ["--stream", "off", "-c", "512"]
    out, err, _, read = run_with_rss(argv)
    m = re.search(r"generation (\d+) tokens in ([\d.]+) s", err)
    return {"tokens": int(m.group(1)), "seconds": float(m.group(2)), "read": read,
            "peak_rss": parse_size(re.search(r"peak RSS ([\d.]+ \w+)", err).group(1)),
            "stats": [l for l in err.splitlines() if l.startswith("stats: streaming")]}


def reference(bindir, model, threads, n, cgroup=None):
    argv = [os.path.join(bindir, "llama-bench"), "-m", model, "-t", str(threads), "-p", "0",
            "-n", str(n), "-r", "1", "-lm", "mmap", "--repack", "0", "-o", "json"]
    out, _, peak, read = run_with_rss(argv, cgroup)
    row = json.loads(out)[0]
    return {"tokens": n, "seconds": n / row["avg_ts"], "read": read, "peak_rss": peak}


def run_with_rss(argv, cgroup=None):
    before = disk_read_bytes()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=cgroup.enter if cgroup else None)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit("failed (status %d): %s\n%s" % (status, " ".join(argv), err[-2000:]))
    return out, err, usage.ru_maxrss * 1024, disk_read_bytes() - before


def per_token(short, long_):
    """tokens/s of the long run and disk bytes per token from the difference of the two."""
    tokens = long_["tokens"] - short["tokens"]
    return long_["tokens"] / long_["seconds"], max(0, long_["read"] - short["read"]) / tokens


def mib(b):
    return "%.1f MiB" % (b / (1 << 20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("bindir")
    ap.add_argument("model")
    ap.add_argument("--budgets", default="84M,90M,110M")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--short", type=int, default=32)
    ap.add_argument("--long", type=int, default=160)
    a = ap.parse_args()
    budgets = [b for b in a.budgets.split(",") if b]

    rows = {}

    def add(name, short, long_, bandwidth=None):
        ts, bpt = per_token(short, long_)
        r = rows.setdefault(name, {"ts": [], "bpt": [], "rss": [], "frac": [], "bw": [], "stats": []})
        r["ts"].append(ts)
        r["bpt"].append(bpt)
        r["rss"].append(max(short["peak_rss"], long_["peak_rss"]))
        r["stats"] += long_.get("stats", [])
        if bandwidth and bpt > 0:
            r["bw"].append(bandwidth)
            r["frac"].append(ts / (bandwidth / bpt))

    for _ in range(a.rounds):
        add("llama-cli resident", ours(a.cli, a.model, a.threads, a.short, None),
            ours(a.cli, a.model, a.threads, a.long, None))
        drop_file_cache(a.model)
        add("llama-bench mmap, no limit", reference(a.bindir, a.model, a.threads, a.short),
            reference(a.bindir, a.model, a.threads, a.long))
        for budget in budgets:
            bw_before = sequential_read_bandwidth(a.model)
            short = ours(a.cli, a.model, a.threads, a.short, budget)
            long_ = ours(a.cli, a.model, a.threads, a.long, budget)
            bw = (bw_before + sequential_read_bandwidth(a.model)) / 2
            add("llama-cli --max-mem %s" % budget, short, long_, bw)
            runs = []
            for n in (a.short, a.long):
                drop_file_cache(a.model)
                cg = Cgroup.make(parse_size(budget))
                if cg is None:
                    break
                try:
                    r = reference(a.bindir, a.model, a.threads, n, cg)
                    runs.append(r)
                finally:
                    cg.remove()
            if len(runs) == 2:
                add("llama-bench mmap, cgroup limit %s" % budget, runs[0], runs[1], bw)

    print("## Layer streaming: SmolLM2-135M Q4_1, %d threads, median of %d rounds" % (a.threads, a.rounds))
    print()
    print("| run | tg t/s | disk read per token | peak RSS | seq. read bandwidth | fraction of disk-read limit (min-max) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    med = statistics.median
    for name, r in rows.items():
        bw = "%.0f MB/s" % (med(r["bw"]) / 1e6) if r["bw"] else "-"
        frac = "%.2f (%.2f-%.2f)" % (med(r["frac"]), min(r["frac"]), max(r["frac"])) if r["frac"] else "-"
        print("| %s | %.1f | %s | %s | %s | %s |" % (name, med(r["ts"]), mib(med(r["bpt"])),
                                                   mib(max(r["rss"])), bw, frac))
    print()
    for name, r in rows.items():
        for line in r["stats"][:1]:
            print("%s: `%s`" % (name, line))


if __name__ == "__main__":
    main()
