"""Workload py.scrape: unmodified ``requests.get`` against a loopback HTTP server.

    python benches/python/scrape.py PEER [--requests N] [--concurrency C] [--cpu C]
        [--server-cpu S]

Peers: ``ringloom`` (``VirtualThreadPool(max_virtual_threads=C).map``), ``gevent``
(``monkey.patch_all()``, ``gevent.pool.Pool(C).map``), ``threads``
(``ThreadPoolExecutor(200).map``: 200 at once). Each call is a plain
``requests.get(url)``: a new connection per request; every response is checked
(status, length and bytes). The server (``http_server.py``, raw uvloop Protocol) runs in
its own process pinned to ``--server-cpu``; this client is pinned to ``--cpu``. The
server's CPU time over the run is reported (``server_cpu_share``, 1.0 = a core busy the
whole time; ``server_capacity_req_per_s``, requests over that CPU time) so a run where the
server saturates shows it.
"""

from __future__ import annotations

import argparse
import sys

# gevent must patch before anything imports socket, ssl, threading or subprocess.
if len(sys.argv) > 1 and sys.argv[1] == "gevent":
    from gevent import monkey

    monkey.patch_all()

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import _harness as h

HERE = Path(__file__).resolve().parent


def body_length(i: int) -> int:
    return 256 + (i * 7919) % 3840  # body_for(i)'s length


def make_fetch(base: str) -> Callable[[int], str | None]:
    import requests
    from _harness import body_for

    def fetch(i: int) -> str | None:
        """None when the response is right, else what was wrong."""
        try:
            response = requests.get(f"{base}/item/{i}", timeout=120)
        except Exception as err:  # noqa: BLE001 - counted, never raised
            return f"{type(err).__name__}: {err}"[:200]
        if response.status_code != 200:
            return f"status {response.status_code}"
        if response.content != body_for(i):
            return f"body of {len(response.content)} bytes, expected {body_length(i)}"
        return None

    return fetch


def run_ringloom(fetch: Callable[[int], str | None], n: int, c: int) -> tuple[list[Any], dict]:
    from ringloom.virtual_thread import VirtualThreadPool

    with VirtualThreadPool(max_virtual_threads=c) as pool:
        results = pool.map(fetch, range(n))
        stats = pool.get_stats()
    keys = ("driver", "platform_threads", "parks", "blocking_threads")
    return results, {k: stats.get(k) for k in keys}


def run_gevent(fetch: Callable[[int], str | None], n: int, c: int) -> tuple[list[Any], dict]:
    import gevent.pool

    return list(gevent.pool.Pool(c).map(fetch, range(n))), {"patched": "monkey.patch_all()"}


def run_threads(fetch: Callable[[int], str | None], n: int, c: int) -> tuple[list[Any], dict]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(200) as pool:
        return list(pool.map(fetch, range(n))), {"max_workers": 200}


PEERS = {"ringloom": run_ringloom, "gevent": run_gevent, "threads": run_threads}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10_000)
    parser.add_argument("--cpu", type=int, default=0, help="client CPU (-1: no pinning)")
    parser.add_argument("--server-cpu", type=int, default=1, help="server CPU (-1: none)")
    args = parser.parse_args()
    h.pin(args.cpu)
    nofile = h.raise_nofile(1 << 20)
    server = subprocess.Popen(
        [sys.executable, str(HERE / "http_server.py"), "--cpu", str(args.server_cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        fetch = make_fetch(f"http://127.0.0.1:{port}")
        if fetch(0) is not None:  # warm: imports done, the server answers
            raise RuntimeError(f"the server answered wrong: {fetch(0)}")
        watcher = h.Watcher().start()
        cpu0 = cpu_seconds(server.pid)
        start = time.perf_counter()
        results, info = PEERS[args.peer](fetch, args.requests, args.concurrency)
        wall = time.perf_counter() - start
        server_cpu = cpu_seconds(server.pid) - cpu0
        threads = watcher.stop()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    errors = [r for r in results if r is not None]
    info.update(
        n_requests=args.requests,
        concurrency=args.concurrency,
        wall_s=round(wall, 3),
        errors=len(errors),
        first_errors=sorted(set(errors))[:3],
        server="http_server.py: raw uvloop Protocol, a separate process",
        server_cpu_share=round(server_cpu / wall, 3),
        # What the server would serve with its CPU busy the whole time, at this run's
        # cost per request (its CPU time includes accepting and closing connections).
        server_capacity_req_per_s=round(args.requests / server_cpu) if server_cpu > 0 else None,
        rlimit_nofile=nofile,
    )
    info.update(h.versions("requests", "gevent", "uvloop", "greenlet"))
    h.emit(
        {
            "req_per_s": (len(results) - len(errors)) / wall,
            "peak_rss_mib": h.peak_rss_mib(),
            "os_threads": threads,
            "errors": len(errors),
        },
        info,
    )
    if len(errors) > args.requests // 100:
        sys.exit(f"{len(errors)} of {args.requests} requests failed: {errors[:3]}")


if __name__ == "__main__":
    main()
