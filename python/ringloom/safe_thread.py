"""Threads, pools, locks and shared data that work for OS threads and virtual threads.

A drop-in for ``pyferris.safe_thread``: port code by changing the import line only.

- :class:`SafeThread` has the ``threading.Thread`` interface plus ``get_result()`` and
  ``get_exception()``. It runs as a virtual thread of a shared pool, so 100,000 of them
  at once cost kilobytes each; ``join`` blocks an OS thread and parks a virtual thread.
- :class:`SafeThreadPool` is a ``concurrent.futures.Executor`` running at most
  ``max_workers`` tasks at once, each in a virtual thread.
- :func:`safe_parallel_map`, :func:`safe_thread_decorator`.
- :class:`SafeLock`, :class:`SafeRLock`, :class:`SafeCondition` are ``ringloom.Lock``,
  ``RLock`` and ``Condition``: a contended wait parks a virtual thread and blocks an OS
  thread, and both kinds may wait on one lock.
- :func:`create_safe_shared_data` (``ringloom.shared_data``).

Python bytecode still runs under the GIL: these give safe concurrency for code that
waits (sockets, files, sleeps, locks), not parallel computation, on a standard CPython.

Example::

    from ringloom.safe_thread import SafeThread

    t = SafeThread(target=sum, args=([1, 2, 3],))
    t.start()
    t.join()
    assert t.get_result() == 6
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import itertools
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Callable, TypeVar

import greenlet

from ringloom import _fork, _native
from ringloom._pool import VirtualThreadPool
from ringloom._shared import shared_pool
from ringloom.shared_data import (
    SharedArray,
    SharedCounter,
    SharedDict,
    SharedQueue,
    create_safe_shared_data,
)
from ringloom.sync import Condition, Event, Lock, RLock

__all__ = [
    "SafeCondition",
    "SafeLock",
    "SafeRLock",
    "SafeThread",
    "SafeThreadPool",
    "SharedArray",
    "SharedCounter",
    "SharedDict",
    "SharedQueue",
    "create_safe_shared_data",
    "safe_parallel_map",
    "safe_thread_decorator",
]

T = TypeVar("T")

_names = itertools.count(1)
_idents = itertools.count(1)


def _default_workers() -> int:
    """``ThreadPoolExecutor``'s default, which users of threads know."""
    return min(32, (os.cpu_count() or 1) + 4)


def _check_workers(max_workers: int | None) -> int:
    if max_workers is None:
        return _default_workers()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError("max_workers must be greater than 0")
    return max_workers


class SafeLock(Lock):
    """A non-reentrant lock (``threading.Lock``'s interface); see ``ringloom.Lock``."""


class SafeRLock(RLock):
    """A reentrant lock (``threading.RLock``'s interface); see ``ringloom.RLock``."""


class SafeCondition(Condition):
    """A condition variable (``threading.Condition``'s interface) over a
    :class:`SafeRLock` unless given a lock; ``wait(timeout)`` returns False on timeout
    and a negative timeout is a ValueError."""

    def __new__(cls, lock: Lock | RLock | None = None) -> SafeCondition:
        return super().__new__(cls, lock if lock is not None else SafeRLock())  # type: ignore[return-value]


# Non-daemon threads still running, joined at interpreter exit as threading does.
_live: weakref.WeakSet[SafeThread] = weakref.WeakSet()


@_fork.on_child
def _forget_parent_threads() -> None:
    """In a forked child the parent's SafeThreads do not run: its exit must not wait
    for them (as ``threading`` forgets the parent's threads)."""
    _live.clear()


