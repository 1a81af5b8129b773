"""Threads as virtual threads: what ``ringloom.monkey.patch_thread()`` puts into
``_thread`` and ``threading``.

After patching, ``threading.Thread.start()`` and ``_thread.start_new_thread`` start a
virtual thread on a process-wide runtime (``DEFAULT_WORKERS`` workers), so
``socketserver.ThreadingTCPServer``, ``ThreadPoolExecutor`` and thread-per-task code get
threads that cost kilobytes, not an OS thread each. Inside one:

- ``get_ident()`` is the virtual thread's own identity: unique, stable while it lives,
  never an OS thread's (``get_native_id()`` still names the worker's OS thread);
- ``current_thread()`` is its ``Thread`` object; in one started by
  ``_thread.start_new_thread``, a ``_DummyThread`` as for a foreign OS thread; in a
  ``VirtualThreadPool`` task, a cheap per-virtual-thread stand-in with a name, not
  listed by ``threading.enumerate()`` (tasks are not threads the program started);
- ``threading.local`` attributes are its own;
- ``signal.pthread_kill`` and ``time.pthread_getcpuclockid`` take its identity too and
  act on the worker's OS thread that runs it (a virtual thread's identity is not a
  ``pthread_t``: passed to the stock calls it would crash the process).

``OSThread`` is the escape hatch: a ``threading.Thread`` that stays a real OS thread,
for CPU-bound work or a C library call that blocks without ringloom knowing.

Example::

    ringloom.monkey.patch_thread()
    t = threading.Thread(target=time.sleep, args=(1,))   # a virtual thread
    t.start(); t.join()
    ringloom.threads.OSThread(target=crunch).start()     # an OS thread
"""

from __future__ import annotations

import _thread
import errno
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

import greenlet

from ringloom import _fork, _native

__all__ = [
    "DEFAULT_WORKERS",
    "FIRST_IDENT",
    "OSThread",
    "current_frames",
    "current_thread",
    "excepthook",
    "get_ident",
    "live_count",
    "local",
    "os_thread_ident",
    "pthread_getcpuclockid",
    "pthread_kill",
    "set_sentinel",
    "start_new_thread",
]

#: Runtime workers (OS threads) that run the threads started after patching.
DEFAULT_WORKERS = int(os.environ.get("RINGLOOM_THREAD_WORKERS", "2"))

#: Virtual thread identities start here, above any OS thread's (see ``src/vthread.rs``).
FIRST_IDENT = 1 << 62

#: ``get_ident()``: the virtual thread's identity, or the OS thread's outside one.
get_ident: Callable[[], int] = _native.get_ident

# The stock calls, taken before ``patch_thread()`` (which imports this module first).
_stock_os_ident: Callable[[], int] = _thread.get_ident
_stock_pthread_kill: Callable[[int, int], None] = signal.pthread_kill
_stock_getcpuclockid: Callable[[int], int] | None = getattr(time, "pthread_getcpuclockid", None)


def os_thread_ident(ident: int) -> int:
    """The OS thread ident behind a ``get_ident()`` value: itself for an OS thread's,
    the ident of the worker running it for a live virtual thread's. Raises
    ``ProcessLookupError`` for a virtual thread that has ended (or was never noted).

    Example::

        signal.pthread_kill(ringloom.threads.os_thread_ident(t.ident), 0)
    """
    if ident < FIRST_IDENT:
        return ident
    if ident == _native.vthread_ident():
        return _stock_os_ident()
    worker = _native.vthread_host(ident)
    if worker is None:
        raise ProcessLookupError(errno.ESRCH, f"no live virtual thread {ident:#x}")
    return worker


def pthread_kill(thread_id: int, signalnum: int, /) -> None:
    """``signal.pthread_kill`` that also takes a virtual thread's identity: the signal
    goes to the worker's OS thread running it (a handler runs on the main thread, as
    always; a system call of that worker is interrupted)."""
    _stock_pthread_kill(os_thread_ident(thread_id), signalnum)


def pthread_getcpuclockid(thread_id: int, /) -> int:
    """``time.pthread_getcpuclockid`` that also takes a virtual thread's identity: the
    CPU-time clock of the worker's OS thread running it (which it shares with the
    other virtual threads of that worker)."""
    if _stock_getcpuclockid is None:
        raise AttributeError("time.pthread_getcpuclockid is not available here")
    return _stock_getcpuclockid(os_thread_ident(thread_id))


