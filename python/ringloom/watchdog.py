"""The watchdog: logs a virtual thread that holds its worker too long without parking.

A virtual thread that computes (or blocks in a call that is not intercepted) keeps
every other virtual thread of its worker waiting. Each worker stamps the time it
switches into a virtual thread and clears the stamp when the thread parks, yields or
ends (``Loom.holding()``). A ``Watchdog`` is a daemon thread that looks at the stamps
every half threshold; once a virtual thread has run for longer than the threshold
without parking it logs, once per such stretch, a WARNING on the logger ``ringloom``
naming the function, file and line the virtual thread is executing now (found through
``sys._current_frames()``, stepping out of ringloom's own frames) and how long it has
held its worker so far.

``VirtualThreadPool`` runs one per pool (``watchdog_threshold``, seconds, default 0.1;
None disables it) and stops it with the pool. Without ``watchdog_threshold`` the
environment variable ``RINGLOOM_WATCHDOG_MS`` sets the default threshold in
milliseconds (``0`` or ``off`` disables it).

Example, for a bare ``Loom``::

    with Loom() as loom, Watchdog(loom, threshold=0.05):
        ringloom.submit(loom, busy_loop).result()   # logs "... held its worker ..."

Each record carries the details as attributes too: ``vt_function``, ``vt_file``,
``vt_line``, ``vt_held`` (seconds) and ``vt_thread`` (the worker's thread ident).

For a hang rather than a hog, ``dump_virtual_threads()`` describes every live virtual
thread: what a parked one waits for (the ring op, or the lock or pool call) and for how
long, and its stack. It needs the virtual threads tracked: ``track()`` (or
``ringloom.monkey.patch_thread()``, which does it) before they start::

    ringloom.watchdog.track()
    ...
    if not done.wait(60):
        raise AssertionError("hang\n" + ringloom.watchdog.dump_virtual_threads())
"""

from __future__ import annotations

import _thread
import builtins
import linecache
import logging
import os
import re
import sys
import threading
import traceback
import types
import weakref
from types import FrameType
from typing import Any

from ringloom import _native

__all__ = ["DEFAULT_THRESHOLD", "Watchdog", "default_threshold", "dump_virtual_threads", "track"]

#: Seconds a virtual thread may run without parking before the watchdog logs it.
DEFAULT_THRESHOLD = 0.1

#: The environment variable that overrides ``DEFAULT_THRESHOLD`` (milliseconds).
ENV_VAR = "RINGLOOM_WATCHDOG_MS"

logger = logging.getLogger("ringloom")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def default_threshold() -> float | None:
    """The threshold of a pool created without ``watchdog_threshold``: seconds, or
    None (disabled). ``RINGLOOM_WATCHDOG_MS`` (milliseconds; ``0``/``off`` disables)
    when set, else ``DEFAULT_THRESHOLD``."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if not raw:
        return DEFAULT_THRESHOLD
    if raw in ("off", "none", "no", "false"):
        return None
    try:
        ms = float(raw)
    except ValueError:
        logger.warning("ignoring %s=%r: not a number of milliseconds", ENV_VAR, raw)
        return DEFAULT_THRESHOLD
    return ms / 1000.0 if ms > 0 else None


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` validated: None, or a positive number of seconds."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(
            f"watchdog_threshold must be a number of seconds or None, "
            f"not {type(threshold).__name__}"
        )
    if not threshold > 0:
        raise ValueError(f"watchdog_threshold must be positive, got {threshold}")
    return float(threshold)


def _user_frame(frame: FrameType) -> FrameType:
    """The innermost frame outside ringloom's own modules (``frame`` when all are)."""
    found: FrameType | None = frame
    while found is not None and found.f_code.co_filename.startswith(_PACKAGE_DIR):
        found = found.f_back
    return found if found is not None else frame


