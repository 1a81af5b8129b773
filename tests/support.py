"""Helpers the test layers share (importable as ``support``: ``tests`` is on the path)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

#: Seconds a test waits for something that should happen at once before it fails.
TIMEOUT = 30


def os_threads() -> int:
    """OS threads of this process now."""
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    """Descriptors open in this process now."""
    return len(os.listdir("/proc/self/fd"))


def evicted(path: Path) -> bool:
    """Drops the file's pages from the page cache; whether its first byte is then out
    of it (a RWF_NOWAIT read would block), as on a disk but not on tmpfs."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Polls ``predicate`` until true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


@contextlib.contextmanager
def one_worker_held(pool: Any) -> Iterator[int]:
    """Holds one worker of ``pool`` (a ``VirtualThreadPool``) with a call that does not
    park, until the block ends; yields that worker's native thread id."""
    release = threading.Event()
    held_on: list[int] = []

    def hold() -> None:
        held_on.append(threading.get_native_id())
        release.wait(TIMEOUT)

    held = pool.submit(hold, is_blocking=False)
    wait_until(lambda: bool(held_on))
    try:
        yield held_on[0]
    finally:
        release.set()
        held.result(TIMEOUT)


def script_env() -> dict[str, str]:
    """The environment for a test file run as a script: ``tests`` on its import path,
    as pytest puts it there for the tests themselves."""
    tests = str(Path(__file__).resolve().parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{path}" if path else tests}
