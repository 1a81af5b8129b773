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

__all__ = ["INHERITED", "closed_message", "track"]

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
    for item in live:
        _fail(item.future)  # each one's done callback takes it out of pool._live


def _after_fork_in_child() -> None:
    _native.forget_after_fork()
    from ringloom import green, safe_thread, virtual_thread
    from ringloom.green import socket as green_socket

    green._lock = threading.Lock()
    green_socket._mode_lock = threading.Lock()
    virtual_thread._default_lock = threading.Lock()
    virtual_thread._default_pool = None
    safe_thread._live.clear()  # else the child's exit would join them for ever
    for pool in list(_pools):
        _reset_pool(pool)


os.register_at_fork(after_in_child=_after_fork_in_child)
