"""Workload py.map.hash: a map of calls that let go of the GIL, hashes/s.

    python benches/python/hashmap.py PEER [--n N] [--mib M] [--workers W] [--cpu C]

Each call hashes its own in-memory buffer of ``M`` MiB with blake2b (hashlib lets go of
the GIL for buffers over 2 KiB), as a file batch's hashing, compression or a C extension
does. Nothing waits on I/O, so only calls running on several OS threads at once go
faster than the loop. Peers: ``sequential`` (a list comprehension), ``ringloom``
(``VirtualThreadPool(max_platform_threads=W).map``) and ``threads``
(``ThreadPoolExecutor(W).map``). Not pinned: the workload is about using the CPUs. The
clock runs from before the pool is made (the peer's modules already imported) until
every result is in and the pool is shut down.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from typing import Any, Callable

import _harness as h


def digest(buffer: bytes) -> bytes:
    return hashlib.blake2b(buffer).digest()


def run_sequential(buffers: list[bytes], workers: int) -> tuple[list[bytes], dict[str, Any]]:
    return [digest(b) for b in buffers], {}


def run_ringloom(buffers: list[bytes], workers: int) -> tuple[list[bytes], dict[str, Any]]:
    from ringloom.virtual_thread import VirtualThreadPool

    with VirtualThreadPool(max_platform_threads=workers) as pool:
        return pool.map(digest, buffers), {"platform_threads": workers}


def run_threads(buffers: list[bytes], workers: int) -> tuple[list[bytes], dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(digest, buffers)), {"max_workers": workers}


PEERS: dict[str, Callable[[list[bytes], int], tuple[list[bytes], dict[str, Any]]]] = {
    "sequential": run_sequential,
    "ringloom": run_ringloom,
    "threads": run_threads,
}
#: What each peer imports, done before the clock starts (see `_harness.preimport`).
IMPORTS: dict[str, tuple[str, ...]] = {
    "sequential": (),
    "ringloom": ("ringloom.virtual_thread",),
    "threads": ("concurrent.futures",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--n", type=int, default=1_000, help="calls (buffers)")
    parser.add_argument("--mib", type=float, default=0.25, help="MiB per buffer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    size = int(args.mib * (1 << 20))
    # Distinct buffers (one shared buffer would be hashed from one cache-hot copy).
    buffers = [bytes([i % 251]) * size for i in range(args.n)]
    reference = [digest(b) for b in buffers[:8]]
    h.preimport(*IMPORTS[args.peer])
    watcher = h.Watcher().start()
    start = time.perf_counter()
    results, info = PEERS[args.peer](buffers, args.workers)
    wall = time.perf_counter() - start
    threads = watcher.stop()
    if len(results) != args.n or results[:8] != reference:
        raise SystemExit("digests differ from the sequential ones")
    info.update(n=args.n, mib=args.mib, wall_s=round(wall, 4), affinity=h.affinity())
    h.emit(
        {
            "hashes_per_s": args.n / wall,
            "mib_per_s": args.n * args.mib / wall,
            "peak_rss_mib": h.peak_rss_mib(),
            "os_threads": threads,
        },
        info,
    )


if __name__ == "__main__":
    main()
