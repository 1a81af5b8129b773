"""Helpers of the scale tests: a gate that holds virtual threads until all have
arrived, an event for "all these futures are done", and a thread budget.

``ThreadBudget`` counts this process's OS threads while pools run, against what they
may use: the threads there before the pools started their runtimes, plus each pool's
workers (``platform_threads``), its watchdog thread, and its blocking-pool threads
(the most that ``get_stats()["blocking_pool_threads"]`` has shown). Virtual threads
must add nothing to it, however many there are.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time
from typing import Any, Callable

import ringloom

__all__ = ["LONG", "Gate", "ThreadBudget", "all_done", "os_threads", "run_gated"]

# A generous bound on waits that end early on success: a hang fails the test instead
# of stopping the suite.
LONG = 300.0


def all_done(futures: list[concurrent.futures.Future[Any]]) -> threading.Event:
    """An event set once every one of ``futures`` is done."""
    done = threading.Event()
    finished = itertools.count(1)  # next() is atomic under the GIL
    total = len(futures)

    def one(_: concurrent.futures.Future[Any]) -> None:
        if next(finished) == total:
            done.set()

    for future in futures:
        future.add_done_callback(one)
    return done


class Gate:
    """Holds virtual threads until every one of ``n`` has arrived and the test opens
    it: ``arrive()`` then ``wait()`` in each; ``all_arrived`` for the test."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._arrived = itertools.count(1)
        self.all_arrived = threading.Event()
        self._open = ringloom.Event()  # parks a virtual thread that waits on it

    def arrive(self) -> None:
        if next(self._arrived) == self.n:
            self.all_arrived.set()

    def wait(self) -> None:
        self._open.wait()

    def open(self) -> None:
        self._open.set()


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class ThreadBudget:
    """For ``pools``, created (``VirtualThreadPool(...)``) but not yet submitted to: a
    pool starts its workers at its first submit. Each pool is allowed its platform
    threads, one watchdog thread, and its blocking-pool threads."""

    def __init__(self, *pools: Any) -> None:
        self.pools = pools
        self.before = os_threads()
        self.fixed = sum(pool.get_stats()["platform_threads"] + 1 for pool in pools)
        self.blocking = 0  # the most blocking-pool threads seen so far
        self.peak = self.before
        self.peak_parked = 0
        self.samples = 0
        self.over: list[tuple[int, int]] = []  # (threads, allowed) when over

    @property
    def allowed(self) -> int:
        return self.before + self.fixed + self.blocking

    def sample(self) -> None:
        # Stats read on both sides of the count: a blocking thread that starts or
        # retires meanwhile is in the allowance either way.
        first = [pool.get_stats() for pool in self.pools]
        threads = os_threads()
        second = [pool.get_stats() for pool in self.pools]
        self.blocking = max(
            self.blocking,
            sum(stats["blocking_pool_threads"] for stats in first),
            sum(stats["blocking_pool_threads"] for stats in second),
        )
        self.peak_parked = max(self.peak_parked, sum(stats["parked"] for stats in second))
        self.samples += 1
        self.peak = max(self.peak, threads)
        if threads > self.allowed:
            self.over.append((threads, self.allowed))

    def watch(self, done: threading.Event, timeout: float) -> bool:
        """Samples until ``done`` is set (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while not done.wait(0.005):
            self.sample()
            if time.monotonic() > deadline:
                return False
        self.sample()
        return True

    def watch_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Samples until ``condition()`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.sample()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        self.sample()
        return True

    def __repr__(self) -> str:
        return (
            f"<ThreadBudget before={self.before} fixed={self.fixed} "
            f"blocking={self.blocking} peak={self.peak} peak_parked={self.peak_parked} "
            f"samples={self.samples} "
            f"over={self.over[:5]}>"
        )


def run_gated(
    pool: Any, fn: Callable[[int], Any], n: int, gate: Gate, budget: ThreadBudget
) -> tuple[list[Any], dict[str, Any]]:
    """Submits ``fn(0..n)``, which wait on ``gate``; once all have arrived, opens it and
    waits (within the thread budget) for all to finish. Returns their results in order
    and the pool's stats read right after."""
    futures = [pool.submit(fn, i) for i in range(n)]
    done = all_done(futures)
    assert budget.watch(gate.all_arrived, LONG), budget
    gate.open()
    assert budget.watch(done, LONG), budget
    return [f.result() for f in futures], pool.get_stats()
