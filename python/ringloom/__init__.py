"""ringloom: virtual threads (greenlets run by io_uring workers) for blocking Python code.

This is the bridge prototype: ``Loom`` runs callables as virtual threads, and
``sleep`` parks a virtual thread on a ring timer (outside one it is ``time.sleep``),
``wait_fd`` on an io_uring poll of a descriptor (outside one it is ``poll(2)``).
``ringloom.virtual_thread`` (re-exported here) holds the executor API:
``VirtualThreadPool``, ``AsyncVirtualThreadPool``, ``run_in_virtual_thread``,
``virtual_map``, ``virtual_thread_benchmark``; ``ringloom.safe_thread`` (also re-exported)
the thread API: ``SafeThread``, ``SafeThreadPool``, ``safe_parallel_map``,
``safe_thread_decorator``, ``SafeLock``, ``SafeRLock``, ``SafeCondition``,
``create_safe_shared_data``.

Example::

    from ringloom import VirtualThreadPool

    with VirtualThreadPool() as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Any, Callable, TypeVar

from ringloom import _fork  # noqa: F401 - a forked child resets ringloom (os.register_at_fork)
from ringloom._native import (
    Loom,
    blocking,
    in_virtual_thread,
    intercepting,
    sleep,
    wait_fd,
    wait_fds,
)
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
from ringloom.virtual_thread import (
    AsyncVirtualThreadPool,
    VirtualThreadPool,
    run_in_virtual_thread,
    virtual_map,
    virtual_thread_benchmark,
)

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
