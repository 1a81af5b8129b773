"""``map`` of a bounded pool (``max_virtual_threads``): one native batch that runs at most
as many calls at once as the pool has free places, starting the next as one ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from ringloom import _native
from ringloom.sync import Lock
from ringloom.virtual_thread import VirtualThreadPool
from support import wait_until

TIMEOUT = 30


class Running:
    """Counts calls running at once; the highest count seen is ``most``."""

    def __init__(self) -> None:
        self.lock = Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class Gathering:
    """Holds each caller until ``parties`` of them are in at once (a cyclic barrier made
    of parks): a call gets through only if that many can run together."""

    def __init__(self, parties: int) -> None:
        self.lock = Lock()
        self.parties = parties
        self.waiting = 0
        self.generation = 0

    def gather(self) -> None:
        with self.lock:
            generation = self.generation
            self.waiting += 1
            if self.waiting == self.parties:
                self.waiting = 0
                self.generation += 1
                return
        while True:
            with self.lock:
                if self.generation != generation:
                    return
            _native.sleep(0.001)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bounded_map_runs_exactly_the_bound_at_once(workers: int) -> None:
    bound = 8
    running = Running()
    gathering = Gathering(bound)

    def call(i: int) -> int:
        running.enter()
        try:
            gathering.gather()  # passes only with `bound` calls running together
            return i * i
        finally:
            running.leave()

    with VirtualThreadPool(workers, max_virtual_threads=bound) as pool:
        assert pool.map(call, range(200), timeout=TIMEOUT) == [i * i for i in range(200)]
        stats = pool.get_stats()
    assert running.most == bound
    assert stats["completed_threads"] == 200
    assert stats["active_threads"] == 0 and stats["pending"] == 0


def test_a_bounded_map_keeps_order_and_raises_the_first_error() -> None:
    def call(i: int) -> int:
        _native.sleep(0.0001 * (i % 7))
        if i in (30, 170):
            raise KeyError(i)
        return -i

    with VirtualThreadPool(2, max_virtual_threads=5) as pool:
        assert pool.map(call, range(30)) == [-i for i in range(30)]
        with pytest.raises(KeyError) as info:
            pool.map(call, range(400))
        assert info.value.args == (30,)
        stats = pool.get_stats()
        # The calls after the failure that had not started were skipped, not run.
        assert stats["cancelled"] > 0
        assert stats["active_threads"] == 0 and stats["pending"] == 0
        assert pool.starmap(pow, [(2, i) for i in range(50)]) == [2**i for i in range(50)]


def test_a_bounded_map_takes_only_the_places_left_by_running_tasks() -> None:
    bound = 6
    release = threading.Event()
    running = Running()

    def held() -> None:
        running.enter()
        try:
            while not release.is_set():
                _native.sleep(0.001)
        finally:
            running.leave()

    def call(i: int) -> int:
        running.enter()
        try:
            _native.sleep(0.001)
            return i
        finally:
            running.leave()

    with VirtualThreadPool(2, max_virtual_threads=bound) as pool:
        holders = [pool.submit(held) for _ in range(4)]
        wait_until(lambda: running.now == 4)
        assert pool.map(call, range(100), timeout=TIMEOUT) == list(range(100))
        assert running.most == bound  # the map ran in the two places left
        release.set()
        for holder in holders:
            holder.result(TIMEOUT)


def test_a_map_waits_behind_the_bound_when_every_place_is_taken() -> None:
    release = threading.Event()

    def held() -> str:
        while not release.is_set():
            _native.sleep(0.001)
        return "held"

    with VirtualThreadPool(1, max_virtual_threads=2) as pool:
        holders = [pool.submit(held) for _ in range(2)]
        results: list[Any] = []
        mapper = threading.Thread(target=lambda: results.append(pool.map(abs, range(-5, 0))))
        mapper.start()
        wait_until(lambda: pool.get_stats()["pending"] == 5)
        release.set()
        mapper.join(TIMEOUT)
        assert results == [[5, 4, 3, 2, 1]]
        assert [h.result(TIMEOUT) for h in holders] == ["held", "held"]


def test_tasks_queued_behind_a_bounded_map_start_when_it_ends() -> None:
    release = threading.Event()

    def call(i: int) -> int:
        while not release.is_set():
            _native.sleep(0.001)
        return i

    with VirtualThreadPool(2, max_virtual_threads=3) as pool:
        results: list[Any] = []
        mapper = threading.Thread(target=lambda: results.append(pool.map(call, range(10))))
        mapper.start()
        wait_until(lambda: pool.get_stats()["active_threads"] == 3)
        queued = pool.submit(lambda: "queued")
        assert pool.get_stats()["pending"] == 1  # every place is the map's
        release.set()
        mapper.join(TIMEOUT)
        assert results == [list(range(10))]
        assert queued.result(TIMEOUT) == "queued"


def test_a_bounded_map_timeout_skips_the_calls_not_started() -> None:
    release = threading.Event()

    def call(i: int) -> int:
        while not release.is_set():
            _native.sleep(0.001)
        return i

    with VirtualThreadPool(2, max_virtual_threads=4) as pool:
        with pytest.raises(TimeoutError):
            pool.map(call, range(1000), timeout=0.2)
        release.set()
        wait_until(lambda: pool.get_stats()["active_threads"] == 0)
        stats = pool.get_stats()
        assert stats["completed_threads"] == 4  # the four that had started
        assert stats["cancelled"] == 996
        assert pool.map(abs, range(-3, 0)) == [3, 2, 1]


def test_closing_the_pool_under_a_bounded_map_fails_it_instead_of_hanging() -> None:
    def call(i: int) -> int:
        _native.sleep(60)
        return i

    pool = VirtualThreadPool(2, max_virtual_threads=10)
    errors: list[BaseException] = []

    def mapper() -> None:
        try:
            pool.map(call, range(500))
        except BaseException as err:  # noqa: BLE001 (the test looks at it)
            errors.append(err)

    thread = threading.Thread(target=mapper)
    thread.start()
    wait_until(lambda: pool.get_stats()["parked"] == 10)
    pool._terminate()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors


def test_the_native_window_bad_input() -> None:
    loom = _native.Loom(workers=1)
    try:
        batch = _native.Batch([None, None], lambda _batch: None)
        with pytest.raises(ValueError):
            loom.spawn_batch(abs, [(1,), (2,)], batch, True, 128, 0)
        assert batch.remaining == 0
        finished = threading.Event()
        results: list[Any] = [None] * 3
        batch = _native.Batch(results, lambda _batch: finished.set())
        loom.spawn_batch(abs, [(-1,), (-2,), (-3,)], batch, True, 128, 1)
        assert finished.wait(TIMEOUT)
        assert results == [1, 2, 3]
        with pytest.raises(RuntimeError):
            loom.spawn_batch(abs, [(1,), (2,)], batch, True, 128, 1)
    finally:
        loom.close()


def test_bounded_maps_leave_no_task_behind() -> None:
    # Each bounded map starts a starter task per worker; all of them end with the map.
    def call(i: int) -> int:
        _native.sleep(0.0005)
        return i

    def worker_id(_: int) -> int:
        _native.sleep(0.0005)
        return threading.get_native_id()

    with VirtualThreadPool(2, max_virtual_threads=4) as pool:
        # Until calls have run on both workers: each worker's hub (a task for the life
        # of the pool) exists before the count is taken.
        wait_until(lambda: len(set(pool.map(worker_id, range(64)))) == 2)
        loom = pool._loom
        assert loom is not None
        wait_until(lambda: pool.get_stats()["active_threads"] == 0)
        before = loom.stats()["tasks_live"]
        for _ in range(20):
            assert pool.map(call, range(50)) == list(range(50))
        # (`before` may count a starter of the first maps that is just ending.)
        wait_until(lambda: loom.stats()["tasks_live"] <= before)
