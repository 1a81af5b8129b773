"""``VirtualThreadPool``: a ``concurrent.futures.Executor`` whose tasks are virtual
threads on a ringloom runtime (a ``Loom``) of its own.

Two dispatch paths: ``submit`` (one ``ParkingFuture`` per call, queued by priority
behind ``max_virtual_threads``) and, for an unbounded pool's ``map``/``starmap``, one
native ``Batch`` whose results fill one list.

Example::

    with VirtualThreadPool(max_virtual_threads=1000) as pool:
        assert pool.submit(pow, 2, 10).result() == 1024
        assert pool.map(abs, [-1, -2]) == [1, 2]
"""

from __future__ import annotations

import _thread
import collections
import concurrent.futures
import functools
import heapq
import itertools
import os
import resource
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ringloom import _fork, _native
from ringloom import sync as _sync
from ringloom import watchdog as _watchdog
from ringloom._checks import check_callable, check_count, check_priority, intercepts
from ringloom._future import CTRL_C_SLICE, ParkingFuture, collect

# The pool's own lock is the stock one whatever ``ringloom.monkey`` patches later (this
# module is imported before it can): no critical section of the pool parks, and a done
# callback takes the lock on a worker's hub, outside any virtual thread, where a patched
# lock handed over to a parked virtual thread of that same worker would never be
# released. Waits on ``_idle`` still park a virtual thread: the stock Condition's
# waiter locks come from ``threading._allocate_lock``, patched or not.
_stock_lock = _thread.allocate_lock
_StockCondition = threading.Condition

__all__ = [
    "DEFAULT_PLATFORM_THREADS",
    "DEFAULT_PRIORITY",
    "MAP_FILES_OPEN",
    "VirtualThreadPool",
]

T = TypeVar("T")

#: Runtime workers of a pool created without ``max_platform_threads``. One and two
#: workers tied on throughput here (the GIL serializes the Python either way), and two
#: keep the pool moving when one task blocks its worker without parking (a call not
#: intercepted, ``is_blocking=False``, a C extension). See README.
DEFAULT_PLATFORM_THREADS = 2

#: The priority of a task submitted without one.
DEFAULT_PRIORITY = 128

#: ``watchdog_threshold`` not given: ``ringloom.watchdog.default_threshold()``.
_ENV_THRESHOLD: Any = object()

# Every pool of this process, reset in a forked child (see `_reset_after_fork`).
_pools: weakref.WeakSet[VirtualThreadPool] = weakref.WeakSet()


# How an unbounded pool's call ended (`_ended`); at most this many wait to be counted.
_ENDED_OK, _ENDED_FAILED, _ENDED_CANCELLED = 0, 1, 2
_ENDED_BATCH = 1024