class SafeThread:
    """``threading.Thread`` run as a virtual thread, with its outcome kept.

    ``target(*args, **kwargs)`` runs in ``run()``, which a subclass may override;
    ``get_result()`` is what ``run()`` returned, ``get_exception()`` what it raised
    (which also goes to ``threading.excepthook``, as for a thread). ``ident`` is a
    number unique to this thread (``threading.get_ident()`` inside it names the worker
    running it, which many virtual threads share).
    """

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if group is not None:
            raise AssertionError("group argument must be None for now")
        if target is not None and not callable(target):
            raise TypeError(f"target must be callable, not {type(target).__name__}")
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs is not None else {}
        self._name = str(name) if name is not None else f"SafeThread-{next(_names)}"
        self._daemon = bool(daemon) if daemon is not None else False
        self._ident: int | None = None
        self._started = False
        self._finished = Event()
        self._result: Any = None
        self._exception: BaseException | None = None
        self._future: concurrent.futures.Future[Any] | None = None

    # -- the threading.Thread interface ----------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("threads can only be started once")
        self._started = True
        self._ident = next(_idents)
        if not self._daemon:
            _live.add(self)
        try:
            self._future = shared_pool().submit(self._bootstrap)
        except BaseException:
            _live.discard(self)
            self._finished.set()
            raise

    def run(self) -> Any:
        """Calls the target; its return value becomes ``get_result()``."""
        if self._target is None:
            return None
        return self._target(*self._args, **self._kwargs)

    def join(self, timeout: float | None = None) -> None:
        if not self._started:
            raise RuntimeError("cannot join thread before it is started")
        if self._future is not None and _current_safe_thread() is self:
            raise RuntimeError("cannot join current thread")
        if timeout is not None and timeout < 0:
            timeout = 0  # as threading: a negative timeout only checks
        self._finished.wait(timeout)

    def is_alive(self) -> bool:
        return self._started and not self._finished.is_set()

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def daemon(self) -> bool:
        return self._daemon

    @daemon.setter
    def daemon(self, value: bool) -> None:
        if self._started:
            raise RuntimeError("cannot set daemon status of active thread")
        self._daemon = bool(value)

    @property
    def ident(self) -> int | None:
        return self._ident

    native_id = ident

    def getName(self) -> str:  # noqa: N802 (the threading alias)
        return self._name

    def setName(self, name: str) -> None:  # noqa: N802
        self.name = name

    def isDaemon(self) -> bool:  # noqa: N802
        return self._daemon

    def setDaemon(self, daemonic: bool) -> None:  # noqa: N802
        self.daemon = daemonic

    # -- the outcome -----------------------------------------------------------------

    def get_result(self) -> Any:
        """What ``run()`` returned; None before it finished or when it raised."""
        return self._result

    def get_exception(self) -> BaseException | None:
        """What ``run()`` raised, or None."""
        return self._exception

    def _bootstrap(self) -> None:
        _running.current = self  # type: ignore[attr-defined]
        try:
            self._result = self.run()
        except BaseException as err:  # noqa: BLE001 - kept, and reported as threading does
            self._exception = err
            # Neither SystemExit (as threading) nor the GreenletExit of a thread killed
            # as its runtime closes (interpreter exit: a daemon thread just stops).
            if not isinstance(err, (SystemExit, greenlet.GreenletExit)):
                args = threading.ExceptHookArgs((type(err), err, err.__traceback__, self))  # type: ignore[call-arg,arg-type]
                try:
                    threading.excepthook(args)
                except BaseException:  # noqa: BLE001 - a broken hook must not kill us
                    pass
        finally:
            _running.current = None  # type: ignore[attr-defined]
            _live.discard(self)
            self._finished.set()
            # Drop the callable and its arguments, as threading does.
            self._target = None
            self._args = ()
            self._kwargs = {}

    def __repr__(self) -> str:
        state = "initial"
        if self._started:
            state = "started" if self.is_alive() else "stopped"
        if self._daemon:
            state += " daemon"
        return f"<{type(self).__name__}({self._name}, {state} {self._ident})>"


class _Running:
    """The SafeThread each greenlet is running, for ``join`` of the current thread."""

    def __init__(self) -> None:
        self._by_greenlet: weakref.WeakKeyDictionary[Any, SafeThread | None] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def current(self) -> SafeThread | None:
        import greenlet

        return self._by_greenlet.get(greenlet.getcurrent())

    @current.setter
    def current(self, thread: SafeThread | None) -> None:
        import greenlet

        if thread is None:
            self._by_greenlet.pop(greenlet.getcurrent(), None)
        else:
            self._by_greenlet[greenlet.getcurrent()] = thread


