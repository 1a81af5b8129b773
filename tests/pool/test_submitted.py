"""Calls submitted from an OS thread: queued for a few starter tasks that hand them to
the workers' hubs in batches (``src/submitted.rs``)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

from ringloom import _native
from ringloom.virtual_thread import VirtualThreadPool
from support import one_worker_held

TIMEOUT = 30


def test_submits_from_an_os_thread_run_once_each_in_submission_order() -> None:
    ran: list[int] = []
    with VirtualThreadPool(max_platform_threads=1) as pool:
        futures = [pool.submit(ran.append, i) for i in range(5_000)]
        for future in futures:
            future.result(TIMEOUT)
    assert sorted(ran) == list(range(5_000))
    if "RINGLOOM_SCHED_SEED" not in os.environ:  # seeded, the hub shuffles on purpose
        assert ran == list(range(5_000))


def test_submits_from_several_threads_all_run() -> None:
    with VirtualThreadPool(max_platform_threads=2) as pool:

        def submit_many(base: int) -> list[int]:
            futures = [pool.submit(lambda i=i: base + i) for i in range(2_000)]
            return [f.result(TIMEOUT) for f in futures]

        with concurrent.futures.ThreadPoolExecutor(4) as submitters:
            results = list(submitters.map(submit_many, range(0, 40_000, 10_000)))
    assert results == [list(range(base, base + 2_000)) for base in range(0, 40_000, 10_000)]


def test_an_idle_worker_takes_submits_while_the_other_is_held() -> None:
    with VirtualThreadPool(max_platform_threads=2) as pool, one_worker_held(pool) as held:
        # Done only if the worker that is not held starts them: the hold ends after.
        futures = [pool.submit(threading.get_native_id) for _ in range(500)]
        ran_on = [f.result(TIMEOUT) for f in futures]
    assert held not in ran_on


def test_calls_still_queued_when_the_loom_closes_fail_their_futures() -> None:
    loom = _native.Loom(workers=1)
    holding = threading.Event()

    def hold() -> None:
        # Holds the only worker (no park: not intercepted) until close has begun, so
        # the calls below stay queued.
        holding.set()
        while loom.stats()["driver"] != "closed":
            time.sleep(0.001)

    held: concurrent.futures.Future[None] = concurrent.futures.Future()
    loom.spawn(hold, held, False)
    assert holding.wait(TIMEOUT)
    queued = [concurrent.futures.Future() for _ in range(100)]
    for future in queued:
        loom.spawn(abs, future, True, 128, (-1,))
    loom.close()
    assert held.result(TIMEOUT) is None
    for future in queued:
        error = future.exception(TIMEOUT)
        assert isinstance(error, RuntimeError), error
        assert "shut down before this virtual thread started" in str(error)
