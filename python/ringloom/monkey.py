"""Explicit patching of the standard library for virtual threads, with one registry of
every original it replaced.

``import ringloom`` installs only the I/O interception (``ringloom.green``): patched
``time.sleep``, sockets, ``select``, files and friends that behave exactly as stock
outside a virtual thread and park one inside it. That changes nothing for code that
never runs a virtual thread, so it is done at import.

What changes the whole process is explicit, as in gevent: ``patch_all()`` (or
``python -m ringloom run app.py``) replaces the ``threading`` and ``queue`` machinery, so
that code synchronizing with stock locks, queues and events, keeping
``threading.local`` state or starting threads runs unmodified on virtual threads:

- ``patch_thread()``: ``_thread.allocate_lock``/``threading.Lock``, the C RLock and
  ``threading.Condition`` become ringloom's native ones (a wait parks a virtual thread
  and blocks an OS thread, GIL released; both kinds may share one), and so every stock
  ``Semaphore``, ``Event``, ``Barrier`` built on them; ``get_ident()``,
  ``current_thread()`` and ``threading.local`` are per virtual thread;
  ``Thread.start()`` and ``_thread.start_new_thread`` start virtual threads
  (``ringloom.threads.OSThread`` is the escape hatch); ``sys._current_frames()`` shows
  each virtual thread's stack under its identity (one that has ended reads as None);
  ``signal.pthread_kill`` and ``time.pthread_getcpuclockid`` take a virtual thread's
  identity (acting on the worker's OS thread that runs it); a contended
  ``multiprocessing`` lock or semaphore parks a virtual thread between tries
  (``ringloom.green.semlock``) instead of holding its worker.
- ``patch_queue()``: ``queue.Queue``, ``LifoQueue`` and ``PriorityQueue`` become
  ``ringloom.queues``' (the stock interface and hooks, the waiting native);
  ``queue.SimpleQueue`` (the C one cannot park) becomes the pure-Python one.
- ``patch_logging()``: ``logging``'s module lock and every existing handler's lock are
  made again (they were stock locks made at import).
- ``patch_asyncio()``: each virtual thread has its own running loop, so
  ``asyncio.run()`` works in many virtual threads of one worker.
- ``patch_io()``: the I/O interception (already done by ``import ringloom``).

Patch as early as possible: objects made before (a stock lock a library made at its
import, ``from queue import SimpleQueue`` taken before) stay stock. ``get_original``
gives the stock object back whatever was patched.

Example::

    import ringloom.monkey
    ringloom.monkey.patch_all()           # first thing in the program

    import threading, queue
    assert ringloom.monkey.is_patched("threading", "Lock")
    stock_lock = ringloom.monkey.get_original("threading", "Lock")()
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = [
    "get_original",
    "is_patched",
    "patch_all",
    "patch_asyncio",
    "patch_io",
    "patch_logging",
    "patch_queue",
    "patch_thread",
    "patched",
]

_MISSING = object()

# (module name, attribute) -> what was there before the first patch (_MISSING: nothing).
_originals: dict[tuple[str, str], Any] = {}
_registry_lock = threading.RLock()


def _target(target: str | ModuleType | type) -> ModuleType | type:
    return importlib.import_module(target) if isinstance(target, str) else target


def _key(target: ModuleType | type, name: str) -> tuple[str, str]:
    if isinstance(target, ModuleType):
        return target.__name__, name
    return f"{target.__module__}.{target.__qualname__}", name


def replace(target: str | ModuleType | type, name: str, value: Any) -> None:
    """Sets ``target.name`` (a module's or a class's) to ``value``, recording what the
    target itself held the first time (a class may only inherit it)."""
    obj = _target(target)
    with _registry_lock:
        key = _key(obj, name)
        if key not in _originals:
            _originals[key] = vars(obj).get(name, _MISSING)
        setattr(obj, name, value)


def restore(target: str | ModuleType | type, name: str) -> None:
    """Puts back the original of ``target.name`` (nothing if it was never replaced)."""
    obj = _target(target)
    with _registry_lock:
        original = _originals.pop(_key(obj, name), None)
        if original is None:
            return
        if original is _MISSING:
            if name in vars(obj):
                delattr(obj, name)
        else:
            setattr(obj, name, original)


def get_original(target: str | ModuleType | type, name: str | list[str] | tuple[str, ...]) -> Any:
    """The stock ``target.name`` (a list of them for a list of names), whether or not it
    is patched now; ``target`` is a module, its name, or a class.

    Example: ``get_original("time", "sleep")(0.1)`` blocks the OS thread.
    """
    if not isinstance(name, str):
        return [get_original(target, one) for one in name]
    obj = _target(target)
    with _registry_lock:
        key = _key(obj, name)
        patched_now = key in _originals
        original = _originals.get(key, _MISSING)
    if not patched_now:
        return getattr(obj, name)
    if original is not _MISSING:
        return original
    # The target only inherited it: what its bases hold.
    if isinstance(obj, type):
        for base in obj.__mro__[1:]:
            if name in vars(base):
                return vars(base)[name]
    raise AttributeError(f"{key[0]} had no attribute {name!r} before it was patched")


def is_patched(target: str | ModuleType | type, name: str | None = None) -> bool:
    """Whether ``target.name`` (or anything of ``target``, without a name) is patched.
    For a module name, its classes' patched attributes count too."""
    obj = _target(target)
    prefix = _key(obj, "")[0]
    with _registry_lock:
        if name is not None:
            return _key(obj, name) in _originals
        return any(key[0] == prefix or key[0].startswith(prefix + ".") for key in _originals)


