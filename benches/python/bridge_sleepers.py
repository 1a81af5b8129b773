"""Time, peak RSS and OS threads for N virtual threads that each sleep once.

Usage: python benches/python/bridge_sleepers.py [N] [SECONDS] [WORKERS]
"""

from __future__ import annotations

import os
import resource
import sys
import time

import ringloom
from ringloom import Loom, _native


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2

    def sleeper(i: int) -> int:
        _native.sleep(seconds)
        return i

    loom = Loom(workers=workers)
    before = rss_kib()
    start = time.perf_counter()
    futures = [ringloom.submit(loom, sleeper, i) for i in range(n)]
    submitted = time.perf_counter() - start
    peak_threads = 0
    peak_rss = before
    while not futures[-1].done():
        peak_threads = max(peak_threads, len(os.listdir("/proc/self/task")))
        peak_rss = max(peak_rss, rss_kib())
        time.sleep(seconds / 10)
    results = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    assert results == list(range(n))
    t0 = time.perf_counter()
    loom.close()
    closed = time.perf_counter() - t0
    print(
        f"{n} virtual threads x sleep({seconds}) on {workers} workers: "
        f"submit {submitted:.3f}s, all done {elapsed:.3f}s, close {closed:.3f}s, "
        f"peak OS threads {peak_threads}, RSS before {before} KiB, "
        f"peak RSS (sampled) {peak_rss} KiB, +{(peak_rss - before) * 1024 / n:.0f} B/vthread, "
        f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB"
    )


if __name__ == "__main__":
    main()
