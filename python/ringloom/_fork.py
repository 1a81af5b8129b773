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

A virtual thread may fork too (``os.fork()``, ``os.forkpty()``, ``subprocess`` with a
``preexec_fn``, ``multiprocessing``'s fork start method). The child's one thread is a
copy of the worker that ran it, and shares that worker's ring with the parent, so in
the child the thread keeps the virtual thread's identity (``threading``'s own after-fork
step makes it the child's main thread) but stops parking: its blocking calls block, as
on a plain thread, and the worker's loop never runs there. When the virtual thread's
call ends in the child, the child ends too: exit code 0 after a return, a
``SystemExit``'s code, 1 after another exception (its traceback printed), with
``sys.stdout`` and ``sys.stderr`` flushed. A child that calls ``os._exit`` or execs, as
most do, never gets there.

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
from typing import Callable

from ringloom import _native

__all__ = [
    "INHERITED",
    "closed_message",
    "fail_inherited",
    "on_child",
]

#: Why an inherited pool refuses work (also the exception of its unfinished futures).
INHERITED = (
    "this VirtualThreadPool was inherited through os.fork(): its workers run only in the "
    "parent process; create a new VirtualThreadPool in the child"
)

_resets: list[Callable[[], None]] = []


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
    _native.detach_after_fork()  # forked by a virtual thread: it runs on as a plain one
    _native.forget_after_fork()
    for reset in _resets:
        reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