_running = _Running()


def _current_safe_thread() -> SafeThread | None:
    return _running.current if _native.in_virtual_thread() else None


def _join_live_threads() -> None:
    """At exit, waits for the non-daemon SafeThreads, as threading does for threads."""
    for thread in list(_live):
        thread.join()


atexit.register(_join_live_threads)


class SafeThreadPool(concurrent.futures.Executor):
    """A pool running at most ``max_workers`` tasks at once, each in a virtual thread.

    ``submit`` returns a ``concurrent.futures.Future``; ``map`` returns the results as
    a list in input order; after ``shutdown`` a submit raises RuntimeError.
    ``shutdown(wait=True)`` finishes queued work first.

    Example::

        with SafeThreadPool(max_workers=4) as pool:
            assert pool.map(abs, [-1, -2]) == [1, 2]
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = _check_workers(max_workers)
        self._pool = VirtualThreadPool(max_virtual_threads=self._max_workers)

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def active_tasks(self) -> int:
        """Tasks submitted and not finished (running or waiting for a worker)."""
        stats = self._pool.get_stats()
        return int(stats["active_threads"]) + int(stats["pending"])

    def submit(  # type: ignore[override]
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> list[T]:
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return self._pool.map(fn, *iterables, timeout=timeout)
        chunks = _chunks(list(zip(*iterables)), chunksize)
        parts = self._pool.map(_run_chunk, [(fn, chunk) for chunk in chunks], timeout=timeout)
        return [result for part in parts for result in part]

    def get_stats(self) -> dict[str, Any]:
        return self._pool.get_stats()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __repr__(self) -> str:
        return f"<SafeThreadPool max_workers={self._max_workers} active_tasks={self.active_tasks}>"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_chunk(job: tuple[Callable[..., Any], list[tuple[Any, ...]]]) -> list[Any]:
    fn, chunk = job
    return [fn(*args) for args in chunk]


def safe_parallel_map(
    fn: Callable[[Any], T],
    data: Iterable[Any],
    max_workers: int | None = None,
    chunksize: int | None = None,
) -> list[T]:
    """``[fn(x) for x in data]`` with the calls spread over virtual threads, at most
    ``max_workers`` at once, ``chunksize`` items per task (default: about four tasks a
    worker). The first exception, in input order, is raised.

    Example: ``safe_parallel_map(abs, [-1, -2], max_workers=2) == [1, 2]``
    """
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    workers = _check_workers(max_workers)
    items = list(data)
    if chunksize is None:
        chunksize = max(1, -(-len(items) // (workers * 4)))
    elif chunksize < 1:
        raise ValueError("chunksize must be >= 1")
    if not items:
        return []
    with SafeThreadPool(max_workers=workers) as pool:
        return pool.map(fn, items, chunksize=chunksize)


def safe_thread_decorator(
    max_workers: int | None = None,
) -> Callable[[Callable[..., T]], Callable[..., concurrent.futures.Future[T]]]:
    """Makes each call of the decorated function run in a virtual thread of a pool of
    ``max_workers`` (made at the first call, shut down at exit) and return its Future.

    Example::

        @safe_thread_decorator(max_workers=4)
        def square(x):
            return x * x

        assert square(3).result() == 9
    """
    if callable(max_workers):
        raise TypeError("use @safe_thread_decorator() or @safe_thread_decorator(max_workers=n)")
    workers = _check_workers(max_workers)

    def decorate(fn: Callable[..., T]) -> Callable[..., concurrent.futures.Future[T]]:
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        pool: list[SafeThreadPool] = []
        lock = threading.Lock()

        @functools.wraps(fn)
        def submit(*args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
            with lock:
                if not pool:
                    pool.append(SafeThreadPool(max_workers=workers))
                    atexit.register(pool[0].shutdown, wait=False)
            return pool[0].submit(fn, *args, **kwargs)

        return submit

    return decorate
