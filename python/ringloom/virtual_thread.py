"""Virtual thread pools: many Python callables on a few ringloom workers.

A virtual thread runs one callable in a greenlet on a worker of the ringloom runtime.
When it blocks (``ringloom.sleep``, ``ringloom.wait_fd`` and, with the interception
layer, ``time.sleep``, sockets, files) it parks and its worker runs others meanwhile.
CPU-bound Python still holds the GIL: virtual threads give concurrency for waiting, not
parallel computation of bytecode.

Example::

    from ringloom.virtual_thread import VirtualThreadPool

    def io_task(duration, message):
        time.sleep(duration)
        return f"Completed: {message}"

    with VirtualThreadPool(max_platform_threads=2) as pool:
        print(pool.submit(io_task, 0.1, "Task 1").result())
        results = pool.starmap(io_task, [(0.1, f"t{i}") for i in range(10)])

This module is a drop-in for ``pyferris.virtual_thread``: porting code is a change of
the import line only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import heapq
import itertools
import os
import select
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ringloom import _fork, _native
from ringloom import sync as _sync
from ringloom import watchdog as _watchdog

__all__ = [
    "DEFAULT_PLATFORM_THREADS",
    "AsyncVirtualThreadPool",
    "VirtualThreadPool",
    "run_in_virtual_thread",
    "virtual_map",
    "virtual_thread_benchmark",
]

T = TypeVar("T")

#: Runtime workers of a pool created without ``max_platform_threads``. One and two
#: workers tied on throughput here (10,000 sleepers; a CPU-light mix: the GIL serializes
#: the Python either way), and two keep the pool moving when one task blocks its worker
#: without parking (a call not intercepted, ``is_blocking=False``, a C extension).
#: See README ("Python: virtual threads").
DEFAULT_PLATFORM_THREADS = 2

#: The priority of a task submitted without one.
DEFAULT_PRIORITY = 128

#: How long a wait on the main thread blocks before it lets a pending Ctrl-C through.
_CTRL_C_SLICE = 0.1

#: ``watchdog_threshold`` not given: ``ringloom.watchdog.default_threshold()``.
_ENV_THRESHOLD: Any = object()


def _check_count(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not 0 <= priority <= 255:
        raise ValueError(f"priority must be in 0..255, got {priority}")
    return priority


class _Future(concurrent.futures.Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` whose ``result()`` and ``exception()`` park a
    virtual thread that waits on them (a worker blocked there could hold the very task
    it waits for), and block the stock way elsewhere."""

    def _park_until_done(self, timeout: float | None) -> float | None:
        """Parks until done or ``timeout``; returns the timeout left for the stock
        wait (0 once parked: done, or timed out)."""
        if self.done():
            return timeout
        if not _native.in_virtual_thread():
            return self._wait_on_main_thread(timeout)
        read_end, write_end = os.pipe()

        def wake(_: concurrent.futures.Future[Any]) -> None:
            # The write end closes here, never earlier: its number cannot be reused
            # while this callback may still write to it.
            try:
                os.write(write_end, b"x")
            finally:
                os.close(write_end)

        try:
            self.add_done_callback(wake)
            _native.wait_fd(read_end, select.POLLIN, timeout)
        finally:
            os.close(read_end)
        return 0

    def _wait_on_main_thread(self, timeout: float | None) -> float | None:
        """On the main thread, waits in slices; returns the timeout left. A SIGINT whose
        C handler runs just before the stock wait blocks (the thread that sent it got
        the GIL as this one let go of it to block) does not interrupt that wait: the
        KeyboardInterrupt stays pending until the wait ends, so an unbounded wait would
        ignore Ctrl-C (seen: a few Ctrl-C tests in a hundred hung). A slice ends, and
        the interpreter raises it."""
        if threading.current_thread() is not threading.main_thread():
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = _CTRL_C_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return 0
            # The future's own condition, as the stock wait uses (``cf.wait`` would build
            # a waiter and take every lock twice per slice).
            with self._condition:  # type: ignore[attr-defined]
                if not self.done():
                    self._condition.wait(min(left, _CTRL_C_SLICE))  # type: ignore[attr-defined]
        return 0

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._park_until_done(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._park_until_done(timeout))


