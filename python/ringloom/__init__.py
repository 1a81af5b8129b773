"""ringloom: virtual threads (greenlets run by io_uring workers) for blocking Python code.

The core:

- ``VirtualThreadPool`` (a ``concurrent.futures.Executor``) and
  ``AsyncVirtualThreadPool`` run callables as virtual threads; ``run_in_virtual_thread``
  and ``virtual_map`` use a shared pool;
- ``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event`` and
  ``Queue`` park a virtual thread (``ringloom.sync``);
- ``Loom``, ``sleep``, ``wait_fd``, ``blocking``: the native bridge, for building on;
- ``ringloom.monkey`` patches the standard library's threading, queues and locks
  (explicitly: ``patch_all()`` or ``python -m ringloom run``).
- ``ringloom.asyncio``: an asyncio event loop whose waits go through the ring
  (``ringloom.asyncio.run(main())``, ``new_event_loop``, ``EventLoopPolicy``).

``import ringloom`` installs the I/O interception (``ringloom.green``: ``time.sleep``,
sockets, files, ... park a virtual thread, and behave as stock outside one); set
``RINGLOOM_NO_PATCH=1`` to skip it. The pyferris-compatible modules
``ringloom.virtual_thread`` and ``ringloom.safe_thread`` are re-exported here.

Example::

    from ringloom import VirtualThreadPool

    with VirtualThreadPool() as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ringloom import _fork  # noqa: F401 - the fork guard, and the child's reset point
from ringloom._native import (
    Loom,
    blocking,
    in_virtual_thread,
    intercepting,
    sleep,
    wait_fd,
    wait_fds,
)
from ringloom._pool import VirtualThreadPool
from ringloom._shared import run_in_virtual_thread, virtual_map
from ringloom.safe_thread import (
    SafeCondition,
    SafeLock,
    SafeRLock,
    SafeThread,
    SafeThreadPool,
    create_safe_shared_data,
    safe_parallel_map,
    safe_thread_decorator,
)
from ringloom.sync import (
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    Queue,
    RLock,
    Semaphore,
)
from ringloom.virtual_thread import virtual_thread_benchmark

if TYPE_CHECKING:
    from ringloom._aio import AsyncVirtualThreadPool

__all__ = [
    "AsyncVirtualThreadPool",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "Loom",
    "Queue",
    "RLock",
    "SafeCondition",
    "SafeLock",
    "SafeRLock",
    "SafeThread",
    "SafeThreadPool",
    "Semaphore",
    "VirtualThreadPool",
    "blocking",
    "create_safe_shared_data",
    "in_virtual_thread",
    "intercepting",
    "run_in_virtual_thread",
    "safe_parallel_map",
    "safe_thread_decorator",
    "sleep",
    "submit",
    "virtual_map",
    "virtual_thread_benchmark",
    "wait_fd",
    "wait_fds",
]

# Blocking stdlib calls park intercepting virtual threads (ringloom.green): installed at
# import, before any virtual thread can run; stock behaviour everywhere else.
if not os.environ.get("RINGLOOM_NO_PATCH"):
    from ringloom.green import patch_all as _patch_all

    _patch_all()

T = TypeVar("T")


def submit(
    loom: Loom, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> concurrent.futures.Future[T]:
    """Runs ``fn(*args, **kwargs)`` in a virtual thread of ``loom``; returns its future."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
    loom.spawn(call, future)
    return future


def __getattr__(name: str) -> Any:
    # ``AsyncVirtualThreadPool`` imports asyncio (a third of ringloom's import time):
    # loaded on first use, not by ``import ringloom``.
    if name == "AsyncVirtualThreadPool":
        from ringloom._aio import AsyncVirtualThreadPool

        globals()[name] = AsyncVirtualThreadPool
        return AsyncVirtualThreadPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
