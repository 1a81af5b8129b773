"""Greenlet reuse (a finished virtual thread's greenlet runs the next one) and the native
batch behind an unbounded pool's ``map`` and ``starmap``."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time
from typing import Any

import greenlet
import pytest
from ringloom import _native
from ringloom.virtual_thread import VirtualThreadPool
from support import one_worker_held

TIMEOUT = 30


def test_sequential_tasks_reuse_the_finished_greenlet() -> None:
    # Each greenlet is kept alive by the list, so without reuse every task would show
    # a distinct object.
    seen: list[Any] = []
    with VirtualThreadPool(max_platform_threads=1) as pool:
        for _ in range(200):
            pool.submit(lambda: seen.append(greenlet.getcurrent())).result(TIMEOUT)
    assert len(seen) == 200
    assert len({id(g) for g in seen}) <= 2


def test_a_reused_greenlet_starts_each_task_in_a_new_context() -> None:
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=-1)

    def task(i: int) -> int:
        before = var.get()
        var.set(i)
        _native.sleep(0)  # a park in between keeps the task's own context
        assert var.get() == i
        return before

    with VirtualThreadPool(max_platform_threads=1) as pool:
        seen = [pool.submit(task, i).result(TIMEOUT) for i in range(100)]
        assert pool.map(task, range(1000)) == [-1] * 1000
    assert seen == [-1] * 100


def test_a_failed_task_leaves_nothing_to_the_next_on_its_greenlet() -> None:
    def fail() -> None:
        raise ValueError("boom")

    def clean() -> tuple[Any, ...]:
        return sys.exc_info()

    with VirtualThreadPool(max_platform_threads=1) as pool:
        for _ in range(20):
            with pytest.raises(ValueError, match="boom"):
                pool.submit(fail).result(TIMEOUT)
            assert pool.submit(clean).result(TIMEOUT) == (None, None, None)


def test_batch_map_results_in_order_and_counts() -> None:
    with VirtualThreadPool(max_platform_threads=2) as pool:
        assert pool.map(lambda x: x * 2, range(20_000)) == [x * 2 for x in range(20_000)]
        assert pool.starmap(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
        assert pool.map(pow, [2, 3, 4], [2, 2]) == [4, 9]  # zip stops at the shortest
        stats = pool.get_stats()
    assert stats["completed_threads"] == 20_004
    assert stats["total_threads_created"] == 20_004
    assert stats["active_threads"] == 0
    assert stats["pending"] == 0


def test_batch_map_error_skips_the_later_calls_not_started() -> None:
    ran: list[int] = []

    def task(i: int) -> int:
        ran.append(i)
        if i == 0:
            raise LookupError(i)
        return i

    with VirtualThreadPool(max_platform_threads=1) as pool:
        with pytest.raises(LookupError):
            pool.map(task, range(1000))
        stats = pool.get_stats()
    assert 0 in ran and len(ran) < 1000
    assert stats["cancelled"] == 1000 - len(ran)
    assert stats["completed_threads"] == len(ran)
    assert stats["failed"] == 1


def test_batch_map_error_still_runs_earlier_calls_which_come_first() -> None:
    # Call 5 fails at once; call 1 fails only after it: the error raised is call 1's,
    # in input order, because the calls before a failure are not skipped.
    opened = threading.Event()

    def task(i: int) -> int:
        if i == 5:
            opened.set()
            raise KeyError(5)
        if i == 1:
            while not opened.is_set():
                _native.sleep(0.001)
            raise KeyError(1)
        return i

    with VirtualThreadPool(max_platform_threads=2) as pool:
        with pytest.raises(KeyError) as info:
            pool.map(task, range(10))
    assert info.value.args == (1,)


def test_batch_map_timeout_skips_what_has_not_started() -> None:
    opened = threading.Event()

    def task(i: int) -> int:
        while not opened.is_set():
            _native.sleep(0.001)
        return i

    with VirtualThreadPool(max_platform_threads=1) as pool:
        with pytest.raises(TimeoutError):
            pool.map(task, range(5), timeout=0.05)
        opened.set()
        pool.shutdown(wait=True)
        stats = pool.get_stats()
    assert stats["completed_threads"] + stats["cancelled"] == 5
    assert stats["active_threads"] == 0
    with pytest.raises(ValueError):
        VirtualThreadPool().map(abs, [1], timeout=-1)


def test_shutdown_waits_for_a_batch_map_in_flight() -> None:
    opened = threading.Event()
    done: list[int] = []

    def task(i: int) -> int:
        while not opened.is_set():
            _native.sleep(0.001)
        done.append(i)
        return i

    pool = VirtualThreadPool(max_platform_threads=2)
    mapped: list[list[int]] = []
    mapper = threading.Thread(target=lambda: mapped.append(pool.map(task, range(50))))
    mapper.start()
    while pool.get_stats()["total_threads_created"] < 50:
        _native.sleep(0.001)
    closer = threading.Thread(target=pool.shutdown)
    closer.start()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.map(abs, [1])
    opened.set()
    closer.join(TIMEOUT)
    mapper.join(TIMEOUT)
    assert not closer.is_alive() and not mapper.is_alive()
    assert sorted(done) == list(range(50))
    assert mapped == [list(range(50))]


def test_batch_map_inside_a_virtual_thread_parks_it() -> None:
    # One worker: a map that blocked it would wait for calls only it can run.
    with VirtualThreadPool(max_platform_threads=1) as pool:
        outer = pool.submit(lambda: pool.map(lambda x: x + 1, range(100)))
        assert outer.result(TIMEOUT) == list(range(1, 101))


def test_closing_the_pool_under_a_batch_map_fails_it_instead_of_hanging() -> None:
    def task(i: int) -> int:
        _native.sleep(60)
        return i

    pool = VirtualThreadPool(max_platform_threads=2)
    errors: list[BaseException] = []

    def mapper() -> None:
        try:
            pool.map(task, range(100))
        except BaseException as err:  # noqa: BLE001 (the test looks at it)
            errors.append(err)

    thread = threading.Thread(target=mapper)
    thread.start()
    while pool.get_stats()["parked"] < 100:
        _native.sleep(0.001)
    pool._terminate()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors


def test_batch_bad_input() -> None:
    with pytest.raises(TypeError):
        _native.Batch([], "not callable")
    loom = _native.Loom(workers=1)
    try:
        batch = _native.Batch([None], lambda _batch: None)
        with pytest.raises(TypeError):
            loom.spawn_batch(abs, [[1]], batch)  # each call's arguments: a tuple
        with pytest.raises(TypeError):
            loom.spawn_batch(42, [(1,)], batch)
        with pytest.raises(ValueError):
            loom.spawn_batch(abs, [(1,)], batch, True, 256)
        assert batch.remaining == 0
    finally:
        loom.close()


CTRL_C_UNBOUNDED = """
import os, signal, threading, time
from ringloom import VirtualThreadPool

