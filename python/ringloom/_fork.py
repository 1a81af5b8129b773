"""Keeps a child of ``os.fork()`` usable: a new ``VirtualThreadPool`` works there.

``fork`` copies only the thread that calls it. The child inherits every pool, its
``Loom`` and its runtime, but none of their threads (runtime workers, blocking pool,
watchdog), and any lock one of those threads held at that instant stays locked. So,
right after a fork, in the child only (``os.register_at_fork(after_in_child=...)``):

- ``_native.forget_after_fork()`` leaks each open Loom's runtime (see ``src/loom.rs``:
  dropping it would wait for the missing workers) and leaves the Loom closed;
- each inherited ``VirtualThreadPool`` (tracked here through a weak set) gets fresh
  locks and is marked as inherited: ``submit``, ``map`` and ``starmap`` raise
  RuntimeError saying so, ``shutdown`` returns at once, and its futures that were not
  done fail with that RuntimeError (their tasks run only in the parent);
- the module-level locks of ringloom and the shared pool of ``run_in_virtual_thread``,
  ``virtual_map`` and ``SafeThread`` start over;
- the parent's SafeThreads are not waited for at the child's exit (they run only
  in the parent; as ``threading`` forgets the parent's threads).

The parent is untouched and its pools keep working.

``os.fork()`` (and ``os.forkpty()``) called in a virtual thread raises RuntimeError
instead: the child would be a copy of a runtime worker in the middle of its loop,
sharing that worker's ring (or epoll instance) with the parent. A fork that gets past
this (through a reference to the stock function taken before ringloom was imported)
ends the child at once, exit code 70, with that message on stderr.

Example::

    pool = VirtualThreadPool()
    pool.submit(time.sleep, 0.1).result()
    if os.fork() == 0:
        with VirtualThreadPool() as fresh:          # works in the child
            fresh.submit(time.sleep, 0.1).result()
        pool.submit(abs, -1)                        # RuntimeError: inherited through fork
        os._exit(0)
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import weakref
from typing import TYPE_CHECKING

from ringloom import _native

if TYPE_CHECKING:
    from ringloom.virtual_thread import VirtualThreadPool

__all__ = ["IN_VIRTUAL_THREAD", "INHERITED", "closed_message", "fork", "forkpty", "track"]

#: Why os.fork() refuses to run in a virtual thread.
IN_VIRTUAL_THREAD = (
    "os.fork() in a virtual thread is not supported: the child would be a copy of a "
    "runtime worker, whose ring it shares with the parent; fork from a plain OS thread "
    "(or use multiprocessing's 'spawn' or 'forkserver' start method)"
)

#: Why an inherited pool refuses work (also the exception of its unfinished futures).
INHERITED = (
    "this VirtualThreadPool was inherited through os.fork(): its workers run only in the "
    "parent process; create a new VirtualThreadPool in the child"
)

# Every VirtualThreadPool of this process, and those of them inherited through a fork.
_pools: weakref.WeakSet[VirtualThreadPool] = weakref.WeakSet()
_inherited: weakref.WeakSet[VirtualThreadPool] = weakref.WeakSet()


def track(pool: VirtualThreadPool) -> None:
    """Called by each new ``VirtualThreadPool``: reset in a forked child."""
    _pools.add(pool)


def closed_message(pool: VirtualThreadPool) -> str:
    """Why ``pool``, whose runtime is gone, refuses a task."""
    if pool in _inherited:
        return INHERITED
    return "the VirtualThreadPool's runtime is closed"


def _fail(future: concurrent.futures.Future[object]) -> None:
    # A thread that is gone may have held the future's lock at the fork: only this
    # thread exists now, so a fresh lock takes nothing from anyone.
    future._condition._at_fork_reinit()  # type: ignore[attr-defined]
    if not future.done():
        try:
            future.set_exception(RuntimeError(INHERITED))
        except concurrent.futures.InvalidStateError:
            pass


def _reset_pool(pool: VirtualThreadPool) -> None:
    _inherited.add(pool)
    pool._lock = threading.Lock()
    pool._idle = threading.Condition(pool._lock)
    pool._broken = True  # no dispatching from the done callbacks below
    pool._loom = None
    pool._watchdog = None  # its thread is gone with the rest
    live = list(pool._live)
    pool._queue.clear()
    pool._batches.clear()  # their calls ran in the parent's workers, gone here
    for item in live:
        _fail(item.future)  # each one's done callback takes it out of pool._live


def _after_fork_in_child() -> None:
    if _native.in_virtual_thread():  # a fork that went around `fork` below
        write = os.write
        while hasattr(write, "__wrapped__"):  # the stock write: the patched one parks
            write = write.__wrapped__
        write(2, f"ringloom: {IN_VIRTUAL_THREAD}; the child exits\n".encode())
        os._exit(70)
    _native.forget_after_fork()
    from ringloom import green, safe_thread, virtual_thread
    from ringloom.green import socket as green_socket

    green._lock = threading.Lock()
    green_socket._mode_locks = green_socket._DescriptorLocks()
    virtual_thread._default_lock = threading.Lock()
    virtual_thread._default_pool = None
    safe_thread._live.clear()  # else the child's exit would join them for ever
    for pool in list(_pools):
        _reset_pool(pool)


os.register_at_fork(after_in_child=_after_fork_in_child)

stock_fork = os.fork
stock_forkpty = os.forkpty


def fork() -> int:
    if _native.in_virtual_thread():
        raise RuntimeError(IN_VIRTUAL_THREAD)
    return stock_fork()


def forkpty() -> tuple[int, int]:
    if _native.in_virtual_thread():
        raise RuntimeError(IN_VIRTUAL_THREAD.replace("os.fork()", "os.forkpty()"))
    return stock_forkpty()


for _patched, _stock in ((fork, stock_fork), (forkpty, stock_forkpty)):
    _patched.__doc__ = f"{_stock.__doc__}\n\nIn a virtual thread: RuntimeError (ringloom)."
    _patched.__wrapped__ = _stock  # type: ignore[attr-defined]
os.fork = fork
os.forkpty = forkpty
