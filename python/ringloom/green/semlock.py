"""``multiprocessing``'s locks, semaphores, conditions and events in virtual threads.

Each of them is a ``multiprocessing.synchronize.SemLock``: a POSIX semaphore shared
between processes, whose blocking ``acquire`` is a ``sem_wait`` that holds the OS thread.
In a virtual thread that holds its worker, and the holder may be another virtual thread
of that worker (after ``patch_all()``, a ``multiprocessing.Pool``'s handler threads are
virtual: ``Pool.terminate`` waits on the task queue's lock while a worker process holds
it, until the task handler sends it its stop sentinel). A semaphore has no descriptor to
poll, so a contended ``acquire`` in an intercepting virtual thread tries again after
parking for a while, from half a millisecond doubling to 50 ms; an uncontended one, and
every one outside virtual threads, is the stock call.

Example::

    ringloom.monkey.patch_all()
    lock = multiprocessing.Lock()
    with lock:                                 # parks a virtual thread if contended
        ...
"""

from __future__ import annotations

import time
from typing import Any

from ringloom import _native, monkey
from ringloom.green._common import intercepting

__all__ = ["acquire", "patch", "unpatch"]

_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.05


def acquire(semlock: Any, block: bool = True, timeout: float | None = None) -> bool:
    """``SemLock.acquire``: the stock call, but a wait in an intercepting virtual
    thread parks between tries instead of holding the worker in ``sem_wait``."""
    if not block or not intercepting():
        return semlock.acquire(block, timeout)  # type: ignore[no-any-return]
    if semlock.acquire(False):
        return True
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    pause = _FIRST_PAUSE
    while True:
        if deadline is None:
            _native.sleep(pause)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _native.sleep(min(pause, left))
        if semlock.acquire(False):
            return True
        pause = min(pause * 2, _LONGEST_PAUSE)


class _Acquire:
    """The ``acquire`` a ``SemLock`` binds to itself: ours, over its C semaphore."""

    __slots__ = ("_semlock",)

    def __init__(self, semlock: Any) -> None:
        self._semlock = semlock

    def __call__(self, block: bool = True, timeout: float | None = None) -> bool:
        return acquire(self._semlock, block, timeout)


def _make_methods(self: Any) -> None:
    self.acquire = _Acquire(self._semlock)
    self.release = self._semlock.release


def _enter(self: Any) -> bool:
    return acquire(self._semlock)


def _targets() -> list[tuple[Any, str, Any]]:
    try:
        from multiprocessing import synchronize
    except ImportError:  # no sem_open on this platform
        return []
    return [
        (synchronize.SemLock, "_make_methods", _make_methods),
        (synchronize.SemLock, "__enter__", _enter),
    ]


def patch() -> None:
    for target, name, value in _targets():
        monkey.replace(target, name, value)


def unpatch() -> None:
    for target, name, _ in _targets():
        monkey.restore(target, name)