# The stock functions, taken at import (before any patch): an OS thread keeps using them.
_stock_start_new_thread = _thread.start_new_thread
_stock_set_sentinel = _thread._set_sentinel  # type: ignore[attr-defined]
_stock_count = _thread._count  # type: ignore[attr-defined]
_stock_current_thread = threading.current_thread

_lock = _thread.allocate_lock()
_loom: _native.Loom | None = None
_live = 0  # virtual threads started here and not ended
_sentinels: dict[int, list[Any]] = {}  # a virtual thread's `_set_sentinel` locks
_started_raw: set[int] = set()  # started by start_new_thread and still running
_names = itertools.count(1)


def _runtime() -> _native.Loom:
    global _loom
    with _lock:
        if _loom is None:
            _loom = _native.Loom(workers=DEFAULT_WORKERS, pack=True)
        return _loom


def _reset_after_fork() -> None:
    """In a forked child: the parent's runtime and threads are not there."""
    global _lock, _loom, _live
    _lock = _thread.allocate_lock()
    _loom = None
    _live = 0
    _sentinels.clear()
    _started_raw.clear()


_fork.on_child(_reset_after_fork)


class _Ended:
    """The outcome slot of every thread started here: counts it out when it ends."""

    __slots__ = ()

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, _value: object) -> None:
        _count_out()

    def set_exception(self, _error: BaseException) -> None:
        _count_out()

    def cancelled(self) -> bool:
        return False


_ENDED = _Ended()


def _count_out() -> None:
    global _live
    with _lock:
        _live -= 1


def _unraisable_args_type() -> type:
    """``sys.UnraisableHookArgs``, which the default hook insists on and ``sys`` does not
    export: captured from one unraisable error raised on purpose."""
    captured: list[Any] = []

    class _Raises:
        def __del__(self) -> None:
            raise RuntimeError

    hook = sys.unraisablehook
    sys.unraisablehook = captured.append
    try:
        _Raises()
    finally:
        sys.unraisablehook = hook
    return type(captured[0])


_UnraisableArgs: type | None = None


def _report(function: Callable[..., Any], error: BaseException) -> None:
    """As ``_thread`` reports what a thread it started raised."""
    global _UnraisableArgs
    if _UnraisableArgs is None:
        _UnraisableArgs = _unraisable_args_type()
    message = "Exception ignored in thread started by"
    args = _UnraisableArgs((type(error), error, error.__traceback__, message, function))
    try:
        sys.unraisablehook(args)
    except BaseException:  # noqa: BLE001 - a broken hook must not kill the thread's end
        pass


def _run_thread(call: list[Any]) -> None:
    """Runs the thread's ``[function, args, kwargs]``, taken out of ``call`` so that
    nothing of it is left once the thread ends: ``join()`` returns only after the
    thread let go of its function (a ``Thread``'s bound ``_bootstrap``, and so the
    ``Thread``), as an OS thread's state is gone before its joiners wake."""
    function, args, kwargs = call
    call.clear()
    ident = get_ident()
    _started_raw.add(ident)
    try:
        function(*args, **kwargs)
    except (SystemExit, greenlet.GreenletExit):
        pass  # SystemExit ends a thread quietly; GreenletExit: killed as its runtime closed
    except BaseException as error:  # noqa: BLE001 - reported, as _thread does
        _report(function, error)
    finally:
        _started_raw.discard(ident)
        function = args = kwargs = None
        # What the end of an OS thread's state does: frees `Thread.join()` and
        # interpreter exit's wait for non-daemon threads.
        for sentinel in _sentinels.pop(ident, ()):
            if sentinel.locked():
                sentinel.release()


