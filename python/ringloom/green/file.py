"""``open()``, ``io.open`` and so ``pathlib``'s opens, for intercepting virtual threads.

In a virtual thread the patched ``open`` builds the stock layers (``BufferedReader``,
``BufferedWriter``, ``BufferedRandom``, ``TextIOWrapper``) over :class:`RingFileIO`, a
``FileIO`` whose reads and writes park the virtual thread while they wait on the ring,
and whose opener opens through the ring. A call the kernel can finish without waiting
(data in the page cache, a path in the dentry cache) is done at once, without a switch;
see ``src/file.rs``. Everywhere else ``open`` is the stock function, and a
``RingFileIO`` used from an OS thread does the stock calls.

Descriptors stay bounded: an ``open`` in a virtual thread that fails with ``EMFILE`` or
``ENFILE`` while files opened this way are open waits (parked) for one of them to be
closed and tries again, up to ``DESCRIPTOR_WAIT`` seconds, then raises the error. So a
``map`` over more files than the descriptor limit runs as many at once as the limit
allows instead of failing; an ``open`` with none of ours open fails at once, as stock.

Writes to a regular file land in the page cache in place (the GIL let go of), as with
stock files: far cheaper than a ring trip, and they never park inside a buffered
layer's lock, so many virtual threads can write to one shared file object as OS threads
do. Writes that wait for the device (``O_DIRECT``, ``O_SYNC``, ``O_DSYNC``) and writes to
pipes and sockets that are full park. A file object read by two virtual threads at once
(rare: they share its position) is the exception: a second virtual thread on the same
worker that calls into a buffered file while another is parked in a read inside it
gets the stock ``RuntimeError`` ("reentrant call") instead of a deadlock.

Example::

    import ringloom

    def count_lines(path):
        with open(path) as f:  # parks on the ring only when the disk must be read
            return sum(1 for _ in f)

    with ringloom.VirtualThreadPool() as pool:
        print(pool.submit(count_lines, "/etc/passwd").result())
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import io
import itertools
import os
import stat
import time
import warnings
from typing import Any, Callable, NamedTuple

from ringloom import _fork, _native, monkey
from ringloom.green._common import intercepting

__all__ = ["DESCRIPTOR_WAIT", "RingFileIO", "open", "patch", "unpatch"]

stock_open = io.open

_MODE_CHARS = frozenset("axrwb+t")

#: Seconds an ``open`` out of descriptors waits for one of ours to be closed, at most.
DESCRIPTOR_WAIT = 30.0

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class _Descriptors:
    """The files ``RingFileIO`` holds open, and a condition a close notifies.

    Opens and closes take no lock (they are the hot path of a batch over files): the
    set's ``add`` and ``discard`` are atomic under the GIL, and ``closes`` is stored from
    a counter, so a waiter that read it before its failed open sees a different value
    after any close since. A close takes the lock only to wake a waiter.
    """

    def __init__(self) -> None:
        self.closed = _native.Condition(_native.Lock())
        self.files: set[int] = set()
        self._count = itertools.count(1)
        self.closes = 0
        self.waiters = 0  # changed under the lock only

    def opened(self, key: int) -> None:
        self.files.add(key)

    def released(self, key: int) -> None:
        self.files.discard(key)
        self.closes = next(self._count)
        if self.waiters:
            with self.closed:
                self.closed.notify_all()

    def wait_for_a_close(self, seen: int, deadline: float) -> bool:
        """Parks until one of ours is closed after ``closes`` was ``seen``: False if none
        is open or at ``deadline``."""
        with self.closed:
            self.waiters += 1
            try:
                while self.closes == seen:
                    left = deadline - time.monotonic()
                    if not self.files or left <= 0:
                        return False
                    self.closed.wait(left)
            finally:
                self.waiters -= 1
        return True


_descriptors = _Descriptors()


@_fork.on_child
def _reset_after_fork() -> None:
    global _descriptors
    files = _descriptors.files  # the inherited files are still open in the child
    _descriptors = _Descriptors()  # a vanished thread may have held its lock
    _descriptors.files = set(files)


def _ring_opener(path: Any, flags: int) -> int:
    deadline = None
    while True:
        seen = _descriptors.closes
        try:
            return _native.file_open(path, flags, 0o666)
        except OSError as err:
            if err.errno is None:
                raise
            if err.errno in _OUT_OF_DESCRIPTORS and intercepting():
                if deadline is None:
                    deadline = time.monotonic() + DESCRIPTOR_WAIT
                if _descriptors.wait_for_a_close(seen, deadline):
                    continue
            # As stock: the error names the file (OSError picks the subclass by errno).
            raise OSError(err.errno, os.strerror(err.errno), path) from None


class RingFileIO(io.FileIO):
    """A ``FileIO`` whose reads and writes park an intercepting virtual thread on the ring.

    Outside such a thread every method is the stock one. Opened by the patched ``open``;
    it can also be made directly, like ``FileIO``.
    """

    # How writes go, found at the first write (an fstat and an fcntl that a file only
    # read from does not need): see `_write_route`.
    _write_route: int | None = None

    def __init__(
        self,
        file: Any,
        mode: str = "r",
        closefd: bool = True,
        opener: Callable[[str, int], int] | None = None,
    ) -> None:
        io.FileIO.__init__(self, file, mode, closefd, _ring_opener if opener is None else opener)
        # Counted only when this object closes its descriptor itself.
        if closefd:
            self._counted = True
            _descriptors.opened(id(self))

    def _check_readable(self) -> None:
        if not self.readable():  # raises ValueError when closed
            raise io.UnsupportedOperation("File not open for reading")

    def readinto(self, buffer: Any, /) -> int | None:  # type: ignore[override]
        if not intercepting():
            return super().readinto(buffer)
        self._check_readable()
        try:
            return _native.file_readinto(self.fileno(), buffer)
        except BlockingIOError:
            return None

    def close(self) -> None:
        # Popped in one call, so that two closes release the count once.
        counted = self.__dict__.pop("_counted", False)
        try:
            super().close()
        finally:
            if counted:
                _descriptors.released(id(self))

    def read(self, size: int | None = -1, /) -> bytes | None:  # type: ignore[override]
        if not intercepting():
            return super().read(size)
        if size is None:
            size = -1
        size = size.__index__()
        if size < 0:
            return self.readall()
        self._check_readable()
        try:
            return _native.file_read(self.fileno(), size)
        except BlockingIOError:
            return None

    def readall(self) -> bytes:
        if not intercepting():
            return super().readall()
        self._check_readable()
        return _native.file_readall(self.fileno())  # type: ignore[return-value]  # None as stock

    def write(self, data: Any, /) -> int | None:  # type: ignore[override]
        if not intercepting():
            return super().write(data)
        if not self.writable():  # raises ValueError when closed
            raise io.UnsupportedOperation("File not open for writing")
        route = self._write_route
        if route is None:
            route = self._write_route = _write_route(self.fileno())
        try:
            return _native.file_write(
                self.fileno(), data, -1, route == _NOWAIT_FIRST, route == _IN_PLACE
            )
        except BlockingIOError:
            return None


#: Write routes. A pipe, socket or terminal takes RWF_NOWAIT: try it, park on a poll if
#: full. A regular file's buffered write goes to the page cache: done in place (GIL let
#: go of), several times cheaper than the ring and io-wq, and it never parks inside a
#: buffered layer's lock, so virtual threads can share a file object as OS threads do.
#: A write that waits for the device (O_DIRECT, O_SYNC, O_DSYNC) goes to the ring.
_NOWAIT_FIRST, _IN_PLACE, _RING = 0, 1, 2

_DEVICE_WRITES = os.O_DIRECT | os.O_SYNC | os.O_DSYNC


def _write_route(fd: int) -> int:
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _NOWAIT_FIRST
        return _RING if fcntl.fcntl(fd, fcntl.F_GETFL) & _DEVICE_WRITES else _IN_PLACE
    except OSError:
        return _RING


class _Mode(NamedTuple):
    """What ``open`` makes of a valid mode string."""

    raw: str  # the FileIO mode
    buffered: type[io.BufferedIOBase]
    binary: bool


#: Modes seen before, parsed once: most programs use a handful. Bounded, so that a
#: program making up modes cannot grow it for ever.
_MODES: dict[str, _Mode] = {}
_MODES_KEPT = 64


def _parse_mode(mode: str) -> _Mode | None:
    """The mode's parts, or None where stock ``open`` raises for it."""
    modes = set(mode)
    creating, reading = "x" in modes, "r" in modes
    writing, appending = "w" in modes, "a" in modes
    updating, text, binary = "+" in modes, "t" in modes, "b" in modes
    if (
        modes - _MODE_CHARS
        or len(mode) > len(modes)
        or creating + reading + writing + appending != 1
        or (text and binary)
    ):
        return None
    raw = (
        ("x" if creating else "")
        + ("r" if reading else "")
        + ("w" if writing else "")
        + ("a" if appending else "")
        + ("+" if updating else "")
    )
    buffered: type[io.BufferedIOBase]
    if updating:
        buffered = io.BufferedRandom
    elif creating or writing or appending:
        buffered = io.BufferedWriter
    else:
        buffered = io.BufferedReader
    return _Mode(raw, buffered, binary)


