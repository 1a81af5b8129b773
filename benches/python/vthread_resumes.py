"""Resumes per second: N virtual threads that each give up their worker K times.

Modes (how a virtual thread gives up its worker, each time):
- ``yield``: switches to the worker's greenlet without parking (run again later);
- ``sleep0``: parks on a zero sleep, which completes at once;
- ``pingpong``: pairs of virtual threads hand a turn back and forth through two
  ``ringloom._native.Parker``s, so every resume is a real wake-up.
Nothing waits for time, so the rate is the cost of one resume (the switch, the GIL,
the scheduling).

Usage: python benches/python/vthread_resumes.py [MODE] [N] [K] [WORKERS]
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import greenlet
import ringloom
from ringloom import Loom, _native


def tasks(mode: str, n: int, k: int) -> list[Callable[[], None]]:
    def yielder() -> None:
        hub = greenlet.getcurrent().parent
        for _ in range(k):
            hub.switch()

    def sleeper() -> None:
        for _ in range(k):
            _native.sleep(0)

    if mode == "yield":
        return [yielder] * n
    if mode == "sleep0":
        return [sleeper] * n
    if mode != "pingpong":
        raise SystemExit(f"unknown mode {mode!r}")
    out: list[Callable[[], None]] = []
    for _ in range(n // 2):
        ping, pong = _native.Parker(), _native.Parker()

        def player(mine: _native.Parker, theirs: _native.Parker, first: bool) -> None:
            for turn in range(k):
                if turn or not first:
                    mine.park()
                theirs.unpark()

        out.append(lambda m=ping, t=pong: player(m, t, True))
        out.append(lambda m=pong, t=ping: player(m, t, False))
    return out


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "pingpong"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    calls = tasks(mode, n, k)
    with Loom(workers=workers) as loom:
        start = time.perf_counter()
        futures = [ringloom.submit(loom, call) for call in calls]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
        stats = loom.stats()
    print(
        f"{mode}: {len(calls)} virtual threads x {k} on {workers} workers: "
        f"{elapsed:.3f}s, {len(calls) * k / elapsed:,.0f} resumes/s, "
        f"runtime polls {stats['polls']:,}, parks {stats['parks']:,}"
    )


if __name__ == "__main__":
    main()
