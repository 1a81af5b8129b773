"""``concurrent.futures.wait`` and ``as_completed`` that park a virtual thread.

Both block on an event that the stock module makes in ``_base._Waiter``; made in an
intercepting virtual thread, it is a :class:`ringloom.Event` instead of a
``threading.Event``, so the wait parks the virtual thread and the worker runs the
others (among them, maybe, the very tasks it waits for). Futures set it from any thread.
Waiters made anywhere else keep the stock event.
"""

from __future__ import annotations

import concurrent.futures._base as _base
from typing import Any

from ringloom import monkey
from ringloom.green._common import intercepting

__all__ = ["patch", "unpatch"]

stock_init = _base._Waiter.__init__


def _waiter_init(self: Any) -> None:
    stock_init(self)
    if intercepting():
        from ringloom.sync import Event

        self.event = Event()


def patch() -> None:
    monkey.replace(_base._Waiter, "__init__", _waiter_init)


def unpatch() -> None:
    monkey.restore(_base._Waiter, "__init__")
