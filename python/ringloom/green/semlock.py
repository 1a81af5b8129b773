"""``multiprocessing``'s locks, semaphores, conditions and events in virtual threads.

Each of them is a ``multiprocessing.synchronize.SemLock``: a POSIX semaphore shared
between processes, whose blocking ``acquire`` is a ``sem_wait`` that holds the OS thread.
In a virtual thread that holds its worker, and the holder may be another virtual thread
of that worker (after ``patch_all()``, a ``multiprocessing.Pool``'s handler threads are
virtual: ``Pool.terminate`` waits on the task queue's lock while a worker process holds
it, until the task handler sends it its stop sentinel). A semaphore has no descriptor to
poll, so a contended ``acquire`` in a virtual thread tries again after parking for a
while, from half a millisecond doubling to 50 ms; an uncontended one is one non-blocking
try, and every one outside virtual threads is the stock call.

A ``multiprocessing.RLock`` knows its owner by OS thread, which the virtual threads of
one worker share: the second of them would take it as a recursive acquire. So in
virtual threads the owning virtual thread is noted beside it; another virtual thread of
the same worker waits as for any other holder, and only the owner may release it.

Example::

    ringloom.monkey.patch_all()
    lock = multiprocessing.Lock()
    with lock:                                 # parks a virtual thread if contended
        ...
"""

from __future__ import annotations

import functools
import time
from typing import Any

from ringloom import _native, monkey

__all__ = ["acquire", "patch", "release", "unpatch"]

_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.05
_RECURSIVE_MUTEX = 0  # multiprocessing.synchronize.RECURSIVE_MUTEX

# id(semlock) -> the virtual thread holding that RLock (held by virtual threads only).
_rlock_owners: dict[int, int] = {}


def _try(semlock: Any, me: int) -> bool:
    """One non-blocking acquire; for an RLock in virtual thread ``me``, one that does
    not take another virtual thread's hold on this OS thread for its own."""
    if semlock.kind != _RECURSIVE_MUTEX:
        return semlock.acquire(False)  # type: ignore[no-any-return]
    owner = _rlock_owners.get(id(semlock))
    if owner is not None and owner != me and semlock._is_mine():
        return False  # held by another virtual thread of this worker
    if not semlock.acquire(False):
        return False
    _rlock_owners[id(semlock)] = me
    return True


def acquire(semlock: Any, block: bool = True, timeout: float | None = None) -> bool:
    """``SemLock.acquire``: the stock call outside virtual threads; in one, a wait
    parks between tries instead of holding the worker in ``sem_wait``."""
    me = _native.vthread_ident()
    if me is None:
        return semlock.acquire(block, timeout)  # type: ignore[no-any-return]
    if _try(semlock, me):
        return True
    if not block:
        return False
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
        if _try(semlock, me):
            return True
        pause = min(pause * 2, _LONGEST_PAUSE)


def release(semlock: Any) -> None:
    """``SemLock.release``; an RLock is released only by the virtual thread that holds
    it (the stock check compares OS threads)."""
    me = _native.vthread_ident()
    if me is None or semlock.kind != _RECURSIVE_MUTEX:
        semlock.release()
        return
    owner = _rlock_owners.get(id(semlock))
    if owner is not None and owner != me:
        raise AssertionError("attempt to release recursive lock not owned by thread")
    semlock.release()
    if semlock._count() == 0:
        _rlock_owners.pop(id(semlock), None)


def _make_methods(self: Any) -> None:
    self.acquire = functools.partial(acquire, self._semlock)
    self.release = functools.partial(release, self._semlock)


def _enter(self: Any) -> bool:
    return acquire(self._semlock)


def _exit(self: Any, *args: object) -> None:
    release(self._semlock)


def _targets() -> list[tuple[Any, str, Any]]:
    try:
        from multiprocessing import synchronize
    except ImportError:  # no sem_open on this platform
        return []
    return [
        (synchronize.SemLock, "_make_methods", _make_methods),
        (synchronize.SemLock, "__enter__", _enter),
        (synchronize.SemLock, "__exit__", _exit),
    ]


def patch() -> None:
    for target, name, value in _targets():
        monkey.replace(target, name, value)


def unpatch() -> None:
    for target, name, _ in _targets():
        monkey.restore(target, name)
