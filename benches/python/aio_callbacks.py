"""Workloads py.aio.call_soon and py.aio.call_later: how fast each event loop runs
callbacks and timers (one process, pinned to ``--cpu``).

    python benches/python/aio_callbacks.py LOOP soon|later [--n N] [--cpu C]

LOOP is one of ``_aio_loops.LOOPS``. Each mode runs twice, the first run (a tenth of N)
as a warm-up, and every callback checks its work; a callback that ran twice, out of
order or early, or did not run, fails the script (exit status not 0).

- ``soon``: one callback schedules N callbacks with ``loop.call_soon``; each checks that
  it runs in the order scheduled, the last resolves a future. ``calls_per_s`` is N over
  the time from the first ``call_soon`` to the last callback's return (scheduling
  included). Then a chain of N/10 callbacks, each scheduling the next, so that the loop
  goes once round (its selector polled without waiting) per callback:
  ``chain_calls_per_s``.
- ``later``: one callback schedules N timers with ``loop.call_later``, delays drawn
  uniformly from [0, 50 ms) (seeded); each checks it has not run before its delay (on
  the loop's clock, ``loop.time()``, less 1 ms: uvloop's timers have millisecond
  resolution) and has not run before. ``timers_per_s`` is N over the time from the
  first ``call_later`` to the last timer's run: at the sizes run, scheduling them all
  takes longer than the longest delay, so this is the cost of a timer (scheduled, kept
  in the loop's heap, run), not the delays.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import _harness as h
from _aio_loops import LOOPS, loop_versions, new_loop

TOLERANCE_S = 0.001


def run_soon(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """Seconds to schedule and run ``n`` callbacks with ``call_soon``."""
    ran = [0]
    wrong: list[int] = []
    done: asyncio.Future[float] = loop.create_future()
    started = [0.0]

    def callback(i: int) -> None:
        if i != ran[0]:
            wrong.append(i)
        ran[0] += 1
        if ran[0] == n:
            done.set_result(time.perf_counter())

    def schedule() -> None:
        started[0] = time.perf_counter()
        call_soon = loop.call_soon
        for i in range(n):
            call_soon(callback, i)

    loop.call_soon(schedule)
    ended = loop.run_until_complete(done)
    if wrong or ran[0] != n:
        sys.exit(f"call_soon: {ran[0]} of {n} callbacks ran, {len(wrong)} out of order")
    return ended - started[0]


def run_chain(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """Seconds for ``n`` callbacks that each schedule the next."""
    ran = [0]
    wrong: list[int] = []
    done: asyncio.Future[float] = loop.create_future()

    def link(i: int) -> None:
        if i != ran[0]:
            wrong.append(i)
        ran[0] += 1
        if ran[0] == n:
            done.set_result(time.perf_counter())
        else:
            loop.call_soon(link, i + 1)

    started = time.perf_counter()
    loop.call_soon(link, 0)
    ended = loop.run_until_complete(done)
    if wrong or ran[0] != n:
        sys.exit(f"call_soon chain: {ran[0]} of {n} callbacks ran, {len(wrong)} out of order")
    return ended - started


def run_later(loop: asyncio.AbstractEventLoop, n: int, seed: int) -> float:
    """Seconds to schedule and run ``n`` timers of random delays."""
    rng = random.Random(seed)
    delays = [rng.random() * 0.05 for _ in range(n)]
    ran = bytearray(n)
    count = [0]
    failures: list[str] = []
    done: asyncio.Future[float] = loop.create_future()
    started = [0.0]
    clock = loop.time

    def fire(i: int, due: float) -> None:
        now = clock()
        if ran[i]:
            failures.append(f"timer {i} ran twice")
        ran[i] = 1
        if now < due - TOLERANCE_S:
            failures.append(f"timer {i} ran {(due - now) * 1e3:.3f} ms early")
        count[0] += 1
        if count[0] == n:
            done.set_result(time.perf_counter())

    def schedule() -> None:
        started[0] = time.perf_counter()
        call_later = loop.call_later
        now = clock()
        for i, delay in enumerate(delays):
            if i % 256 == 0:
                # A lower bound of the time of the call_later below, read once in a
                # while so that the clock is not most of what is measured.
                now = clock()
            call_later(delay, fire, i, now + delay)

    loop.call_soon(schedule)
    ended = loop.run_until_complete(done)
    if failures or count[0] != n or not all(ran):
        first = failures[0] if failures else "none failed"
        sys.exit(f"call_later: {count[0]} of {n} timers ran, {len(failures)} failures: {first}")
    return ended - started[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loop", choices=LOOPS)
    parser.add_argument("mode", choices=("soon", "later"))
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    metrics: dict[str, float] = {}
    try:
        if args.mode == "soon":
            run_soon(loop, max(1, args.n // 10))
            metrics["calls_per_s"] = args.n / run_soon(loop, args.n)
            chain = max(1, args.n // 10)
            run_chain(loop, max(1, chain // 10))
            metrics["chain_calls_per_s"] = chain / run_chain(loop, chain)
        else:
            run_later(loop, max(1, args.n // 10), seed=2)
            metrics["timers_per_s"] = args.n / run_later(loop, args.n, seed=1)
    finally:
        loop.close()
    metrics["peak_rss_mib"] = h.peak_rss_mib()
    info: dict[str, Any] = {"loop": args.loop, "mode": args.mode, "n": args.n}
    info.update(loop_versions())
    info.update(h.versions())
    h.emit(metrics, info)


if __name__ == "__main__":
    main()