class _WorkItem:
    """A submitted call: queued in the pool, then dispatched to the Loom. It is also
    its future's done callback: no callback object per call (each submit's objects are
    work for the cyclic GC, which was 40% of a trivial submit's CPU)."""

    __slots__ = ("pool", "future", "func", "args", "priority", "intercept", "dispatched")

    def __init__(
        self,
        pool: VirtualThreadPool,
        future: concurrent.futures.Future[Any],
        func: Callable[..., Any],
        args: tuple[Any, ...],
        priority: int,
        intercept: bool,
    ) -> None:
        self.pool = pool
        self.future = future
        self.func = func
        self.args = args
        self.priority = priority
        self.intercept = intercept
        self.dispatched = False

    def __call__(self, future: concurrent.futures.Future[Any]) -> None:
        self.pool._done(self, future)


class VirtualThreadPool(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose tasks run as virtual threads.

    ``max_platform_threads`` is the number of runtime workers (OS threads; default
    ``DEFAULT_PLATFORM_THREADS``). ``max_virtual_threads`` bounds how many tasks run at
    once (default: no bound); more are queued, never refused, and the queue hands out
    the lowest ``priority`` first (0..255, FIFO within a priority).
    ``watchdog_threshold``: seconds a task may run without parking before the watchdog
    logs where it is (logger ``ringloom``, see ``ringloom.watchdog``); default 0.1, or
    ``RINGLOOM_WATCHDOG_MS``; None disables it.

    Example::

        with VirtualThreadPool(max_virtual_threads=1000) as pool:
            future = pool.submit(pow, 2, 10, priority=50)
            assert future.result() == 1024
            assert pool.map(abs, [-1, -2]) == [1, 2]   # a list, in input order
    """

    def __init__(
        self,
        max_platform_threads: int | None = None,
        max_virtual_threads: int | None = None,
        watchdog_threshold: float | None = _ENV_THRESHOLD,
    ) -> None:
        workers = _check_count("max_platform_threads", max_platform_threads)
        self._watchdog_threshold = (
            _watchdog.default_threshold()
            if watchdog_threshold is _ENV_THRESHOLD
            else _watchdog.check_threshold(watchdog_threshold)
        )
        self._watchdog: _watchdog.Watchdog | None = None
        self._workers: int = workers if workers is not None else DEFAULT_PLATFORM_THREADS
        self._limit = _check_count("max_virtual_threads", max_virtual_threads)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[tuple[int, int, _WorkItem]] = []
        self._seq = itertools.count()
        self._live: set[_WorkItem] = set()  # submitted, not done
        self._batches: dict[_native.Batch, int] = {}  # maps in flight: their sizes
        self._running = 0  # dispatched, not done
        self._created = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._loom: _native.Loom | None = None  # created at the first submit
        self._shutdown = False
        self._broken = False  # the Loom was closed under us (interpreter exit)
        _fork.track(self)  # its locks and runtime are reset in a forked child

    # -- submitting ------------------------------------------------------------------

    def submit(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
        **kwargs: Any,
    ) -> concurrent.futures.Future[T]:
        """Runs ``fn(*args, **kwargs)`` in a virtual thread; returns its future.

        ``priority``: 0..255, lower first: orders the tasks waiting for a free slot,
        and the ready virtual threads of a worker (FIFO within one priority).
        ``is_blocking``: None or True lets the interception layer turn the task's
        blocking calls into parks; False runs it as plain code (CPU-only work).

        Example: ``pool.submit(fetch, url, is_blocking=True).result()``
        """
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        priority = _check_priority(priority)
        intercept = is_blocking is None or bool(is_blocking)
        if kwargs:
            fn, args = functools.partial(fn, *args, **kwargs), ()
        future: concurrent.futures.Future[T] = _Future()
        item = _WorkItem(self, future, fn, args, priority, intercept)
        start = False
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a VirtualThreadPool after shutdown")
            if self._broken:
                raise RuntimeError(_fork.closed_message(self))
            self._open()
            self._created += 1
            self._live.add(item)
            if self._limit is None or self._running < self._limit:
                self._running += 1
                item.dispatched = start = True
            else:
                heapq.heappush(self._queue, (priority, next(self._seq), item))
        future.add_done_callback(item)
        if start:
            self._start(item)
        return future

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in zip(*iterables)]``, run in virtual threads.

        Unlike ``Executor.map`` it returns a list (in input order), once every call is
        done. The first exception (in input order) is raised, after the calls not yet
        started are cancelled; so are they on ``timeout`` (seconds for the whole map,
        ``TimeoutError``) and on Ctrl-C. ``chunksize`` is accepted for compatibility.

        Example: ``pool.map(pow, [2, 3], [2, 2]) == [4, 9]``
        """
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        priority = _check_priority(priority)
        if self._limit is None:
            return self._map_batch(fn, list(zip(*iterables)), timeout, priority, is_blocking)
        futures = [
            self.submit(fn, *args, priority=priority, is_blocking=is_blocking)
            for args in zip(*iterables)
        ]
        return _collect(futures, timeout)

    def starmap(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        *,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in iterable]``, run in virtual threads; a list.

        Example: ``pool.starmap(pow, [(2, 2), (3, 2)]) == [4, 9]``
        """
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        priority = _check_priority(priority)
        if self._limit is None:
            calls = [tuple(args) for args in iterable]
            return self._map_batch(fn, calls, timeout, priority, is_blocking)
        futures = [
            self.submit(fn, *args, priority=priority, is_blocking=is_blocking) for args in iterable
        ]
        return _collect(futures, timeout)

    def _map_batch(
        self,
        fn: Callable[..., T],
        calls: list[tuple[Any, ...]],
        timeout: float | None,
        priority: int,
        is_blocking: bool | None,
    ) -> list[T]:
        """``map`` of a pool without a bound: the calls go out as one native batch,
        whose results fill one list, without a future per call (the futures' locks and
        callbacks cost more than a trivial call's virtual thread)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative")
        if not calls:
            return []
        results: list[Any] = [None] * len(calls)
        finished = _sync.Event()
        batch = _native.Batch(results, functools.partial(self._batch_done, finished))
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a VirtualThreadPool after shutdown")
            if self._broken:
                raise RuntimeError(_fork.closed_message(self))
            loom = self._open()
            self._created += len(calls)
            self._running += len(calls)
            self._batches[batch] = len(calls)
        intercept = is_blocking is None or bool(is_blocking)
        try:
            loom.spawn_batch(fn, calls, batch, intercept, priority)
        except BaseException as err:
            # Nothing was started: the batch is counted out here, or a shutdown would
            # wait for it for ever. A RuntimeError is the Loom closed under us
            # (interpreter exit).
            with self._lock:
                self._broken = self._broken or isinstance(err, RuntimeError)
                self._batches.pop(batch, None)
                self._running -= len(calls)
                self._cancelled += len(calls)
                if not self._live and not self._batches:
                    self._idle.notify_all()
            raise
        try:
            if not finished.wait(timeout):
                raise TimeoutError(f"map did not finish within {timeout} s")
        except BaseException:
            batch.cancel()  # the calls not started yet; Ctrl-C or timeout
            raise
        error = batch.error
        if error is not None:
            raise error[1]
        return results

    def _batch_done(self, finished: _sync.Event, batch: _native.Batch) -> None:
        """A batch's last call is over (on a worker): counts, then wakes its map."""
        with self._lock:
            size = self._batches.pop(batch, 0)
            self._running -= size
            self._completed += size - batch.skipped
            self._failed += batch.failed
            self._cancelled += batch.skipped
            if not self._live and not self._batches:
                self._idle.notify_all()
        finished.set()

    def _open(self) -> _native.Loom:
        """The Loom, created (with the watchdog) at the first task. Lock held."""
        if self._loom is None:
            self._loom = _native.Loom(workers=self._workers)
            if self._watchdog_threshold is not None:
                self._watchdog = _watchdog.Watchdog(self._loom, self._watchdog_threshold).start()
        return self._loom

    # -- completion and dispatch -----------------------------------------------------

    def _start(self, item: _WorkItem) -> None:
        loom = self._loom
        try:
            if loom is None:
                raise RuntimeError("the VirtualThreadPool's runtime is closed")
            loom.spawn(item.func, item.future, item.intercept, item.priority, item.args)
        except RuntimeError as err:
            # The Loom was closed (at interpreter exit): fail this and everything queued,
            # without dispatching more (no recursion through the done callbacks).
            with self._lock:
                self._broken = True
                queued = [queued_item for _, _, queued_item in self._queue]
                self._queue.clear()
            for failed in [item, *queued]:
                if failed.future.set_running_or_notify_cancel():
                    failed.future.set_exception(RuntimeError(str(err)))

    def _done(self, item: _WorkItem, future: concurrent.futures.Future[Any]) -> None:
        """The future's done callback: counts, and dispatches the next queued task."""
        start: list[_WorkItem] = []
        with self._lock:
            self._live.discard(item)
            if future.cancelled():
                self._cancelled += 1
            else:
                self._completed += 1
                if future.exception() is not None:
                    self._failed += 1
            if item.dispatched:
                self._running -= 1
                while (
                    not self._broken
                    and self._queue
                    and (self._limit is None or self._running < self._limit)
                ):
                    _, _, nxt = heapq.heappop(self._queue)
                    if nxt.future.done():  # cancelled while queued
                        continue
                    nxt.dispatched = True
                    self._running += 1
                    start.append(nxt)
            if not self._live and not self._batches:
                self._idle.notify_all()
        for nxt in start:
            self._start(nxt)

    # -- monitoring and shutdown -----------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """A snapshot of the pool's counters.

        ``active_threads`` (dispatched, not done), ``pending`` (queued for a slot),
        ``completed_threads`` (returned or raised), ``failed`` (raised), ``cancelled``,
        ``total_threads_created`` (submitted), ``platform_threads`` (workers),
        ``max_virtual_threads``, ``parked`` (waiting for a ring completion now),
        ``parks``, ``driver``, ``ring_submissions``, ``ring_completions``,
        ``blocking_pool_threads``, and the runtime's own counters (``ops_submitted``,
        ``ops_completed``, ``ring_enters``, ``polls``, ``tasks_stolen``).

        Example: ``pool.get_stats()["completed_threads"]``
        """
        with self._lock:
            stats: dict[str, Any] = {
                "active_threads": self._running,
                "pending": len(self._live) - (self._running - sum(self._batches.values())),
                "completed_threads": self._completed,
                "failed": self._failed,
                "cancelled": self._cancelled,
                "total_threads_created": self._created,
                "platform_threads": self._workers,
                "max_virtual_threads": self._limit,
                "shutdown": self._shutdown,
            }
            loom = self._loom
            idle = "closed" if self._broken else "not started"
        native = loom.stats() if loom is not None else {"driver": idle}
        stats["parked"] = native.get("parked", 0)
        stats["parks"] = native.get("parks", 0)
        for key in (
            "driver",
            "ops_submitted",
            "ops_completed",
            "ring_enters",
            "polls",
            "tasks_stolen",
            "blocking_threads",
        ):
            if key in native:
                stats[key] = native[key]
        # The names DESIGN.md promises, beside the runtime's own.
        stats["ring_submissions"] = native.get("ops_submitted", 0)
        stats["ring_completions"] = native.get("ops_completed", 0)
        stats["blocking_pool_threads"] = native.get("blocking_threads", 0)
        return stats

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuses new tasks; ``cancel_futures`` cancels those not started yet.

        With ``wait`` it returns once every accepted task is done and the workers are
        stopped; without, the workers stop in the background once the tasks are done.
        Called from one of the pool's own workers (a task, or a future's done callback,
        which runs there), it cannot wait for them: it returns at once, as without
        ``wait``. Calling it again is harmless.

        Example: ``pool.shutdown(wait=True, cancel_futures=True)``
        """
        with self._lock:
            self._shutdown = True
            live = list(self._live) if cancel_futures else []
            batches = list(self._batches) if cancel_futures else []
        for item in live:
            item.future.cancel()  # refused (False) by the ones already running
        for batch in batches:
            batch.cancel()
        loom = self._loom
        if wait and not (loom is not None and loom.on_worker()):
            self._close()
        else:
            threading.Thread(target=self._close, name="ringloom-pool-shutdown", daemon=True).start()

    def _close(self) -> None:
        """Waits for every accepted task, then stops the workers."""
        # On the main thread in slices, as `_Future._wait_on_main_thread` (a Ctrl-C
        # handled as the stock wait starts would wait with it for every task).
        slice_ = _CTRL_C_SLICE if threading.current_thread() is threading.main_thread() else None
        try:
            with self._lock:
                while self._live or self._batches:
                    self._idle.wait(slice_)
        except BaseException:  # Ctrl-C while waiting: stop everything now
            self._terminate()
            raise
        self._terminate()

    def _terminate(self) -> None:
        """Cancels what has not started and stops the workers now: virtual threads
        still running are killed (``GreenletExit`` at their park) and their futures get
        a RuntimeError."""
        with self._lock:
            self._shutdown = True
            self._broken = True  # no more dispatching from done callbacks
            loom, self._loom = self._loom, None
            watchdog, self._watchdog = self._watchdog, None
            live = list(self._live)
            batches = list(self._batches)
        for item in live:
            item.future.cancel()
        for batch in batches:
            batch.cancel()
        if watchdog is not None:
            watchdog.stop()
        if loom is not None:
            if loom.on_worker():
                # Closing waits for the workers, this one included: from another thread.
                threading.Thread(target=loom.close, name="ringloom-pool-close").start()
            else:
                loom.close()

    def __enter__(self) -> VirtualThreadPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> None:
        """``shutdown(wait=True)``; but when Ctrl-C leaves the block, control returns
        at once: queued tasks are cancelled and running ones stopped."""
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._terminate()
        else:
            self.shutdown(wait=True)

    def __repr__(self) -> str:
        return (
            f"<VirtualThreadPool platform_threads={self._workers} "
            f"max_virtual_threads={self._limit} shutdown={self._shutdown}>"
        )


def _collect(futures: list[concurrent.futures.Future[T]], timeout: float | None) -> list[T]:
    """The futures' results in order; on any failure the rest are cancelled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        results = []
        for future in futures:
            if deadline is None:
                results.append(future.result())
            else:
                results.append(future.result(max(0.0, deadline - time.monotonic())))
        return results
    except BaseException:
        for future in futures:
            future.cancel()
        raise


class AsyncVirtualThreadPool:
    """A ``VirtualThreadPool`` for asyncio code: ``await`` its results.

    Example::

        async with AsyncVirtualThreadPool() as pool:
            square = await pool.submit(pow, 3, 2)
            squares = await pool.map(abs, [-1, -2, -3])
    """

    def __init__(
        self,
        max_platform_threads: int | None = None,
        max_virtual_threads: int | None = None,
    ) -> None:
        self._pool = VirtualThreadPool(max_platform_threads, max_virtual_threads)

    @property
    def pool(self) -> VirtualThreadPool:
        """The underlying executor (also usable with ``loop.run_in_executor``)."""
        return self._pool

    async def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """Runs ``fn(*args, **kwargs)`` in a virtual thread and returns its result."""
        future = self._pool.submit(fn, *args, priority=priority, is_blocking=is_blocking, **kwargs)
        return await asyncio.wrap_future(future)

    async def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in zip(*iterables)]`` in virtual threads, a list."""
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        futures = [
            self._pool.submit(fn, *args, priority=priority, is_blocking=is_blocking)
            for args in zip(*iterables)
        ]
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def starmap(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in iterable]`` in virtual threads, a list."""
        return await self.map(
            lambda args: fn(*args),
            [tuple(args) for args in iterable],
            priority=priority,
            is_blocking=is_blocking,
        )

    def get_stats(self) -> dict[str, Any]:
        """The underlying pool's ``get_stats()``."""
        return self._pool.get_stats()

    async def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shuts the pool down without blocking the event loop."""
        if wait:
            await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(self._pool.shutdown, wait=True, cancel_futures=cancel_futures),
            )
        else:
            self._pool.shutdown(wait=False, cancel_futures=cancel_futures)

    async def __aenter__(self) -> AsyncVirtualThreadPool:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown(wait=True)


_default_pool: VirtualThreadPool | None = None
_default_lock = threading.Lock()


def _shared_pool() -> VirtualThreadPool:
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = VirtualThreadPool()
        return _default_pool


def run_in_virtual_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Runs ``fn(*args, **kwargs)`` in a virtual thread of a shared pool; its result.

    Called from inside a virtual thread, it calls ``fn`` directly (waiting for another
    virtual thread there would hold the worker).

    Example: ``run_in_virtual_thread(sum, range(10)) == 45``
    """
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    if _native.in_virtual_thread():
        return fn(*args, **kwargs)
    return _shared_pool().submit(fn, *args, **kwargs).result()


def virtual_map(fn: Callable[[Any], T], iterable: Iterable[Any]) -> list[T]:
    """``[fn(x) for x in iterable]``, each call in a virtual thread of a shared pool.

    Example: ``virtual_map(abs, [-1, -2]) == [1, 2]``
    """
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    if _native.in_virtual_thread():
        return [fn(x) for x in iterable]
    return _shared_pool().map(fn, iterable)


def virtual_thread_benchmark(
    fn: Callable[..., Any],
    test_cases: Iterable[Any],
    traditional_threads: bool = True,
    max_platform_threads: int = 4,
) -> dict[str, Any]:
    """Times ``fn`` over ``test_cases`` in virtual threads and, optionally, OS threads.

    Each test case is a tuple of arguments (anything else is one argument). Returns
    ``{'virtual_threads': {'time': s, 'results': [...]}, 'traditional_threads':
    {'time': s, 'results': [...]} or None, 'speedup': traditional / virtual or None,
    'tasks': n, 'max_platform_threads': n}``. One run each: a rough comparison.

    Example::

        r = virtual_thread_benchmark(sum, [([1, 2],), ([3],)])
        print(f"{r['speedup']:.2f}x")
    """
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    _check_count("max_platform_threads", max_platform_threads)
    cases = [case if isinstance(case, tuple) else (case,) for case in test_cases]

    start = time.perf_counter()
    with VirtualThreadPool(max_platform_threads=max_platform_threads) as pool:
        vt_results = pool.starmap(fn, cases)
    vt_time = time.perf_counter() - start
    report: dict[str, Any] = {
        "virtual_threads": {"time": vt_time, "results": vt_results},
        "traditional_threads": None,
        "speedup": None,
        "tasks": len(cases),
        "max_platform_threads": max_platform_threads,
    }
    if traditional_threads:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_platform_threads) as executor:
            tt_results = [f.result() for f in [executor.submit(fn, *c) for c in cases]]
        tt_time = time.perf_counter() - start
        report["traditional_threads"] = {"time": tt_time, "results": tt_results}
        report["speedup"] = tt_time / vt_time if vt_time > 0 else float("inf")
    return report