def open(  # noqa: A001 - it is the builtin it replaces
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> Any:
    """``open()``: in an intercepting virtual thread, the stock layers over
    :class:`RingFileIO`; elsewhere, the stock ``open``."""
    if not intercepting() or type(mode) is not str or not isinstance(buffering, int):
        return stock_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    parsed = _MODES.get(mode)
    if parsed is None:
        parsed = _parse_mode(mode)
        if parsed is not None and len(_MODES) < _MODES_KEPT:
            _MODES[mode] = parsed
    binary = parsed is not None and parsed.binary
    if (
        parsed is None
        or (binary and (encoding is not None or errors is not None or newline is not None))
        or (buffering == 0 and not binary)
    ):
        # Let the stock function raise its own error for the bad combination.
        return stock_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if binary and buffering == 1:
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=2,
        )
    if type(file) is not str and not isinstance(file, int):
        file = os.fspath(file)  # as stock: the file's name is the str or bytes path
    raw = RingFileIO(file, parsed.raw, closefd, opener)
    result: Any = raw
    try:
        line_buffering = False
        if buffering == 1 or (buffering < 0 and raw.isatty()):
            buffering = -1
            line_buffering = True
        if buffering < 0:
            blksize = raw._blksize  # type: ignore[attr-defined]
            buffering = blksize if blksize > 1 else io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            return raw
        buffer = parsed.buffered(raw, buffering)  # type: ignore[call-arg]
        result = buffer
        if binary:
            return buffer
        wrapper = io.TextIOWrapper(
            buffer,  # type: ignore[type-var]
            io.text_encoding(encoding),
            errors,
            newline,
            line_buffering,
        )
        result = wrapper
        wrapper.mode = mode  # type: ignore[misc]
        return wrapper
    except BaseException:
        result.close()
        raise


open.__wrapped__ = stock_open  # type: ignore[attr-defined]
open.__doc__ = stock_open.__doc__


#: What ``patch`` installs: ``open`` that stays unbound where a class stores it as an
#: attribute (``class T: open = io.open``), as the builtin does; a plain function
#: would be bound and get the instance as its first argument.
patched_open = staticmethod(open)


def patch() -> None:
    monkey.replace(builtins, "open", patched_open)
    monkey.replace(io, "open", patched_open)


def unpatch() -> None:
    monkey.restore(builtins, "open")
    monkey.restore(io, "open")
