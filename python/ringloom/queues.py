"""``queue.Queue``, ``LifoQueue`` and ``PriorityQueue`` with their waiting in Rust: what
``ringloom.monkey.patch_queue()`` installs in ``queue``.

The interface, the attributes stock code reaches for (``mutex``, ``not_empty``,
``not_full``, ``all_tasks_done``, ``queue``, ``maxsize``, ``unfinished_tasks``) and the
storage hooks subclasses override (``_init``, ``_qsize``, ``_put``, ``_get``) are the
stock ones; ``put``, ``get``, ``join`` and ``task_done`` run natively
(``src/sync/queue.rs``), their waits park a virtual thread and block an OS thread, and a
plain ``Queue`` works its deque without a Python call per item. ``queue.Empty`` and
``queue.Full`` are raised, as stock.

Example::

    jobs = ringloom.queues.Queue(maxsize=100)
    jobs.put(item)          # parks a virtual thread while the queue is full
    item = jobs.get(timeout=1.0)
"""

from __future__ import annotations

import queue
import types
from collections import deque
from heapq import heappop, heappush
from typing import Any

from ringloom import _native

__all__ = ["LifoQueue", "PriorityQueue", "Queue"]

_HOOKS = ("_init", "_qsize", "_put", "_get")


class Queue(_native.QueueCore):  # type: ignore[misc]
    """Create a queue object with a given maximum size (``maxsize <= 0``: unbounded)."""

    # What a full put and an empty get raise.
    _empty_error: type[Exception] = queue.Empty
    _full_error: type[Exception] = queue.Full

    def __init__(self, maxsize: int = 0) -> None:
        cls = type(self)
        plain = all(getattr(cls, hook) is getattr(Queue, hook) for hook in _HOOKS)
        self._setup(maxsize, plain)

    # Override these methods to implement other queue organizations (as stock).
    def _init(self, maxsize: int) -> None:
        self.queue = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.popleft()

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


# ``put`` and ``get`` defined on this class itself, so ``q.put(item)`` on a ``Queue`` is a
# direct C call (see ``src/sync/queue_calls.rs``).
_native.install_queue_methods(Queue)


class PriorityQueue(Queue):
    """A queue that hands out the lowest entry first (entries are typically tuples
    ``(priority, data)``)."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        heappush(self.queue, item)

    def _get(self) -> Any:
        return heappop(self.queue)


class LifoQueue(Queue):
    """A queue that hands out the most recently added entry first."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.pop()
