"""Generated programs over the pool (hypothesis stateful testing): the rules and the
model both generated tests share (importable as ``generated``: ``tests`` is on the path).

A program makes a ``VirtualThreadPool`` (bounded or not), then a random sequence of:
submits (at random priorities) that return, raise, sleep, wait on an event, take a
shared lock, or take an item from a shared queue; maps and starmaps; cancellations;
waits that time out while their future goes on; events set; items put from the test's
OS thread; threads that take the same lock; a task that submits to its own pool and
waits for that future. At the end every event is set, the pool is shut down as the
program says (waiting, not waiting, or cancelling what has not started), and every
future must end with exactly the outcome the model expects (or cancelled, after a
cancelling shutdown); a future that does not end within ``HANG_LIMIT`` fails the program
with the stack of every thread and every virtual thread's wait. After ``shutdown`` the
process has the descriptors and OS threads it had before.

A failure prints the steps that reproduce it and is kept in the test's
``generated-failures/`` (``KeptFailures``, committed with the fix); every run replays
what is kept there first, then generates the same programs from a fixed seed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import ringloom
import ringloom.watchdog
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from ringloom.queues import Queue
from ringloom.threads import OSThread
from ringloom.virtual_thread import VirtualThreadPool
from support import open_fds, os_threads, wait_until


class KeptFailures(DirectoryBasedExampleDatabase):
    """An example database that never forgets: a program that failed once is saved in
    the directory (to be committed with its fix) and replayed by every later run, even
    after it passes, where hypothesis would delete it."""

    def delete(self, key: bytes, value: bytes) -> None:
        pass

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.save(dest, value)


def run_programs(
    factory: Callable[[], RuleBasedStateMachine], kept: Path, examples: int, steps: int
) -> None:
    """Runs ``examples`` programs of up to ``steps`` steps from ``factory`` (decorated
    with ``@seed``; its digest keys the failures kept in ``kept``)."""
    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=KeptFailures(kept),
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


#: Seconds a future of a generated program may take to end once its events are set.
HANG_LIMIT = 60
EVENTS = 3


class Boom(Exception):
    pass


def give(value: int) -> int:
    return value


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str) -> None:
    raise Boom(message)


def nap(ms: int) -> int:
    ringloom.sleep(ms / 1000)
    return ms


def wait_for(event: Any, index: int) -> int:
    if not event.wait(HANG_LIMIT):
        raise TimeoutError(f"event {index} never set")
    return index


# Every virtual thread noted, for a hang's report (`stacks`).
ringloom.watchdog.track()


def stacks() -> str:
    """Every OS thread's stack, then every virtual thread's with what it is parked on
    (its ring op, or the lock or pool call), for a hang's report."""
    threads = "\n".join(
        f"-- {ident}\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in sys._current_frames().items()
    )
    return f"{threads}\n{ringloom.watchdog.dump_virtual_threads()}"