def patched() -> dict[str, list[str]]:
    """Every patched attribute, by module: ``{"threading": ["Lock", ...], ...}``."""
    with _registry_lock:
        out: dict[str, list[str]] = {}
        for module_name, name in _originals:
            out.setdefault(module_name, []).append(name)
        return out


def patch_io() -> None:
    """The I/O interception of ``ringloom.green`` (``import ringloom`` already did it)."""
    from ringloom import green

    green.patch_all()


def patch_thread() -> None:
    """Locks, identities, thread-locals and thread starts of ``_thread`` and
    ``threading`` for virtual threads (see the module docstring). Idempotent."""
    import _thread
    import _threading_local
    import signal
    import time

    from ringloom import _native, threads
    from ringloom.green import semlock

    with _registry_lock:
        lock_type = _native.Lock
        for module in (_thread, threading):
            replace(module, "get_ident", threads.get_ident)
        replace(_thread, "allocate_lock", lock_type)
        replace(_thread, "allocate", lock_type)
        replace(_thread, "LockType", lock_type)
        replace(_thread, "RLock", _native.RLock)
        replace(_thread, "start_new_thread", threads.start_new_thread)
        replace(_thread, "start_new", threads.start_new_thread)
        replace(_thread, "_set_sentinel", threads.set_sentinel)
        replace(_thread, "_count", threads.live_count)
        replace(_thread, "_local", threads.local)
        replace(threading, "Lock", lock_type)
        replace(threading, "_allocate_lock", lock_type)
        replace(threading, "_CRLock", _native.RLock)
        replace(threading, "Condition", _native.Condition)
        replace(threading, "_start_new_thread", threads.start_new_thread)
        replace(threading, "_set_sentinel", threads.set_sentinel)
        replace(threading, "local", threads.local)
        replace(threading, "current_thread", threads.current_thread)
        replace(threading, "currentThread", _current_thread_alias)
        replace(threading, "excepthook", threads.excepthook)
        replace(threading, "__excepthook__", threads.excepthook)
        replace(_threading_local, "current_thread", threads.current_thread)
        _native.track_vthreads()
        replace(sys, "_current_frames", threads.current_frames)
        replace(signal, "pthread_kill", threads.pthread_kill)
        semlock.patch()
        if hasattr(time, "pthread_getcpuclockid"):
            replace(time, "pthread_getcpuclockid", threads.pthread_getcpuclockid)


def _current_thread_alias() -> threading.Thread:
    """``threading.currentThread``: deprecated, as stock."""
    import warnings

    from ringloom import threads

    warnings.warn(
        "currentThread() is deprecated, use current_thread() instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return threads.current_thread()


def patch_queue() -> None:
    """``queue.Queue``, ``LifoQueue`` and ``PriorityQueue`` become ``ringloom.queues``'
    (native waiting, stock interface); ``queue.SimpleQueue`` becomes the pure-Python
    one, whose waits go through the (patched) ``threading`` locks. Idempotent."""
    import queue

    from ringloom import queues

    with _registry_lock:
        replace(queue, "SimpleQueue", queue._PySimpleQueue)  # type: ignore[attr-defined]
        replace(queue, "Queue", queues.Queue)
        replace(queue, "LifoQueue", queues.LifoQueue)
        replace(queue, "PriorityQueue", queues.PriorityQueue)


def patch_logging() -> None:
    """Remakes ``logging``'s module lock and each existing handler's lock with the
    (patched) ``threading.RLock``; handlers made later get one anyway. Idempotent."""
    if "logging" not in sys.modules:
        return  # made after the patch, its locks are patched ones
    import logging

    from ringloom import _native

    with _registry_lock:
        if not isinstance(logging._lock, _native.RLock):  # type: ignore[attr-defined]
            replace(logging, "_lock", threading.RLock())
        for ref in list(logging._handlerList):  # type: ignore[attr-defined]
            handler = ref()
            if handler is not None and not isinstance(handler.lock, _native.RLock):
                handler.createLock()


def patch_asyncio() -> None:
    """Each virtual thread gets its own asyncio running loop (and event loop policy
    state), so ``asyncio.run()`` runs in many virtual threads of one worker. Idempotent.
    """
    import asyncio

    from ringloom import _native, threads

    _native.isolate_running_loops()
    with _registry_lock:
        # The default policy keeps the loop set by `set_event_loop` in a
        # `threading.local` made when the policy was: per OS thread if that was before
        # patch_thread.
        policy = asyncio.get_event_loop_policy()
        local = getattr(policy, "_local", None)
        if local is not None and not isinstance(local, threads.local):
            fields = {"_loop": None, "_set_called": False}
            policy._local = type("_Local", (threads.local,), fields)()  # type: ignore[attr-defined]


def patch_all(
    *,
    thread: bool = True,
    queue: bool = True,
    logging: bool = True,
    asyncio: bool = True,
    io: bool = True,
) -> None:
    """Every patch (each can be left out by name). Idempotent.

    Example: ``ringloom.monkey.patch_all()`` as the program's first statement.
    """
    if io:
        patch_io()
    if thread:
        patch_thread()
    if queue:
        patch_queue()
    if logging:
        patch_logging()
    if asyncio:
        patch_asyncio()