_STOCK_LOCKS = (type(_thread.allocate_lock()), type(_thread.RLock()))
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _stock_lock_on_line(frame: types.FrameType) -> tuple[str, Any] | None:
    """A stock lock, held by someone, that the frame's current line names (``with
    lock:``, ``self._lock.acquire()``): most likely what a held worker waits on."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    scopes = (frame.f_locals, frame.f_globals, vars(builtins))
    for name in _NAME.findall(line):
        head, *rest = name.split(".")
        for scope in scopes:
            if head in scope:
                value: Any = scope[head]
                break
        else:
            continue
        for part in rest:
            if isinstance(value, _STOCK_LOCKS):
                break
            # Here, not at import: `inspect` costs `import ringloom` a sixth of its time.
            import inspect

            try:
                value = inspect.getattr_static(value, part)
            except AttributeError:
                value = None
                break
        # (3.11's C RLock has no locked(): its repr says.)
        if isinstance(value, _STOCK_LOCKS) and repr(value).startswith("<locked"):
            return name, value
    return None


class Watchdog:
    """A daemon thread that logs the virtual threads of ``loom`` running longer than
    ``threshold`` seconds without parking (see the module doc). ``start()`` and
    ``stop()`` (which joins the thread), or use it as a context manager."""

    def __init__(self, loom: _native.Loom, threshold: float = DEFAULT_THRESHOLD) -> None:
        checked = check_threshold(threshold)
        if checked is None:
            raise ValueError("a Watchdog needs a threshold")
        # Weak: an abandoned pool's Loom is still collected (and closed); the thread
        # then ends.
        self._loom = weakref.ref(loom)
        self.threshold = checked
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # worker thread ident -> the episode already reported there
        self._reported: dict[int, int] = {}

    def start(self) -> Watchdog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ringloom-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread and waits for it (at most one check)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _run(self) -> None:
        interval = self.threshold / 2
        while not self._stop.wait(interval):
            if self._loom() is None:
                return
            try:
                self.check()
            except Exception:  # never let the watchdog die of a report
                logger.exception("ringloom watchdog check failed")

    def check(self) -> None:
        """One look at the workers (the thread does this every half threshold)."""
        loom = self._loom()
        if loom is None:
            return
        holding = loom.holding()
        if not holding and not self._reported:
            return
        reported = self._reported
        for ident in [i for i in reported if i not in {h[0] for h in holding}]:
            del reported[ident]
        due = [
            (ident, episode)
            for ident, episode, held in holding
            if held > self.threshold and reported.get(ident) != episode
        ]
        if not due:
            return
        frames = sys._current_frames()
        # Only episodes still running after the snapshot: their frame is in it.
        after = {(ident, episode): held for ident, episode, held in loom.holding()}
        for ident, episode in due:
            held = after.get((ident, episode))
            frame = frames.get(ident)
            if held is None or frame is None:
                continue
            reported[ident] = episode
            frame = _user_frame(frame)
            code = frame.f_code
            stock = _stock_lock_on_line(frame)
            hint = ""
            if stock is not None:
                hint = (
                    f"; it waits on a stock lock, {stock[0]} = {stock[1]!r}, which a virtual "
                    "thread cannot park on (ringloom.monkey.patch_all() before that lock is "
                    "made turns it into one that parks)"
                )
            logger.warning(
                "a virtual thread has held its worker for %.3f s without parking, in %s "
                "(%s:%d)%s\n%s",
                held,
                code.co_name,
                code.co_filename,
                frame.f_lineno,
                hint,
                "".join(traceback.format_stack(frame)).rstrip(),
                extra={
                    "vt_function": code.co_name,
                    "vt_file": code.co_filename,
                    "vt_line": frame.f_lineno,
                    "vt_held": held,
                    "vt_thread": ident,
                    "vt_stock_lock": None if stock is None else stock[0],
                },
            )
        del frames


def track() -> None:
    """Notes virtual threads from now on (their stacks and waits), for
    ``dump_virtual_threads``; each start, end, park and resume then takes a short lock."""
    _native.track_vthreads()


def dump_virtual_threads() -> str:
    """Every live virtual thread noted since ``track()``: its identity, what it is parked
    on and for how long (or that it runs or is ready), and its stack, innermost last."""
    waits = _native.vthread_waits()
    current = sys._current_frames()
    lines = []
    for ident, (frame, worker) in sorted(_native.vthread_frames().items()):
        if ident in waits:
            on, seconds = waits[ident]
            state = f"parked {seconds:.3f} s on {on}"
        else:
            state = "running or ready"
            if frame is None:
                frame = current.get(worker)
        lines.append(f"virtual thread {ident} (worker {worker}): {state}")
        if frame is not None:
            lines.extend("  " + line.rstrip("\n") for line in traceback.format_stack(frame))
    return "\n".join(lines) if lines else "no virtual thread noted (see track())"
