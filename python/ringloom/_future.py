"""The future of a submitted task: its waits park a virtual thread, and on the main
thread they let Ctrl-C through.

Example::

    future = ParkingFuture()
    ...                      # a worker sets its result
    future.result(timeout=5) # parks in a virtual thread, blocks elsewhere
"""

from __future__ import annotations

import concurrent.futures
import os
import select
import threading
import time
from typing import Any, TypeVar

from ringloom import _native

__all__ = ["CTRL_C_SLICE", "ParkingFuture", "collect"]

T = TypeVar("T")

#: How long a wait on the main thread blocks before it lets a pending Ctrl-C through.
CTRL_C_SLICE = 0.1


class ParkingFuture(concurrent.futures.Future):  # type: ignore[type-arg]
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

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._park_until_done(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._park_until_done(timeout))


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
