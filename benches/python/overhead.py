"""Workloads py.overhead.submit and py.overhead.map: N trivial tasks, tasks/s.

    python benches/python/overhead.py PEER MODE [--n N] [--cpu C]

MODE ``submit``: every task submitted, then every result taken in order; ``map``: the
peer's map (a gather of coroutines for asyncio). The task returns its argument. Each
executor or loop runs one task before the clock starts (its threads or workers exist).
Peers: ``ringloom`` (``VirtualThreadPool()``), ``threads`` (``ThreadPoolExecutor(4)``),
``gevent`` (``gevent.pool.Pool()``), ``asyncio``, ``uvloop``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import _harness as h


def trivial(i: int) -> int:
    return i


def run_ringloom(mode: str, n: int) -> tuple[float, dict[str, Any]]:
    from ringloom.virtual_thread import VirtualThreadPool

    with VirtualThreadPool() as pool:
        pool.submit(trivial, 0).result()
        start = time.perf_counter()
        if mode == "submit":
            futures = [pool.submit(trivial, i) for i in range(n)]
            results = [f.result() for f in futures]
        else:
            results = pool.map(trivial, range(n))
        wall = time.perf_counter() - start
        stats = pool.get_stats()
    assert results == list(range(n))
    return wall, {"driver": stats.get("driver"), "workers": stats.get("platform_threads")}


def run_threads(mode: str, n: int) -> tuple[float, dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(trivial, 0) for _ in range(4)]:
            f.result()
        start = time.perf_counter()
        if mode == "submit":
            futures = [pool.submit(trivial, i) for i in range(n)]
            results = [f.result() for f in futures]
        else:
            results = list(pool.map(trivial, range(n)))
        wall = time.perf_counter() - start
    assert results == list(range(n))
    return wall, {"max_workers": 4}


def run_gevent(mode: str, n: int) -> tuple[float, dict[str, Any]]:
    import gevent.pool

    pool = gevent.pool.Pool()
    pool.spawn(trivial, 0).get()
    start = time.perf_counter()
    if mode == "submit":
        greenlets = [pool.spawn(trivial, i) for i in range(n)]
        results = [g.get() for g in greenlets]
    else:
        results = pool.map(trivial, range(n))
    wall = time.perf_counter() - start
    assert results == list(range(n))
    return wall, {"pool": "gevent.pool.Pool() (unbounded)"}


def _run_async(loop_factory: Callable[[], Any], mode: str, n: int) -> float:
    import asyncio

    async def trivial_async(i: int) -> int:
        return i

    async def main() -> float:
        await asyncio.ensure_future(trivial_async(0))
        start = time.perf_counter()
        if mode == "submit":
            tasks = [asyncio.ensure_future(trivial_async(i)) for i in range(n)]
            results = [await t for t in tasks]
        else:
            results = await asyncio.gather(*(trivial_async(i) for i in range(n)))
        wall = time.perf_counter() - start
        assert results == list(range(n))
        return wall

    loop = loop_factory()
    try:
        return float(loop.run_until_complete(main()))
    finally:
        loop.close()


def run_asyncio(mode: str, n: int) -> tuple[float, dict[str, Any]]:
    import asyncio

    return _run_async(asyncio.new_event_loop, mode, n), {}


def run_uvloop(mode: str, n: int) -> tuple[float, dict[str, Any]]:
    import uvloop

    return _run_async(uvloop.new_event_loop, mode, n), {}


PEERS: dict[str, Callable[[str, int], tuple[float, dict[str, Any]]]] = {
    "ringloom": run_ringloom,
    "threads": run_threads,
    "gevent": run_gevent,
    "asyncio": run_asyncio,
    "uvloop": run_uvloop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("mode", choices=("submit", "map"))
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    watcher = h.Watcher().start()
    wall, info = PEERS[args.peer](args.mode, args.n)
    threads = watcher.stop()
    info.update(n=args.n, mode=args.mode, wall_s=round(wall, 4))
    info.update(h.versions("gevent", "uvloop", "greenlet"))
    h.emit(
        {"tasks_per_s": args.n / wall, "peak_rss_mib": h.peak_rss_mib(), "os_threads": threads},
        info,
    )


if __name__ == "__main__":
    main()