class _Submitted(ParkingFuture):
    """The future of a submitted call, and the pool's record of it: queued, then
    dispatched to the Loom. One object per ``submit`` where a future and a work item
    were two (each object a submit keeps alive is work for the cyclic GC, a third of
    the submitting thread's time at 100,000 futures); the pool's bookkeeping runs as
    its first done callback would."""

    def __init__(
        self,
        pool: VirtualThreadPool,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        priority: int,
        intercept: bool,
    ) -> None:
        super().__init__()
        self._pool: VirtualThreadPool | None = pool
        self._func: Callable[..., Any] | None = func
        self._args: tuple[Any, ...] | None = args
        self._priority = priority
        self._intercept = intercept
        self._dispatched = False

    def _invoke_callbacks(self) -> None:
        pool = self._pool
        if pool is not None:
            self._pool = None
            pool._done(self)
        super()._invoke_callbacks()


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
        workers = check_count("max_platform_threads", max_platform_threads)
        self._watchdog_threshold = (
            _watchdog.default_threshold()
            if watchdog_threshold is _ENV_THRESHOLD
            else _watchdog.check_threshold(watchdog_threshold)
        )
        self._watchdog: _watchdog.Watchdog | None = None
        self._workers: int = workers if workers is not None else DEFAULT_PLATFORM_THREADS
        self._limit = check_count("max_virtual_threads", max_virtual_threads)
        self._lock = _stock_lock()
        self._idle = _StockCondition(self._lock)
        self._queue: list[tuple[int, int, _Submitted]] = []
        self._seq = itertools.count()
        self._live: set[_Submitted] = set()  # submitted, not done
        # Maps in flight: their calls, and the places of the bound they hold.
        self._batches: dict[_native.Batch, tuple[int, int]] = {}
        self._running = 0  # dispatched, not done
        # Ends of an unbounded pool's calls, counted without the lock (see `_done`) and
        # folded into the counts above when they are read (`_count_ended`).
        self._ended: collections.deque[int] = collections.deque()
        self._idle_waiters = 0  # threads in `_close` waiting for the last call to end
        self._created = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._loom: _native.Loom | None = None  # created at the first submit
        self._shutdown = False
        self._broken = False  # the Loom was closed under us (interpreter exit)
        self._inherited = False  # made in the parent of this forked process
        _pools.add(self)  # reset in a forked child (`_reset_after_fork`)

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
        check_callable(fn)
        priority = check_priority(priority)
        intercept = intercepts(is_blocking)
        if kwargs:
            fn, args = functools.partial(fn, *args, **kwargs), ()
        item = _Submitted(self, fn, args, priority, intercept)
        start = False
        with self._lock:
            self._admit()
            self._open()
            self._created += 1
            self._live.add(item)
            if self._limit is None or self._running < self._limit:
                self._running += 1
                item._dispatched = start = True
            else:
                heapq.heappush(self._queue, (priority, next(self._seq), item))
        if start:
            self._start(item)
        return item

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
        done. In a pool with ``max_virtual_threads`` the calls run in the places free
        when ``map`` is called, each starting as an earlier one ends (or, with none
        free, queued behind the bound like ``submit``). The first exception (in input
        order) is raised, after the calls not yet started are cancelled; so are they on
        ``timeout`` (seconds for the whole map, ``TimeoutError``) and on Ctrl-C.
        ``chunksize`` is accepted for compatibility.

        Example: ``pool.map(pow, [2, 3], [2, 2]) == [4, 9]``
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        return self._map_calls(fn, zip(*iterables), timeout, priority, is_blocking)

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
        return self._map_calls(
            fn, (tuple(args) for args in iterable), timeout, priority, is_blocking
        )

    def map_files(
        self,
        fn: Callable[[bytes], T],
        paths: Iterable[str | bytes | os.PathLike[str] | os.PathLike[bytes]],
        *,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
        at_once: int = 0,
    ) -> list[T]:
        """``[fn(contents) for each path]``: each file read whole, then handed to ``fn``,
        in a virtual thread of its own; a list in input order.

        The batch path for jobs over many files: each file is read in one native call
        (an open, a read straight into the ``bytes``, a close), parking while the disk
        is read, with no file object; ``open(path, "rb").read()`` in ``map`` gives the
        same contents with two Python layers around them. At most ``at_once`` files
        (default ``MAP_FILES_OPEN``) are being read at once, fewer if the descriptor
        limit leaves less room, so no number of paths runs out of descriptors. A file
        that cannot be read raises the stock ``OSError`` naming it, as ``map`` raises:
        the first in input order, the calls not started cancelled. ``timeout`` as for
        ``map``.

        Example::

            import hashlib
            digests = pool.map_files(lambda data: hashlib.sha256(data).hexdigest(), paths)
        """
        check_callable(fn)
        if at_once < 0:
            raise ValueError("at_once must be positive (0: MAP_FILES_OPEN)")
        calls = [(path,) for path in paths]
        return self._map_calls(
            functools.partial(_read_then_call, fn),
            calls,
            timeout,
            priority,
            None,
            most=_files_at_once(len(calls), at_once or MAP_FILES_OPEN),
        )

    def _map_calls(
        self,
        fn: Callable[..., T],
        calls: Iterable[tuple[Any, ...]],
        timeout: float | None,
        priority: int,
        is_blocking: bool | None,
        most: int | None = None,
    ) -> list[T]:
        """``map`` and ``starmap``: a native batch for an unbounded pool, else a future
        per call behind the bound. ``most``: at most that many calls run at once."""
        check_callable(fn)
        priority = check_priority(priority)
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative")
        calls = list(calls)
        if not calls:
            return []
        results = self._map_batch(fn, calls, timeout, priority, is_blocking, most)
        if results is not None:
            return results
        # Every place of a bounded pool is taken: the calls queue behind the bound (in
        # turns of `most`, if given).
        deadline = None if timeout is None else time.monotonic() + timeout
        turn = len(calls) if most is None else most
        results = []
        for start in range(0, len(calls), turn):
            futures = [
                self.submit(fn, *args, priority=priority, is_blocking=is_blocking)
                for args in calls[start : start + turn]
            ]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results += collect(futures, left)
        return results

    def _map_batch(
        self,
        fn: Callable[..., T],
        calls: list[tuple[Any, ...]],
        timeout: float | None,
        priority: int,
        is_blocking: bool | None,
        most: int | None = None,
    ) -> list[T] | None:
        """The calls as one native batch, whose results fill one list, without a future
        per call (the futures' locks and callbacks cost more than a trivial call's
        virtual thread). In a bounded pool the batch takes the places free now and runs
        that many calls at once, the next starting as one ends; None (nothing started)
        when no place is free."""
        results: list[Any] = [None] * len(calls)
        finished = _sync.Event()
        batch = _native.Batch(results, functools.partial(self._batch_done, finished))
        window: int | None = None
        with self._lock:
            self._admit()
            if self._limit is not None:
                window = min(len(calls), self._limit - self._running)
                if window <= 0:
                    return None
            if most is not None and most < (len(calls) if window is None else window):
                window = most
            loom = self._open()
            places = len(calls) if window is None else window
            self._created += len(calls)
            self._running += places
            self._batches[batch] = (len(calls), places)
        intercept = intercepts(is_blocking)
        try:
            loom.spawn_batch(fn, calls, batch, intercept, priority, window)
        except BaseException as err:
            # Nothing was started: the batch is counted out here, or a shutdown would
            # wait for it for ever. A RuntimeError is the Loom closed under us
            # (interpreter exit).
            with self._lock:
                self._broken = self._broken or isinstance(err, RuntimeError)
                self._batches.pop(batch, None)
                self._running -= places
                self._cancelled += len(calls)
                self._notify_if_idle()
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
            size, places = self._batches.pop(batch, (0, 0))
            self._running -= places
            self._completed += size - batch.skipped
            self._failed += batch.failed
            self._cancelled += batch.skipped
            start = self._take_queued()
            self._notify_if_idle()
        finished.set()
        for nxt in start:
            self._start(nxt)

    def _admit(self) -> None:
        """Refuses work after shutdown or once the runtime is gone. Lock held."""
        if self._shutdown:
            raise RuntimeError("cannot submit to a VirtualThreadPool after shutdown")
        if self._broken:
            raise RuntimeError(_fork.closed_message(self._inherited))

    def _notify_if_idle(self) -> None:
        """Wakes a waiting shutdown once nothing is in flight. Lock held."""
        if not self._live and not self._batches:
            self._idle.notify_all()

    def _reset_after_fork(self) -> None:
        """In a forked child: fresh locks, no runtime (its workers stayed in the
        parent), work refused with the message that says why, unfinished futures
        failed the same way (their tasks run only in the parent)."""
        self._inherited = True
        self._lock = _stock_lock()
        self._idle = _StockCondition(self._lock)
        self._idle_waiters = 0  # the parent's waiting threads are not here
        self._broken = True  # no dispatching from the done callbacks below
        self._loom = None
        self._watchdog = None  # its thread is gone with the rest
        live = list(self._live)
        self._queue.clear()
        self._batches.clear()  # their calls ran in the parent's workers
        for item in live:
            _fork.fail_inherited(item)  # its done callback takes it out of _live

    def _open(self) -> _native.Loom:
        """The Loom, created (with the watchdog) at the first task. Lock held."""
        if self._loom is None:
            self._loom = _native.Loom(workers=self._workers)
            if self._watchdog_threshold is not None:
                self._watchdog = _watchdog.Watchdog(self._loom, self._watchdog_threshold).start()
        return self._loom

    # -- completion and dispatch -----------------------------------------------------

    def _start(self, item: _Submitted) -> None:
        loom = self._loom
        func, args = item._func, item._args
        assert func is not None, "a submitted call starts once"
        # The virtual thread holds them from here; the future need not (a done future
        # kept by its caller keeps neither).
        item._func = item._args = None
        try:
            if loom is None:
                raise RuntimeError("the VirtualThreadPool's runtime is closed")
            loom.spawn(func, item, item._intercept, item._priority, args)
        except RuntimeError as err:
            # The Loom was closed (at interpreter exit): fail this and everything queued,
            # without dispatching more (no recursion through the done callbacks).
            with self._lock:
                self._broken = True
                queued = [queued_item for _, _, queued_item in self._queue]
                self._queue.clear()
            for failed in [item, *queued]:
                if failed.set_running_or_notify_cancel():
                    failed.set_exception(RuntimeError(str(err)))

    def _done(self, item: _Submitted) -> None:
        """A submitted call's future is done: counts, and dispatches the next queued
        task."""
        if self._limit is None:
            # Unbounded: nothing queued to dispatch, so no lock (taken at every end, it
            # queued the workers behind the submitter). A `_close` waiter registers
            # before it looks at `_live`: unseen here, it sees the call gone.
            self._live.discard(item)
            if item.cancelled():
                self._ended.append(_ENDED_CANCELLED)
            elif item._exception is not None:
                self._ended.append(_ENDED_FAILED)
            else:
                self._ended.append(_ENDED_OK)
            if self._idle_waiters or len(self._ended) >= _ENDED_BATCH:
                with self._lock:
                    self._count_ended()
                    self._notify_if_idle()
            return
        start: list[_Submitted] = []
        with self._lock:
            self._live.discard(item)
            if item.cancelled():
                self._cancelled += 1
            else:
                self._completed += 1
                if item.exception() is not None:
                    self._failed += 1
            if item._dispatched:
                self._running -= 1
                start = self._take_queued()
            else:
                item._func = item._args = None  # cancelled while queued
            self._notify_if_idle()
        for nxt in start:
            self._start(nxt)

    def _count_ended(self) -> None:
        """Folds the ends `_done` counted without the lock into the counts. Lock held."""
        ended = self._ended
        while ended:
            outcome = ended.popleft()
            self._running -= 1
            if outcome == _ENDED_CANCELLED:
                self._cancelled += 1
            else:
                self._completed += 1
                if outcome == _ENDED_FAILED:
                    self._failed += 1

    def _take_queued(self) -> list[_Submitted]:
        """Queued tasks that the places now free can take, marked dispatched; the
        caller starts them once the lock is released. Lock held."""
        start: list[_Submitted] = []
        while (
            not self._broken
            and self._queue
            and (self._limit is None or self._running < self._limit)
        ):
            _, _, nxt = heapq.heappop(self._queue)
            if nxt.done():  # cancelled while queued
                continue
            nxt._dispatched = True
            self._running += 1
            start.append(nxt)
        return start

    # -- monitoring and shutdown -----------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """A snapshot of the pool's counters.

        ``active_threads`` (dispatched, not done; a bounded pool's ``map`` counts the
        places it holds until it ends), ``pending`` (queued for a slot),
        ``completed_threads`` (returned or raised), ``failed`` (raised), ``cancelled``,
        ``total_threads_created`` (submitted), ``platform_threads`` (workers),
        ``max_virtual_threads``, ``parked`` (waiting for a ring completion now),
        ``parks``, ``driver``, ``ring_submissions``, ``ring_completions``,
        ``blocking_pool_threads``, and the runtime's own counters (``ops_submitted``,
        ``ops_completed``, ``ring_enters``, ``polls``, ``tasks_stolen``).

        Example: ``pool.get_stats()["completed_threads"]``
        """
        with self._lock:
            self._count_ended()
            stats: dict[str, Any] = {
                "active_threads": self._running,
                "pending": len(self._live)
                - (self._running - sum(places for _, places in self._batches.values())),
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
        # The documented names, beside the runtime's own.
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
            item.cancel()  # refused (False) by the ones already running
        for batch in batches:
            batch.cancel()
        loom = self._loom
        if wait and not (loom is not None and loom.on_worker()):
            self._close()
        else:
            threading.Thread(target=self._close, name="ringloom-pool-shutdown", daemon=True).start()

    def _close(self) -> None:
        """Waits for every accepted task, then stops the workers."""
        # On the main thread in slices, as `ParkingFuture._wait_on_main_thread` (a Ctrl-C
        # handled as the stock wait starts would wait with it for every task).
        slice_ = CTRL_C_SLICE if threading.current_thread() is threading.main_thread() else None
        try:
            with self._lock:
                self._idle_waiters += 1
                try:
                    while self._live or self._batches:
                        self._idle.wait(slice_)
                finally:
                    self._idle_waiters -= 1
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
            item.cancel()
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


#: How many files ``VirtualThreadPool.map_files`` reads at once by default: deep enough
#: to keep a disk busy, few enough to keep memory low (deeper was slower on cold files
#: here: benches/python/NOTES.md); a faster device may want ``at_once`` higher.
MAP_FILES_OPEN = 64


def _files_at_once(count: int, wanted: int) -> int:
    """How many of ``count`` files ``map_files`` reads at once: ``wanted``, or half the
    descriptors this process may still open, if fewer (at least one)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = wanted
    if soft != resource.RLIM_INFINITY:
        try:
            in_use = len(os.listdir("/proc/self/fd"))
        except OSError:
            in_use = 0
        most = min(most, (soft - in_use) // 2)
    return max(1, min(count, most))


def _read_then_call(fn: Callable[[bytes], T], path: Any) -> T:
    return fn(_native.read_file(path))


@_fork.on_child
def _reset_pools() -> None:
    for pool in list(_pools):
        pool._reset_after_fork()