pool = VirtualThreadPool(max_platform_threads=2)

def ctrl_c():
    while pool.get_stats()["parked"] < 100:  # every call of the map asleep
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=ctrl_c, daemon=True).start()
try:
    with pool:
        pool.map(time.sleep, [60] * 100)
except KeyboardInterrupt:
    stats = pool.get_stats()
    print("interrupted", stats["active_threads"], stats["pending"])
"""


def test_ctrl_c_during_a_batch_map_returns_promptly() -> None:
    # The calls sleep 60 s: finishing before the timeout means they were stopped.
    out = subprocess.run(
        [sys.executable, "-c", CTRL_C_UNBOUNDED], capture_output=True, text=True, timeout=45
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["interrupted", "0", "0"], out.stdout


def test_a_batch_map_refused_by_a_closed_loom_leaves_nothing_to_wait_for() -> None:
    pool = VirtualThreadPool(max_platform_threads=1)
    assert pool.map(abs, [-1]) == [1]
    assert pool._loom is not None
    pool._loom.close()  # as at interpreter exit, under the pool
    with pytest.raises(RuntimeError):
        pool.map(abs, [-1, -2])
    closer = threading.Thread(target=pool.shutdown)
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert pool.get_stats()["active_threads"] == 0


def test_a_map_runs_on_every_worker() -> None:
    # Calls that hold their worker without parking, as hashing or compression does (a
    # stock sleep, with is_blocking=False: the GIL is let go of, the worker is not).
    def hold(_: int) -> int:
        time.sleep(0.002)
        return threading.get_native_id()

    with VirtualThreadPool(max_platform_threads=2) as pool:
        for _ in range(5):
            ran_on = pool.map(hold, range(64), is_blocking=False, timeout=TIMEOUT)
            assert len(set(ran_on)) == 2, f"one worker ran the whole map: {set(ran_on)}"


def test_an_idle_worker_starts_the_calls_queued_on_a_held_one() -> None:
    with VirtualThreadPool(max_platform_threads=2) as pool, one_worker_held(pool) as held:
        # Half of the map's calls are queued on the held worker first; only a steal by
        # the other one gets them done before the hold ends.
        ran_on = pool.map(lambda _: threading.get_native_id(), range(400), timeout=TIMEOUT)
    assert held not in ran_on
    assert len(ran_on) == 400