def start_new_thread(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> int:
    """``_thread.start_new_thread``: runs ``function(*args, **kwargs)`` in a new virtual
    thread (an ``OSThread``'s start: in a new OS thread); returns its identity."""
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    if not callable(function):
        raise TypeError("first arg must be callable")
    if isinstance(getattr(function, "__self__", None), OSThread):
        return _stock_start_new_thread(function, args, *(() if kwargs is None else (kwargs,)))
    global _live
    loom = _runtime()
    with _lock:
        _live += 1
    try:
        call = [function, args, kwargs or {}]
        return int(loom.spawn(_run_thread, _ENDED, True, 128, (call,)))
    except BaseException:
        _count_out()
        raise


def set_sentinel() -> Any:
    """``_thread._set_sentinel``: a lock released when the calling thread ends (a
    virtual thread's, when its function returns)."""
    ident = _native.vthread_ident()
    if ident is None:
        return _stock_set_sentinel()
    sentinel = _native.Lock()
    _sentinels.setdefault(ident, []).append(sentinel)
    return sentinel


def live_count() -> int:
    """``_thread._count``: threads started through ``_thread`` and still running,
    virtual ones included."""
    return int(_stock_count()) + _live


class _VirtualThread(threading.Thread):
    """``current_thread()`` in a virtual thread that ``threading`` did not start: a
    ``Thread`` made without ``Thread.__init__`` (no lock, no Event: a task asks for it
    at most once), alive while its virtual thread runs, kept with it. Not a daemon, as
    a ``ThreadPoolExecutor``'s worker is not: a thread a task starts is not a daemon
    either unless it says so, and the exit waits for it."""

    _started_event = threading.Event()
    _started_event.set()

    def __init__(self, ident: int) -> None:  # noqa: D107 - no Thread.__init__ on purpose
        self._target = None
        self._name = f"VirtualThread-{next(_names)}"
        self._args = ()
        self._kwargs: dict[str, Any] = {}
        self._daemonic = False
        self._ident = ident
        self._native_id = threading.get_native_id()
        self._tstate_lock = None
        self._started = self._started_event
        self._is_stopped = False
        self._initialized = True
        self._stderr = sys.stderr
        self._invoke_excepthook = None

    def _stop(self) -> None:
        pass

    def is_alive(self) -> bool:
        return True

    def join(self, timeout: float | None = None) -> None:
        raise RuntimeError("cannot join a virtual thread that threading did not start")


def current_thread() -> threading.Thread:
    """``threading.current_thread()``: the caller's ``Thread`` object; in a virtual
    thread not started by ``threading``, its own stand-in."""
    ident = get_ident()
    try:
        return threading._active[ident]  # type: ignore[attr-defined]
    except KeyError:
        pass
    if ident in _started_raw:
        # Started by `_thread.start_new_thread`, as a foreign OS thread would be: a
        # `_DummyThread` in `threading._active`, as stock (3.11 keeps it for good).
        return threading._DummyThread()  # type: ignore[attr-defined,no-any-return]
    if ident >= FIRST_IDENT:
        thread = _native.vthread_state()
        if thread is None:
            thread = _VirtualThread(ident)
            _native.set_vthread_state(thread)
        return thread  # type: ignore[no-any-return]
    return _stock_current_thread()


_stock_excepthook: Callable[[Any], object] = threading.excepthook


def excepthook(args: Any, /) -> None:
    """``threading.excepthook``: the stock hook, but called with no thread in a virtual
    thread it names the caller by ``get_ident()``, as the stock one names an OS thread
    by its ident (which, in a virtual thread, is its worker's)."""
    if args.thread is not None or args.exc_type is SystemExit or _native.vthread_ident() is None:
        _stock_excepthook(args)
        return
    stderr = sys.stderr
    if stderr is None:
        return
    print(f"Exception in thread {get_ident()}:", file=stderr, flush=True)
    traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=stderr)
    stderr.flush()


_stock_current_frames = sys._current_frames


class _Frames(dict):  # type: ignore[type-arg]
    """What :func:`current_frames` returns: the stock dict, where a virtual thread's
    identity that is not there (it ended, or has no frame yet) reads as None instead
    of raising ``KeyError``. A pool's OS thread outlives its task, so code that notes
    the threads running tasks and then reads their frames (distributed's profiler)
    finds it there, idle; a virtual thread ends with its task, in between."""

    def __missing__(self, ident: int) -> None:
        if isinstance(ident, int) and ident >= FIRST_IDENT:
            return None
        raise KeyError(ident)


def current_frames() -> dict[int, Any]:
    """``sys._current_frames()`` with each live virtual thread's frame under its own
    identity too (a running one's is its worker's current frame); an identity of a
    virtual thread that has ended reads as None (see :class:`_Frames`)."""
    frames = _Frames(_stock_current_frames())
    for ident, (frame, worker) in _native.vthread_frames().items():
        if frame is None:
            frame = frames.get(worker)
        if frame is not None:
            frames[ident] = frame
    return frames


def _local_class() -> type:
    import _threading_local

    return _threading_local.local


#: ``threading.local`` whose attributes are per virtual thread (and per OS thread):
#: ``_threading_local.local``, which keys each thread's attributes on
#: ``current_thread()`` (``patch_thread`` points its copy of that at ours).
local: type = _local_class()


class OSThread(threading.Thread):
    """A ``threading.Thread`` that is a real OS thread even after ``patch_thread()``:
    for CPU-bound work, or a C call that blocks without ringloom knowing (it would hold
    a worker). Its locks, queues and events are still ringloom's, shared with virtual
    threads."""
