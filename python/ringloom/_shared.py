"""The process-wide pool of ``run_in_virtual_thread``, ``virtual_map`` and
``SafeThread``, made at first use and made again in a forked child."""

from __future__ import annotations

import _thread
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ringloom import _fork, _native
from ringloom._checks import check_callable
from ringloom._pool import VirtualThreadPool

__all__ = ["run_in_virtual_thread", "shared_pool", "virtual_map"]

T = TypeVar("T")

_default_pool: VirtualThreadPool | None = None
# Stock whatever is patched later, as the pool's own lock (see ringloom._pool): a
# patched `Thread.start()` in a done callback on a worker's hub may take it.
_stock_lock = _thread.allocate_lock
_default_lock = _stock_lock()


def shared_pool() -> VirtualThreadPool:
    """The process-wide pool, made at first use."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = VirtualThreadPool()
        return _default_pool


@_fork.on_child
def _reset_after_fork() -> None:
    """In a forked child the parent's shared pool is inherited: the next use makes one."""
    global _default_pool, _default_lock
    _default_lock = _stock_lock()
    _default_pool = None


def run_in_virtual_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Runs ``fn(*args, **kwargs)`` in a virtual thread of a shared pool; its result.

    Called from inside a virtual thread, it calls ``fn`` directly (waiting for another
    virtual thread there would hold the worker).

    Example: ``run_in_virtual_thread(sum, range(10)) == 45``
    """
    check_callable(fn)
    if _native.in_virtual_thread():
        return fn(*args, **kwargs)
    return shared_pool().submit(fn, *args, **kwargs).result()


def virtual_map(fn: Callable[[Any], T], iterable: Iterable[Any]) -> list[T]:
    """``[fn(x) for x in iterable]``, each call in a virtual thread of a shared pool.

    Example: ``virtual_map(abs, [-1, -2]) == [1, 2]``
    """
    check_callable(fn)
    if _native.in_virtual_thread():
        return [fn(x) for x in iterable]
    return shared_pool().map(fn, iterable)