class GeneratedPrograms(RuleBasedStateMachine):
    """The programs' rules and model. Subclasses choose the primitives the programs
    share (``make_event``, ``make_lock``, ``make_queue``) and may add rules."""

    def make_event(self) -> Any:
        return ringloom.Event()

    def make_lock(self) -> Any:
        return ringloom.Lock()

    def make_queue(self) -> Any:
        return Queue()

    def __init__(self) -> None:
        super().__init__()
        self.fds = open_fds()
        self.threads = os_threads()
        self.pool: VirtualThreadPool | None = None
        # Each future, the outcome the model expects, and the increments it makes.
        self.expected: list[tuple[concurrent.futures.Future[Any], Any, int]] = []
        self.events = [self.make_event() for _ in range(EVENTS)]
        self.lock = self.make_lock()
        self.counter = [0]
        self.items = self.make_queue()
        self.put: list[int] = []
        self.takers: list[concurrent.futures.Future[Any]] = []
        self.os_threads: list[threading.Thread] = []
        self.os_increments = 0

    @initialize(
        limit=st.one_of(st.none(), st.integers(1, 4)),
        workers=st.integers(1, 2),
        ending=st.sampled_from(["wait", "no_wait", "cancel_futures"]),
    )
    def start(self, limit: int | None, workers: int, ending: str) -> None:
        self.limit = limit
        self.ending = ending
        self.pool = VirtualThreadPool(max_platform_threads=workers, max_virtual_threads=limit)

    def expect(
        self, future: concurrent.futures.Future[Any], outcome: Any, increments: int = 0
    ) -> None:
        self.expected.append((future, outcome, increments))

    @rule(value=st.integers(), priority=st.integers(0, 255))
    def submit_value(self, value: int, priority: int) -> None:
        assert self.pool is not None
        self.expect(self.pool.submit(give, value, priority=priority), ("value", value))

    @rule(message=st.text(max_size=5))
    def submit_failure(self, message: str) -> None:
        assert self.pool is not None
        self.expect(self.pool.submit(fail, message), ("raises", Boom, message))

    @rule(ms=st.integers(0, 5))
    def submit_nap(self, ms: int) -> None:
        assert self.pool is not None
        self.expect(self.pool.submit(nap, ms), ("value", ms))

    # A bounded pool runs waiting tasks in its few slots: waits only in an unbounded one,
    # where nothing queues behind them (a thread pool of N would deadlock alike).
    @precondition(lambda self: self.limit is None)
    @rule(index=st.integers(0, EVENTS - 1))
    def submit_event_wait(self, index: int) -> None:
        assert self.pool is not None
        future = self.pool.submit(wait_for, self.events[index], index)
        self.expect(future, ("value", index))

    @rule(index=st.integers(0, EVENTS - 1))
    def set_event(self, index: int) -> None:
        self.events[index].set()

    @rule(times=st.integers(1, 10))
    def submit_locked_increments(self, times: int) -> None:
        assert self.pool is not None
        lock, counter = self.lock, self.counter

        def increment() -> int:
            for _ in range(times):
                with lock:
                    seen = counter[0]
                    time.sleep(0)  # parks inside the critical section
                    counter[0] = seen + 1
            return times

        self.expect(self.pool.submit(increment), ("value", times), times)

    @rule(times=st.integers(1, 30), real=st.booleans())
    def thread_increments(self, times: int, real: bool) -> None:
        """A ``threading.Thread`` (an OS thread, or a virtual thread once patched) or a
        real OS thread takes the lock the pool's tasks take."""
        lock, counter = self.lock, self.counter

        def increment() -> None:
            for _ in range(times):
                with lock:
                    seen = counter[0]
                    time.sleep(0)
                    counter[0] = seen + 1

        thread = OSThread(target=increment) if real else threading.Thread(target=increment)
        thread.start()
        self.os_threads.append(thread)
        self.os_increments += times

    @rule(value=st.integers())
    def put_item(self, value: int) -> None:
        self.items.put(value)
        self.put.append(value)

    # Takers wait in their slots: only in an unbounded pool (see submit_event_wait).
    @precondition(lambda self: self.limit is None)
    @rule()
    def submit_take(self) -> None:
        assert self.pool is not None
        self.takers.append(self.pool.submit(self.items.get, timeout=HANG_LIMIT))

    @rule(values=st.lists(st.integers(), max_size=20))
    def map_values(self, values: list[int]) -> None:
        assert self.pool is not None
        assert list(self.pool.map(give, values)) == values

    @rule(pairs=st.lists(st.tuples(st.integers(), st.integers()), max_size=10))
    def starmap_pairs(self, pairs: list[tuple[int, int]]) -> None:
        assert self.pool is not None
        assert list(self.pool.starmap(add, pairs)) == [a + b for a, b in pairs]

    @precondition(lambda self: self.limit is None)
    @rule(index=st.integers(0, EVENTS - 1))
    def result_times_out(self, index: int) -> None:
        """A wait that gives up: the future (its event unset) goes on and ends later."""
        assert self.pool is not None
        event = ringloom.Event()
        future = self.pool.submit(wait_for, event, index)
        try:
            future.result(timeout=0.001)
        except concurrent.futures.TimeoutError:
            pass
        else:
            raise AssertionError("result() returned before its event was set")
        assert not future.done(), future
        event.set()
        self.expect(future, ("value", index))

    @precondition(lambda self: self.limit is None)
    @rule(value=st.integers())
    def submit_nested(self, value: int) -> None:
        assert self.pool is not None
        pool = self.pool

        def nested() -> int:
            return pool.submit(give, value).result(HANG_LIMIT)

        # ("nested", v): v, or (after a shutdown that did not wait for it) the
        # RuntimeError a submit to a shut-down pool raises, as ThreadPoolExecutor's does.
        self.expect(pool.submit(nested), ("nested", value))

    @precondition(lambda self: bool(self.expected))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.expected) - 1))
        future, _, _ = self.expected[index]
        if future.cancel():
            # It never ran: no outcome, no increments.
            self.expected[index] = (future, ("cancelled",), 0)

    def teardown(self) -> None:
        if self.pool is None:
            return
        for event in self.events:
            event.set()
        # One filler (None) for every taker that no put will serve.
        for _ in range(len(self.takers) - len(self.put)):
            self.items.put(None)
        # The program's ending: a shutdown that waits, one that does not, or one that
        # cancels what has not started (any future may then end cancelled instead).
        may_cancel = self.ending == "cancel_futures"
        if self.ending != "wait":
            self.pool.shutdown(wait=False, cancel_futures=may_cancel)
        made = 0
        taken = []
        try:
            for future, outcome, increments in self.expected:
                try:
                    value = future.result(HANG_LIMIT)
                except concurrent.futures.TimeoutError:
                    raise AssertionError(f"a future never ended\n{stacks()}") from None
                except concurrent.futures.CancelledError:
                    assert outcome == ("cancelled",) or may_cancel, outcome
                    continue
                except Boom as err:
                    assert outcome == ("raises", Boom, err.args[0]), (outcome, err)
                    continue
                except RuntimeError as err:
                    assert outcome[0] == "nested" and self.ending != "wait", (outcome, err)
                    assert "after shutdown" in str(err), err
                    continue
                if outcome[0] == "nested":
                    outcome = ("value", outcome[1])
                assert outcome == ("value", value), (outcome, value)
                made += increments
            for taker in self.takers:
                try:
                    taken.append(taker.result(HANG_LIMIT))
                except concurrent.futures.TimeoutError:
                    raise AssertionError(f"a taker never ended\n{stacks()}") from None
                except concurrent.futures.CancelledError:
                    assert may_cancel
        finally:
            self.pool.shutdown(wait=True)
            for thread in self.os_threads:
                thread.join(HANG_LIMIT)
        assert all(future.done() for future, _, _ in self.expected)
        # Nothing lost, nothing taken twice: what was taken and what is left is what
        # was put (and the fillers).
        left = []
        while not self.items.empty():
            left.append(self.items.get_nowait())
        got = collections.Counter(x for x in taken + left if x is not None)
        assert got == collections.Counter(self.put), (taken, left, self.put)
        assert self.counter[0] == made + self.os_increments
        wait_until(lambda: os_threads() <= self.threads)
        wait_until(lambda: open_fds() <= self.fds)
