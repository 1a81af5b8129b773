"""Counts this process's OS threads while a pool runs, against what the pool may use.

The budget: the threads there before the pool started its runtime, plus the pool's
workers (``platform_threads``), its watchdog thread, and its blocking-pool threads (the
most that ``get_stats()["blocking_pool_threads"]`` has shown). Virtual threads must
add nothing to it, however many there are.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

__all__ = ["ThreadBudget", "os_threads"]


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
