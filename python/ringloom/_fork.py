"""Keeps a child of ``os.fork()`` usable: a new ``VirtualThreadPool`` works there.

``fork`` copies only the thread that calls it. The child inherits every pool, its
``Loom`` and its runtime, but none of their threads (runtime workers, blocking pool,
watchdog), and any lock one of those threads held at that instant stays locked. So,
right after a fork, in the child only (``os.register_at_fork(after_in_child=...)``):

- ``_native.forget_after_fork()`` leaks each open Loom's runtime (see ``src/loom.rs``:
  dropping it would wait for the missing workers) and leaves the Loom closed, and marks
  every waiter of ringloom's locks made before the fork as stale;
- then every reset registered with ``on_child(fn)`` runs, in registration order: each
  module resets its own state there (``ringloom._pool`` its pools, which then refuse
  work and fail their unfinished futures with ``INHERITED``; ``ringloom._shared`` its
  shared pool; ``ringloom.green`` and ``green.socket`` their locks; ``ringloom.threads``
  its runtime; ``ringloom.safe_thread`` its list of threads to join at exit, as
  ``threading`` forgets the parent's threads). Nobody writes another module's state.

The parent is untouched and its pools keep working.

``os.fork()`` (and ``os.forkpty()``) called in a virtual thread raises RuntimeError
instead: the child would be a copy of a runtime worker in the middle of its loop,
sharing that worker's ring (or epoll instance) with the parent. A fork that gets past
this (through a reference to the stock function taken before ringloom was imported)
ends the child at once, exit code 70, with that message on stderr.

``subprocess`` with a ``preexec_fn`` forks too (``_posixsubprocess.fork_exec``), and
its child runs Python (the at-fork hooks, then ``preexec_fn``) before it execs: there
the child's thread stops being a virtual thread first, so ``preexec_fn`` blocks as on a
plain thread and never reaches the ring, and the exec follows as stock.

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

import _posixsubprocess
import concurrent.futures
import os
import subprocess
from typing import Any, Callable

from ringloom import _native, monkey

__all__ = [
    "IN_VIRTUAL_THREAD",
    "INHERITED",
    "closed_message",
    "fail_inherited",
    "fork",
    "fork_exec",
    "forkpty",
    "on_child",
]

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

_resets: list[Callable[[], None]] = []

# The virtual threads inside `_posixsubprocess.fork_exec` now: a child forked there by
# one of them execs after its hooks and `preexec_fn` (a copy of this set tells it so).
_exec_follows: set[int] = set()


def on_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Registers ``reset`` to run in a forked child, after the runtimes are let go of:
    the one place a module resets its own state (locks a vanished thread may hold,
    objects that belong to the parent's threads). Returns ``reset`` (a decorator)."""
    _resets.append(reset)
    return reset


def closed_message(inherited: bool) -> str:
    """Why a pool whose runtime is gone refuses a task (``inherited``: through a fork)."""
    return INHERITED if inherited else "the VirtualThreadPool's runtime is closed"


def fail_inherited(future: concurrent.futures.Future[object]) -> None:
    """Fails an unfinished future of a pool inherited through a fork."""
    # A thread that is gone may have held the future's lock at the fork: only this
    # thread exists now, so a fresh lock takes nothing from anyone.
    future._condition._at_fork_reinit()  # type: ignore[attr-defined]
    if not future.done():
        try:
            future.set_exception(RuntimeError(INHERITED))
        except concurrent.futures.InvalidStateError:
            pass


def _after_fork_in_child() -> None:
    if _native.in_virtual_thread():
        if _native.vthread_ident() in _exec_follows:
            _native.leave_virtual_thread_after_fork()
        else:  # a fork that went around `fork` below
            monkey.get_original("os", "write")(
                2, f"ringloom: {IN_VIRTUAL_THREAD}; the child exits\n".encode()
            )
            os._exit(70)
    _native.forget_after_fork()
    for reset in _resets:
        reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

stock_fork = os.fork
stock_forkpty = os.forkpty
stock_fork_exec = _posixsubprocess.fork_exec


def fork() -> int:
    if _native.in_virtual_thread():
        raise RuntimeError(IN_VIRTUAL_THREAD)
    return stock_fork()


def forkpty() -> tuple[int, int]:
    if _native.in_virtual_thread():
        raise RuntimeError(IN_VIRTUAL_THREAD.replace("os.fork()", "os.forkpty()"))
    return stock_forkpty()


def fork_exec(*args: Any) -> int:
    """``_posixsubprocess.fork_exec``, noting a virtual thread that calls it (see the
    module docstring); stock elsewhere."""
    ident = _native.vthread_ident()
    if ident is None:
        return stock_fork_exec(*args)  # type: ignore[no-any-return]
    _exec_follows.add(ident)
    try:
        return stock_fork_exec(*args)  # type: ignore[no-any-return]
    finally:
        _exec_follows.discard(ident)


for _patched, _stock in ((fork, stock_fork), (forkpty, stock_forkpty)):
    _patched.__doc__ = f"{_stock.__doc__}\n\nIn a virtual thread: RuntimeError (ringloom)."
    _patched.__wrapped__ = _stock  # type: ignore[attr-defined,union-attr]
monkey.replace(os, "fork", fork)
monkey.replace(os, "forkpty", forkpty)
monkey.replace(_posixsubprocess, "fork_exec", fork_exec)
if getattr(subprocess, "_fork_exec", None) is stock_fork_exec:  # its own reference
    monkey.replace(subprocess, "_fork_exec", fork_exec)
