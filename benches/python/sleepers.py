"""Workloads py.sleep10k / py.sleep100k (wall time of N tasks that each sleep once) and
py.parked_memory (RSS per parked task).

    python benches/python/sleepers.py PEER [--n N] [--seconds S] [--parked] [--cpu C]

Peers: ``ringloom`` (unmodified ``time.sleep`` in a ``VirtualThreadPool``), ``threads``
(``ThreadPoolExecutor(--threads)``, ``time.sleep``; with ``--parked`` one OS thread per
task), ``gevent`` (``gevent.sleep`` in ``gevent.spawn``), ``asyncio`` and ``uvloop``
(``asyncio.sleep`` in tasks gathered).

Wall mode: ``wall_s`` from before the executor or loop is created (the peer's modules
already imported) until every result is in and it is shut down (threads joined, loop
closed); ``peak_rss_mib`` (``ru_maxrss``) and ``os_threads`` (peak, sampled every 10 ms).
Parked mode: the RSS before the tasks are created (runtime already started) and once all
N sleep; ``kib_per_task`` is the difference over N. The process then exits without
waking them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import _harness as h

PEERS = ("ringloom", "threads", "gevent", "asyncio", "uvloop")


def sleeper(seconds: float) -> Callable[[int], int]:
    def task(i: int) -> int:
        time.sleep(seconds)
        return i

    return task


# -- wall mode --------------------------------------------------------------------------


def wall_ringloom(n: int, seconds: float, _: int) -> dict[str, Any]:
    from ringloom.virtual_thread import VirtualThreadPool

    pool = VirtualThreadPool()
    results = pool.map(sleeper(seconds), range(n))
    assert results == list(range(n))
    stats = pool.get_stats()
    pool.shutdown()
    return {"driver": stats.get("driver"), "workers": stats.get("platform_threads")}


def wall_threads(n: int, seconds: float, threads: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(sleeper(seconds), range(n)))
    assert results == list(range(n))
    return {"max_workers": threads}


def wall_gevent(n: int, seconds: float, _: int) -> dict[str, Any]:
    import gevent

    def task(i: int) -> int:
        gevent.sleep(seconds)
        return i

    greenlets = [gevent.spawn(task, i) for i in range(n)]
    gevent.joinall(greenlets, raise_error=True)
    assert [g.value for g in greenlets] == list(range(n))
    return {"loop": type(gevent.get_hub().loop).__module__}


def _asyncio_main(n: int, seconds: float) -> Any:
    import asyncio

    async def task(i: int) -> int:
        await asyncio.sleep(seconds)
        return i

    async def main() -> None:
        results = await asyncio.gather(*(task(i) for i in range(n)))
        assert results == list(range(n))

    return main()


def wall_asyncio(n: int, seconds: float, _: int) -> dict[str, Any]:
    import asyncio

    asyncio.run(_asyncio_main(n, seconds))
    return {}


def wall_uvloop(n: int, seconds: float, _: int) -> dict[str, Any]:

    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_asyncio_main(n, seconds))
    finally:
        loop.close()
    return {}


# -- parked mode ------------------------------------------------------------------------


def _settle(count: Callable[[], int], n: int, timeout: float = 120.0) -> bool:
    """Waits (stock sleep, this OS thread) until ``count() >= n``."""
    deadline = time.monotonic() + timeout
    while count() < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    time.sleep(0.05)  # let the last ones finish reaching their park
    return True


def parked_ringloom(n: int) -> tuple[int, int, dict[str, Any]]:
    from ringloom.virtual_thread import VirtualThreadPool

    pool = VirtualThreadPool()
    pool.submit(int).result()  # the runtime's workers and ring exist before `before`
    task = sleeper(3600)
    before = h.rss_kib()
    for i in range(n):
        pool.submit(task, i)
    ok = _settle(lambda: int(pool.get_stats()["parked"]), n)
    after = h.rss_kib()
    stats = pool.get_stats()
    return before, after, {"all_parked": ok, "parked": stats["parked"], "driver": stats["driver"]}


def parked_threads(n: int) -> tuple[int, int, dict[str, Any]]:
    import threading

    started = [0]
    lock = threading.Lock()

    def task(i: int) -> int:
        with lock:
            started[0] += 1
        time.sleep(3600)
        return i

    threading.stack_size(0)  # the default: 8 MiB of address space, touched as used
    before = h.rss_kib()
    for i in range(n):
        threading.Thread(target=task, args=(i,), daemon=True).start()
    ok = _settle(lambda: started[0], n)
    after = h.rss_kib()
    return before, after, {"all_parked": ok, "os_threads_now": h.os_threads()}


def parked_gevent(n: int) -> tuple[int, int, dict[str, Any]]:
    import gevent

    reached = [0]

    def task(i: int) -> int:
        reached[0] += 1
        gevent.sleep(3600)
        return i

    gevent.sleep(0)  # the hub and its loop exist before `before`
    before = h.rss_kib()
    greenlets = [gevent.spawn(task, i) for i in range(n)]
    # Until every greenlet has run to its sleep: a fixed pause measured greenlets that
    # had not started (about 4,000 of 100,000 after 0.05 s here, 1.3 KiB a task; 8 KiB
    # once all sleep).
    deadline = time.monotonic() + 120.0
    while reached[0] < n and time.monotonic() < deadline:
        gevent.sleep(0.01)
    gevent.sleep(0.05)  # the last ones finish reaching their sleep
    after = h.rss_kib()
    parked = reached[0] == n and all(g.started and not g.dead for g in greenlets)
    return before, after, {"all_parked": parked, "parked": reached[0]}


def parked_asyncio(n: int) -> tuple[int, int, dict[str, Any]]:
    import asyncio

    out: dict[str, int] = {}

    reached = [0]

    async def task(i: int) -> int:
        reached[0] += 1
        await asyncio.sleep(3600)
        return i

    async def main() -> None:
        await asyncio.sleep(0)
        out["before"] = h.rss_kib()
        tasks = [asyncio.ensure_future(task(i)) for i in range(n)]
        deadline = time.monotonic() + 120.0
        while reached[0] < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # until every task has run to its sleep
        await asyncio.sleep(0.05)
        out["after"] = h.rss_kib()
        out["pending"] = sum(1 for t in tasks if not t.done())

    asyncio.run(main())
    parked = reached[0] == n and out["pending"] == n
    return out["before"], out["after"], {"all_parked": parked, "parked": reached[0]}


WALL: dict[str, Callable[[int, float, int], dict[str, Any]]] = {
    "ringloom": wall_ringloom,
    "threads": wall_threads,
    "gevent": wall_gevent,
    "asyncio": wall_asyncio,
    "uvloop": wall_uvloop,
}
#: What each wall-mode peer imports, done before the clock starts: a module's import is
#: a cost paid once per process, not per batch of tasks.
IMPORTS: dict[str, tuple[str, ...]] = {
    "ringloom": ("ringloom.virtual_thread",),
    "threads": ("concurrent.futures",),
    "gevent": ("gevent",),
    "asyncio": ("asyncio",),
    "uvloop": ("asyncio", "uvloop"),
}
PARKED: dict[str, Callable[[int], tuple[int, int, dict[str, Any]]]] = {
    "ringloom": parked_ringloom,
    "threads": parked_threads,
    "gevent": parked_gevent,
    "asyncio": parked_asyncio,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1000, help="ThreadPoolExecutor size")
    parser.add_argument("--parked", action="store_true", help="memory per parked task")
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    h.raise_nofile(1 << 16)
    if args.parked:
        if args.peer not in PARKED:
            parser.error(f"--parked has no {args.peer} peer")
        before, after, info = PARKED[args.peer](args.n)
        info.update(n=args.n, rss_before_kib=before, rss_after_kib=after)
        info.update(h.versions("gevent", "uvloop", "greenlet"))
        h.emit(
            {
                "kib_per_task": (after - before) / args.n,
                "peak_rss_mib": h.peak_rss_mib(),
                "os_threads": h.os_threads(),
            },
            info,
        )
        sys.stdout.flush()
        os._exit(0)  # the tasks sleep on; nothing to wind down
    h.preimport(*IMPORTS[args.peer])
    watcher = h.Watcher().start()
    start = time.perf_counter()
    info = WALL[args.peer](args.n, args.seconds, args.threads)
    wall = time.perf_counter() - start
    threads = watcher.stop()
    info.update(n=args.n, sleep_s=args.seconds, watcher_samples=watcher.samples)
    info.update(h.versions("gevent", "uvloop", "greenlet"))
    h.emit({"wall_s": wall, "peak_rss_mib": h.peak_rss_mib(), "os_threads": threads}, info)


if __name__ == "__main__":
    main()
