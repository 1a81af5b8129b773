"""Priority orders the ready virtual threads of a worker: lowest number first, then the
order they became ready in.

To make many virtual threads ready at one moment, a worker is held by a "gate": a task
run as plain code (``is_blocking=False``) that blocks its OS thread on a
``threading.Event``. While it blocks, the worker's hub cannot look at wake-ups, so every
unpark made meanwhile is seen at once when the gate returns.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import ringloom
from ringloom import Loom, _native
from ringloom.virtual_thread import VirtualThreadPool
from support import wait_until

TIMEOUT = 30


def spawn(
    loom: Loom, fn: Callable[[], Any], priority: int, intercept: bool = True
) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    loom.spawn(fn, future, intercept, priority)
    return future


class Gate:
    """Holds one worker while ``while_held`` runs in this thread."""

    def __init__(self, submit: Callable[[Callable[[], None]], Any]) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.future = submit(self._hold)

    def _hold(self) -> None:
        assert not _native.intercepting()
        self.entered.set()
        assert self.release.wait(TIMEOUT)

    def run(self, while_held: Callable[[], None]) -> None:
        assert self.entered.wait(TIMEOUT)
        try:
            while_held()
        finally:
            self.release.set()
        self.future.result(timeout=TIMEOUT)


def expected(woken: Sequence[int], priorities: Sequence[int]) -> list[int]:
    """The run order: by priority, and in wake order within one (a stable sort)."""
    return sorted(woken, key=lambda i: priorities[i])


@pytest.fixture
def loom() -> Iterator[Loom]:
    with Loom(workers=1) as loom:
        yield loom


def run_woken_together(loom: Loom, priorities: Sequence[int], wake_order: Sequence[int]) -> None:
    """Parks one virtual thread per priority, wakes them all at one moment in
    ``wake_order`` and checks the order they run in."""
    parkers = [_native.Parker() for _ in priorities]
    ran: list[int] = []

    def waiter(i: int) -> None:
        parkers[i].park()
        ran.append(i)

    futures = [spawn(loom, lambda i=i: waiter(i), p) for i, p in enumerate(priorities)]
    wait_until(lambda: loom.stats()["parked"] == len(priorities))
    gate = Gate(lambda fn: spawn(loom, fn, 128, intercept=False))
    gate.run(lambda: [parkers[i].unpark() for i in wake_order])
    for future in futures:
        future.result(timeout=TIMEOUT)
    assert ran == expected(wake_order, priorities)


def test_woken_together_run_by_priority_then_wake_order(loom: Loom) -> None:
    priorities = [200, 10, 128, 10, 200, 0, 128, 10, 255, 0]
    run_woken_together(loom, priorities, list(range(len(priorities))))
    run_woken_together(loom, priorities, list(reversed(range(len(priorities)))))
    run_woken_together(loom, priorities, [3, 9, 1, 7, 0, 5, 8, 2, 6, 4])


def test_event_set_from_outside_wakes_in_priority_order(loom: Loom) -> None:
    event = ringloom.Event()
    priorities = [50, 255, 0, 50, 128, 0, 255]
    waiting: list[int] = []
    ran: list[int] = []

    def waiter(i: int) -> None:
        waiting.append(i)  # the Event wakes its waiters in the order they came
        assert event.wait(TIMEOUT)
        ran.append(i)

    futures = [spawn(loom, lambda i=i: waiter(i), p) for i, p in enumerate(priorities)]
    wait_until(lambda: loom.stats()["parked"] == len(priorities))
    Gate(lambda fn: spawn(loom, fn, 0, intercept=False)).run(event.set)
    for future in futures:
        future.result(timeout=TIMEOUT)
    assert sorted(waiting) == list(range(len(priorities)))
    assert ran == expected(waiting, priorities)


def test_yielding_threads_take_turns_and_the_low_one_runs_last(loom: Loom) -> None:
    """Ready again at once after each zero sleep, the urgent threads take turns (FIFO
    within their priority) and keep the worker, more rounds than one poll of the hub
    runs; the background thread runs when none of them is left, and nothing hangs."""
    rounds = 100
    urgent = 3
    parkers = [_native.Parker() for _ in range(urgent + 1)]
    log: list[str] = []

    def busy(i: int) -> None:
        parkers[i].park()
        for _ in range(rounds):
            log.append(f"u{i}")
            time.sleep(0)  # intercepted: parks on a sleep that is over at once

    def background() -> None:
        parkers[urgent].park()
        log.append("bg")

    futures = [spawn(loom, lambda i=i: busy(i), 0) for i in range(urgent)]
    futures.append(spawn(loom, background, 255))
    wait_until(lambda: loom.stats()["parked"] == urgent + 1)
    # The background thread is woken first: it still runs last.
    order = [urgent, *range(urgent)]
    Gate(lambda fn: spawn(loom, fn, 128, intercept=False)).run(
        lambda: [parkers[i].unpark() for i in order]
    )
    for future in futures:
        future.result(timeout=TIMEOUT)
    assert log == [f"u{i}" for _ in range(rounds) for i in range(urgent)] + ["bg"]


def test_low_priority_finishes_while_high_ones_keep_waking(loom: Loom) -> None:
    """High-priority threads that park on timers and keep becoming ready leave gaps
    the low-priority one runs in: all of them finish."""

    def high() -> int:
        for _ in range(50):
            time.sleep(0.0005)
        return 0

    def low() -> int:
        for _ in range(20):
            time.sleep(0)
        return 255

    futures = [spawn(loom, high, 0) for _ in range(20)]
    futures.append(spawn(loom, low, 255))
    futures += [spawn(loom, high, 0) for _ in range(20)]
    assert sorted(f.result(timeout=TIMEOUT) for f in futures) == [0] * 40 + [255]


def test_priority_with_is_blocking_false_through_the_pool() -> None:
    """Plain-code tasks (``is_blocking=False``) still park on ringloom's sync objects
    and take their turn by priority with intercepted ones."""
    plan = [(90, False), (10, True), (90, True), (10, False), (200, False), (0, True)]
    parkers = [_native.Parker() for _ in plan]
    ran: list[tuple[int, bool]] = []

    def waiter(i: int) -> None:
        parkers[i].park()
        ran.append((i, _native.intercepting()))

    with VirtualThreadPool(max_platform_threads=1) as pool:
        futures = [
            pool.submit(waiter, i, priority=p, is_blocking=blocking)
            for i, (p, blocking) in enumerate(plan)
        ]
        wait_until(lambda: pool.get_stats()["parked"] == len(plan))
        wake_order = [4, 2, 0, 5, 3, 1]
        gate = Gate(lambda fn: pool.submit(fn, priority=128, is_blocking=False))
        gate.run(lambda: [parkers[i].unpark() for i in wake_order])
        for future in futures:
            future.result(timeout=TIMEOUT)
    priorities = [p for p, _ in plan]
    assert ran == [(i, plan[i][1]) for i in expected(wake_order, priorities)]


def test_many_looms_each_keep_their_own_order() -> None:
    """Looms side by side do not share hubs: each runs its own threads on its own
    worker, in its own priority order, and closing one leaves the others running."""
    looms = [Loom(workers=1) for _ in range(4)]
    try:
        threads: list[set[int]] = [set() for _ in looms]

        def where(n: int) -> None:
            threads[n].add(threading.get_ident())

        for n, loom in enumerate(looms):
            run_woken_together(loom, [n, 3 - n, 0, 255, n], [4, 3, 2, 1, 0])
            spawn(loom, lambda n=n: where(n), 0).result(timeout=TIMEOUT)
        idents = [next(iter(t)) for t in threads]
        assert all(len(t) == 1 for t in threads) and len(set(idents)) == len(looms)

        parkers = [_native.Parker() for _ in looms[1:]]
        survivors = [spawn(loom, p.park, 7) for loom, p in zip(looms[1:], parkers)]
        wait_until(lambda: all(loom.stats()["parked"] == 1 for loom in looms[1:]))
        looms[0].close()
        for parker in parkers:
            parker.unpark()
        for future in survivors:
            assert future.result(timeout=TIMEOUT) is True
    finally:
        for loom in looms:
            loom.close()


def test_close_fails_parked_and_ready_threads_of_every_priority() -> None:
    cleaned: list[int] = []
    never = _native.Parker()

    def parked(i: int) -> None:
        try:
            never.park()
        finally:
            cleaned.append(i)  # GreenletExit runs it as the hub drops the thread

    def spinner() -> None:
        while True:
            time.sleep(0)

    loom = Loom(workers=1)
    futures = [spawn(loom, lambda i=i: parked(i), p) for i, p in enumerate([255, 0, 128, 9])]
    wait_until(lambda: loom.stats()["parked"] == 4)
    busy = spawn(loom, spinner, 0)
    wait_until(busy.running)
    starved = spawn(loom, lambda: "never", 200)  # never runs: the spinner is always ready first
    loom.close()
    for future in [*futures, busy, starved]:
        with pytest.raises(RuntimeError, match="shut down"):
            future.result(timeout=TIMEOUT)
    assert sorted(cleaned) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="closed"):
        spawn(loom, abs, 0)


@pytest.mark.parametrize("priority", [-1, 256, 10**30])
def test_priority_out_of_range_is_refused(loom: Loom, priority: int) -> None:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    with pytest.raises((ValueError, OverflowError)):
        loom.spawn(abs, future, True, priority)
    assert not future.done() and not future.running()
    assert spawn(loom, lambda: 7, 255).result(timeout=TIMEOUT) == 7
    assert spawn(loom, lambda: 8, 0).result(timeout=TIMEOUT) == 8


def test_bursts_of_threads_one_after_another(loom: Loom) -> None:
    """A worker's hub gives back its places once a burst of more than it keeps has
    drained; the next burst still runs (here on parkers notified in between)."""
    parkers = [_native.Parker() for _ in range(3000)]

    def first(i: int) -> int:
        parkers[i].park(0)  # a wait that never parks
        time.sleep(0)
        return i

    futures = [spawn(loom, lambda i=i: first(i), i % 256) for i in range(3000)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(3000))
    wait_until(lambda: loom.stats()["finished"] == 3000)
    for parker in parkers:
        parker.unpark()
    futures = [
        spawn(loom, lambda i=i: parkers[i].park(TIMEOUT), 255 - i % 256) for i in range(3000)
    ]
    assert all(f.result(timeout=TIMEOUT) for f in futures)
