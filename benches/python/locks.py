"""Workloads py.lock.uncontended, py.lock.handoff and py.queue: stock ``threading`` and
``queue`` code, patched by each peer.

    python benches/python/locks.py PEER MODE [--n N] [--cpu C]

Every peer runs the same stock code after its own patching: ``ringloom``
(``ringloom.monkey.patch_all()``, virtual threads), ``gevent``
(``gevent.monkey.patch_all()``, greenlets), ``threads`` (nothing patched, OS threads).

- ``uncontended``: ``with lock: pass`` on one ``threading.Lock()`` from the main
  thread, ns per acquire and release (``ns_per_op``).
- ``handoff``: 100 threads, each taking one shared ``threading.Lock()`` N/100 times and
  waiting for the others (``time.sleep(0)``) while it holds it: acquisitions/s, every
  one a hand-off to a waiter.
- ``queue``: one producer puts N items into a ``queue.Queue(maxsize=100)``, one
  consumer gets them: items/s.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _harness as h

THREADS = 100


def patch(peer: str) -> None:
    if peer == "ringloom":
        from ringloom import monkey

        monkey.patch_all()
    elif peer == "gevent":
        from gevent import monkey as gevent_monkey

        gevent_monkey.patch_all()


def uncontended(n: int) -> dict[str, float]:
    import threading

    lock = threading.Lock()
    start = time.perf_counter()
    for _ in range(n):
        with lock:
            pass
    wall = time.perf_counter() - start
    return {"ns_per_op": wall / n * 1e9, "wall_s": wall}


def run_threads(target: Any, count: int) -> None:
    import threading

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def handoff(n: int) -> dict[str, float]:
    import threading

    lock = threading.Lock()
    each = n // THREADS
    taken = 0

    def worker() -> None:
        nonlocal taken
        for _ in range(each):
            with lock:
                taken += 1
                time.sleep(0)

    start = time.perf_counter()
    run_threads(worker, THREADS)
    wall = time.perf_counter() - start
    assert taken == each * THREADS
    return {"ops_per_s": taken / wall, "wall_s": wall}


def queue_throughput(n: int) -> dict[str, float]:
    import queue
    import threading

    items: queue.Queue[int | None] = queue.Queue(maxsize=100)
    got = 0

    def produce() -> None:
        for i in range(n):
            items.put(i)
        items.put(None)

    def consume() -> None:
        nonlocal got
        while items.get() is not None:
            got += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    assert got == n
    return {"items_per_s": n / wall, "wall_s": wall}


MODES = {"uncontended": uncontended, "handoff": handoff, "queue": queue_throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=("ringloom", "gevent", "threads"))
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    patch(args.peer)
    MODES[args.mode](min(args.n, 10_000))  # warm-up: threads, workers, caches
    metrics = MODES[args.mode](args.n)
    wall = metrics.pop("wall_s")
    metrics["peak_rss_mib"] = h.peak_rss_mib()
    info: dict[str, Any] = {"n": args.n, "mode": args.mode, "wall_s": round(wall, 4)}
    info.update(h.versions("gevent", "greenlet"))
    h.emit(metrics, info)


if __name__ == "__main__":
    main()
