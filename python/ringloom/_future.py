"""The future of a submitted task: its waits park a virtual thread, and on the main
thread they let Ctrl-C through.

Example::

    future = ParkingFuture()
    ...                      # a worker sets its result
    future.result(timeout=5) # parks in a virtual thread, blocks elsewhere
"""

from __future__ import annotations

import _thread
import concurrent.futures
import os
import select
import threading
import time
from concurrent.futures import _base
from typing import Any, Callable, TypeVar

from ringloom import _native

__all__ = ["CTRL_C_SLICE", "ParkingFuture", "collect"]

T = TypeVar("T")

#: How long a wait on the main thread blocks before it lets a pending Ctrl-C through.
CTRL_C_SLICE = 0.1


# The stock future's states, from the module that defines them.
_PENDING: str = _base.PENDING
_RUNNING: str = _base.RUNNING
_CANCELLED: str = _base.CANCELLED
_NOTIFIED: str = _base.CANCELLED_AND_NOTIFIED
_FINISHED: str = _base.FINISHED
_CANCELLED_STATES = (_CANCELLED, _NOTIFIED)
_DONE_STATES = (_CANCELLED, _NOTIFIED, _FINISHED)


class _Lazy:
    """An attribute of the stock future that this one makes at its first use, then keeps
    in the instance (a non-data descriptor: the instance's own value wins after that)."""

    def __init__(self, make: Callable[[ParkingFuture], Any]) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, future: ParkingFuture | None, owner: type) -> Any:
        if future is None:
            return self
        # Before the value exists: a setter that sees this under the lock looks for it.
        future._stock_waits = True
        # Two threads may race here: setdefault keeps the first one made.
        return future.__dict__.setdefault(self.name, self.make(future))


# The future's lock is the stock one whatever ``ringloom.monkey`` patches later (this
# module is imported before it can): it is held only for a few field updates, never
# across a park, and a worker's hub takes it to set a result outside any virtual
# thread, where a patched lock handed over to a parked virtual thread of that same
# worker would never be released.
_stock_lock = _thread.allocate_lock
_StockCondition = threading.Condition


class ParkingFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` whose ``result()`` and ``exception()`` park a
    virtual thread that waits on them (a worker blocked there could hold the very task
    it waits for), and block the stock way elsewhere.

    It is also lighter than the stock one, which a pool makes per ``submit``: one plain
    lock guards its state, and the ``Condition`` and waiter list that the stock future
    builds up front (an ``RLock``, a deque, five bound methods, two lists: work for the
    cyclic GC while many futures are alive) are made only when something waits the
    stock way (``result`` on an OS thread, ``concurrent.futures.wait``,
    ``as_completed``), over that same lock. Its states, results and errors are the
    stock ones.
    """

    _lock: _thread.LockType
    #: Whether a stock wait made the Condition or the waiter list (read before looking
    #: for them, so that most futures never materialize an instance dict).
    _stock_waits = False
    _condition = _Lazy(lambda future: _StockCondition(future._lock))
    _waiters = _Lazy(lambda future: [])

    def __init__(self) -> None:
        # Not the stock __init__: it builds the Condition this class makes lazily.
        self._lock = _stock_lock()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        # One callback (a pool's), or a list once there are more; None: none yet.
        self._callbacks: Any = None

    @property
    def _done_callbacks(self) -> list[Callable[[concurrent.futures.Future[Any]], object]]:
        """The stock attribute, for code that reads it: the callbacks not yet called."""
        callbacks = self._callbacks
        if callbacks is None:
            return []
        return list(callbacks) if isinstance(callbacks, list) else [callbacks]

    def _wake_waiters(self, notify: Callable[[Any], None] | None) -> None:
        """With the lock held: tells the stock waiters, if any exist, of a new state."""
        if not self._stock_waits:
            return
        found = self.__dict__
        if notify is not None:
            for waiter in found.get("_waiters", ()):
                notify(waiter)
        condition = found.get("_condition")
        if condition is not None:
            condition.notify_all()

    def _invoke_callbacks(self) -> None:
        callbacks = self._callbacks
        self._callbacks = None
        if callbacks is None:
            return
        for callback in callbacks if isinstance(callbacks, list) else (callbacks,):
            self._call(callback)

    def _call(self, callback: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        """Runs a done callback; what it raises is logged, as the stock future does."""
        try:
            callback(self)
        except Exception:
            _base.LOGGER.exception("exception calling callback for %r", self)

    def cancel(self) -> bool:
        with self._lock:
            if self._state in (_RUNNING, _FINISHED):
                return False
            if self._state in _CANCELLED_STATES:
                return True
            self._state = _CANCELLED
            self._wake_waiters(None)
        self._invoke_callbacks()
        return True

    def cancelled(self) -> bool:
        return self._state in _CANCELLED_STATES

    def running(self) -> bool:
        return self._state == _RUNNING

    def done(self) -> bool:
        return self._state in _DONE_STATES

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        with self._lock:
            if self._state not in _DONE_STATES:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = fn
                elif isinstance(callbacks, list):
                    callbacks.append(fn)
                else:
                    self._callbacks = [callbacks, fn]
                return
        self._call(fn)

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                self._state = _NOTIFIED
                if self._stock_waits:
                    for waiter in self.__dict__.get("_waiters", ()):
                        waiter.add_cancelled(self)
                return False
            if self._state == _PENDING:
                self._state = _RUNNING
                return True
            _base.LOGGER.critical("Future %s in unexpected state: %s", id(self), self._state)
            raise RuntimeError("Future in unexpected state")

    def set_result(self, result: Any) -> None:
        self._settle("_result", result, "add_result")

    def set_exception(self, exception: BaseException | None) -> None:
        self._settle("_exception", exception, "add_exception")

    def _settle(self, field: str, value: Any, tell: str) -> None:
        """Finishes with ``value`` in ``field``, telling stock waiters through their
        ``tell`` method, then runs the callbacks; or, for a future already done, raises
        the stock error (outside the lock: its message is the repr, which takes it)."""
        with self._lock:
            refused = self._state in _DONE_STATES
            if not refused:
                setattr(self, field, value)
                self._state = _FINISHED
                self._wake_waiters(lambda waiter: getattr(waiter, tell)(self))
        if refused:
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
        self._invoke_callbacks()

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
        """On the main thread, waits in slices; returns the timeout left. A Ctrl-C
        handled just as the stock wait blocks does not end that wait, so an unbounded
        one could ignore it; a slice ends, and the interpreter raises it."""
        if threading.current_thread() is not threading.main_thread():
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = CTRL_C_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return 0
            # The future's own condition, as the stock wait uses (``cf.wait`` would build
            # a waiter and take every lock twice per slice).
            with self._condition:  # type: ignore[attr-defined]
                if not self.done():
                    self._condition.wait(min(left, CTRL_C_SLICE))  # type: ignore[attr-defined]
        return 0

    def _finished(self, timeout: float | None) -> bool:
        """Waits (the stock way, on the lazily made Condition) until done or
        ``timeout``; raises ``CancelledError`` for a cancelled future and
        ``TimeoutError`` if still not done; true once finished."""
        if self._state not in _DONE_STATES:
            condition = self._condition
            with condition:
                if self._state not in _DONE_STATES:
                    condition.wait(timeout)
        state = self._state
        if state in _CANCELLED_STATES:
            raise concurrent.futures.CancelledError()
        if state != _FINISHED:
            raise TimeoutError()
        return True

    def result(self, timeout: float | None = None) -> Any:
        self._finished(self._park_until_done(timeout))
        error = self._exception
        if error is None:
            return self._result
        try:
            raise error
        finally:
            # The traceback would hold this frame, and it the error: no cycle.
            del error, self

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._finished(self._park_until_done(timeout))
        return self._exception


def collect(futures: list[concurrent.futures.Future[T]], timeout: float | None) -> list[T]:
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
