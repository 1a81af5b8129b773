"""``os.read``, ``os.write`` and ``os.waitpid`` for intercepting virtual threads.

``os.read`` and ``os.write`` on a pipe, a terminal or a file that would block park the
virtual thread on the ring (a call that can finish at once is made at once: see
``src/file.rs``). ``os.waitpid`` for one child, without ``WNOHANG``, parks on the
child's pidfd until it exits and then reaps it the stock way, so ``subprocess.run`` and
``Popen.wait`` park too. Everywhere else these are the stock functions.
"""

from __future__ import annotations

import os as _os
import select as _select
from typing import Any

from ringloom import _native, monkey
from ringloom.green._common import intercepting

__all__ = ["read", "write", "waitpid", "patch", "unpatch"]

stock_read = _os.read
stock_write = _os.write
stock_waitpid = _os.waitpid


def read(fd: int, n: int, /) -> bytes:
    if not intercepting():
        return stock_read(fd, n)
    fd = fd.__index__()
    n = n.__index__()
    if n < 0:
        raise ValueError("negative count")  # as stock (errno EINVAL)
    return _native.file_read(fd, n)


def write(fd: int, data: Any, /) -> int:
    if not intercepting():
        return stock_write(fd, data)
    return _native.file_write(fd.__index__(), data)


def waitpid(pid: int, options: int, /) -> tuple[int, int]:
    if not intercepting() or pid <= 0 or options & (_os.WNOHANG | _os.WUNTRACED):
        return stock_waitpid(pid, options)
    try:
        pidfd = _os.pidfd_open(pid)
    except OSError:
        # Not our child or already reaped elsewhere: the stock call reports it.
        return stock_waitpid(pid, options)
    try:
        _native.wait_fd(pidfd, _select.POLLIN)
    finally:
        _os.close(pidfd)
    return stock_waitpid(pid, options)


for _patched, _stock in ((read, stock_read), (write, stock_write), (waitpid, stock_waitpid)):
    _patched.__doc__ = _stock.__doc__
    _patched.__wrapped__ = _stock  # type: ignore[attr-defined,union-attr]


def patch() -> None:
    for name, function in (("read", read), ("write", write), ("waitpid", waitpid)):
        monkey.replace(_os, name, function)


def unpatch() -> None:
    for name in ("read", "write", "waitpid"):
        monkey.restore(_os, name)
