"""What every Python benchmark script shares: pinning, the peak-thread watcher, RSS
readings and the one JSON line the runner reads (see ``benches/suites/common.py``).

Import it before anything that starts threads. It never imports ``threading``, so a
script may still ``gevent.monkey.patch_all()`` after importing it; the watcher then runs
on gevent's saved original ``start_new_thread`` and ``sleep``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any, Callable

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before any gevent monkey-patching."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def pin(cpu: int | None) -> None:
    """Pins this process (and every thread it starts afterwards) to one CPU, whichever
    CPUs it inherited: a server started by a driver pinned to the other CPU moves to its
    own (checking ``cpu`` against the inherited set left it on the driver's CPU). A CPU
    the machine does not let it use leaves it where it is."""
    if cpu is not None and cpu >= 0 and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def affinity() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def os_threads() -> int:
    """OS threads of this process now."""
    return len(os.listdir("/proc/self/task"))


def rss_kib() -> int:
    """Resident set size now (``/proc/self/statm``), KiB."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def body_for(i: int) -> bytes:
    """The body the HTTP servers answer for ``/item/<i>`` (the scrape benchmark's and the
    demo's): 256..4095 bytes that depend on ``i``, so each reply can be checked."""
    length = 256 + (i * 7919) % 3840
    unit = b"%08d|" % i
    return (unit * (length // len(unit) + 1))[:length]


def raise_nofile(wanted: int) -> int:
    """Raises the soft RLIMIT_NOFILE toward ``wanted`` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Watcher:
    """Samples this process's OS thread count from an OS thread of its own, every
    ``interval`` seconds, from ``start()`` to ``stop()``. ``stop()`` returns the peak
    without the watcher itself."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = False
        self._stopped = False
        self._sleep: Callable[[float], None] = _original("time", "sleep")

    def start(self) -> Watcher:
        self.peak = os_threads() + 1
        _original("_thread", "start_new_thread")(self._run, ())
        return self

    def _run(self) -> None:
        try:
            while not self._stop:
                self.peak = max(self.peak, os_threads())
                self.samples += 1
                self._sleep(self.interval)
        finally:
            self._stopped = True

    def stop(self) -> int:
        self.peak = max(self.peak, os_threads())
        self._stop = True
        deadline = time.monotonic() + 2
        while not self._stopped and time.monotonic() < deadline:
            self._sleep(self.interval / 4)
        return self.peak - 1


def preimport(*modules: str) -> None:
    """Imports a peer's modules before its clock starts: an import is paid once per
    process, not per batch of tasks (``ringloom.virtual_thread`` takes 50-80 ms here,
    ``concurrent.futures`` 30 ms)."""
    for module in modules:
        importlib.import_module(module)


def disk_directory() -> str:
    """A new temporary directory on a disk-backed file system: /var/tmp when the
    default temporary directory is tmpfs (which has no disk to read from)."""
    base = tempfile.gettempdir()
    if fs_type(base) == "tmpfs" and os.path.isdir("/var/tmp"):
        base = "/var/tmp"
    return tempfile.mkdtemp(prefix="ringloom-demo-", dir=base)


def fs_type(path: str) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and (path + "/").startswith(fields[1].rstrip("/") + "/"):
                    if len(fields[1]) > len(best):
                        best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def evict(paths: list[str]) -> None:
    """Drops the files' pages from the page cache (they are clean: synced after writing),
    so the next read goes to the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def versions(*modules: str) -> dict[str, str]:
    """``{module: version}`` for the peers a run used."""
    out = {"python": sys.version.split()[0]}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def emit(metrics: dict[str, float], info: dict[str, Any]) -> None:
    """The last stdout line: what the runner records."""
    info.setdefault("cpus", affinity())
    rounded = {k: round(float(v), 4) for k, v in metrics.items()}
    print(json.dumps({"metrics": rounded, "info": info}, default=str), flush=True)
