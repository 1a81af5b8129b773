"""Lock, RLock, Event, Condition, Semaphore, BoundedSemaphore and Queue that park a
virtual thread.

They have the ``threading`` and ``queue`` interfaces. A contended wait in a virtual
thread parks it (its worker runs other virtual threads meanwhile); in a plain OS thread
it blocks that thread. OS threads and virtual threads may share one object and wake
each other. Each waiter gets a ``_native.Parker`` and waits in a FIFO queue, kept under
a small internal lock that is never held across a park. Ownership passes directly from
the releaser to the first waiter (no barging), so waiters are served in order.

Unlike ``threading``, a negative timeout (other than ``Lock.acquire``'s -1) raises
``ValueError`` everywhere.

Example::

    lock = ringloom.Lock()
    with lock:
        ...
"""

from __future__ import annotations

import _thread
import collections
import queue as _queue
import time as _time
from types import TracebackType
from typing import Any, Callable, TypeVar

from ringloom import _native
from ringloom._native import Parker

__all__ = [
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "Queue",
    "RLock",
    "Semaphore",
]

T = TypeVar("T")

_monotonic = _time.monotonic


class _Waiter:
    __slots__ = ("parker", "granted")

    def __init__(self) -> None:
        self.parker = Parker()
        self.granted = False


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


def _wait(
    mutex: Any,
    waiters: collections.deque[_Waiter],
    timeout: float | None,
    on_abandon: Callable[[], None] | None = None,
) -> bool:
    """Queues a waiter and parks it (``mutex`` held on entry, not held on return).
    True once granted; False on timeout (the waiter is dequeued). If the park is
    interrupted by an exception after a grant, ``on_abandon`` passes the grant on."""
    waiter = _Waiter()
    waiters.append(waiter)
    mutex.release()
    try:
        waiter.parker.park(timeout)
    except BaseException:
        with mutex:
            granted = waiter.granted
            if not granted:
                waiters.remove(waiter)
        if granted and on_abandon is not None:
            on_abandon()
        raise
    # park() returned False on timeout, but a grant may have raced it: the mutex decides.
    with mutex:
        if waiter.granted:
            return True
        waiters.remove(waiter)
        return False


def _wake(granted: list[_Waiter]) -> None:
    for waiter in granted:
        waiter.parker.unpark()


#: A non-reentrant lock with ``_thread.lock``'s interface; a contended ``acquire`` parks
#: a virtual thread. Any thread may release it. Native (``src/sync/lock.rs``): an atomic
#: fast path, FIFO hand-off to waiters.
Lock = _native.Lock

#: A reentrant lock with ``_thread.RLock``'s interface, owned by a virtual thread or an
#: OS thread (``ringloom._native.get_ident()``); only the owner may release it.
RLock = _native.RLock


class Condition(_native.Condition):  # type: ignore[misc]
    """A condition variable, like ``threading.Condition`` (default lock: an ``RLock``).
    ``wait`` parks a virtual thread; ``notify`` wakes the longest waiting. Native
    (``src/sync/condition.rs``), but for this module's rule: a negative timeout is a
    ValueError."""

    def wait(self, timeout: float | None = None) -> bool:
        """Releases the lock, waits for a notify (True) or ``timeout`` (False), and
        takes the lock back."""
        return bool(super().wait(_check_timeout(timeout)))

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Waits until ``predicate()`` is true (its value) or ``timeout`` passes."""
        return super().wait_for(predicate, _check_timeout(timeout))  # type: ignore[no-any-return]


class Semaphore:
    """A counting semaphore, like ``threading.Semaphore``; a blocked ``acquire`` parks
    a virtual thread. Released permits go straight to the longest waiting."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._mutex = _thread.allocate_lock()
        self._value = value
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        _check_timeout(timeout)
        self._mutex.acquire()
        if self._value > 0:
            self._value -= 1
            self._mutex.release()
            return True
        if not blocking:
            self._mutex.release()
            return False
        return _wait(self._mutex, self._waiters, timeout, self.release)

    __enter__ = acquire

    def _check_release(self, n: int) -> None:
        pass

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        granted = []
        with self._mutex:
            self._check_release(n)
            for _ in range(n):
                # Waiters of the parent of this forked child get no permit.
                while self._waiters and self._waiters[0].parker.stale:
                    self._waiters.popleft()
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.granted = True
                    granted.append(waiter)
                else:
                    self._value += 1
        _wake(granted)

    def __exit__(
        self,
        ty: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A semaphore whose ``release`` raises ``ValueError`` past its initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def _check_release(self, n: int) -> None:
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")


#: An event flag, like ``threading.Event``; ``wait`` parks a virtual thread. Native
#: (``src/sync/event.rs``): a Ctrl-C or a killed virtual thread cannot leave it
#: half changed.
Event = _native.Event


class Queue(_queue.Queue):  # type: ignore[type-arg]
    """``queue.Queue`` on ringloom's Lock and Conditions: a blocking ``put``, ``get``
    or ``join`` parks a virtual thread. Raises ``queue.Empty`` and ``queue.Full``."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.mutex = Lock()  # type: ignore[assignment]
        self.not_empty = Condition(self.mutex)  # type: ignore[assignment]
        self.not_full = Condition(self.mutex)  # type: ignore[assignment]
        self.all_tasks_done = Condition(self.mutex)  # type: ignore[assignment]
