"""What the patches share: the dispatch test, the stock look of patched methods, and
the per-descriptor lock of the socket mode switches (socket and TLS layers)."""

from __future__ import annotations

import _thread
from typing import Any, Callable

from ringloom import _fork, _native

#: True inside a virtual thread whose blocking calls are intercepted (started with
#: ``is_blocking`` None or True). Resolved once: the pool's native ``intercepting`` when
#: the build has it, else every virtual thread counts.
intercepting: Callable[[], bool] = getattr(_native, "intercepting", _native.in_virtual_thread)


def dress_as_stock(methods: dict[str, Any], stock: dict[str, Any], owner: str) -> None:
    """Gives each patched method the name, docstring and ``__wrapped__`` of the stock
    method it replaces, so that help(), tracebacks and introspection read as stock."""
    for name, method in methods.items():
        method.__name__ = name
        method.__qualname__ = f"{owner}.{name}"
        method.__doc__ = stock[name].__doc__
        method.__wrapped__ = stock[name]


class DescriptorLocks:
    """One ringloom lock per descriptor, held while that socket is switched to timeout 0
    (or O_NONBLOCK) for one engine call or syscall, and made only while someone uses it.

    Per descriptor, so one socket's call never holds back another's; ringloom's lock, so
    a TLS callback that parks while its call holds it makes the next user of that socket
    park too, never block its worker (with one global stock lock, that blocked the
    worker the callback needed to resume on: a deadlock)."""

    def __init__(self) -> None:
        self._guard = _thread.allocate_lock()  # held for the table only
        self._locks: dict[int, list[Any]] = {}  # fd -> [lock, users]

    def hold(self, fd: int) -> HeldDescriptor:
        with self._guard:
            entry = self._locks.get(fd)
            if entry is None:
                entry = self._locks[fd] = [_native.Lock(), 0]
            entry[1] += 1
        return HeldDescriptor(self, fd, entry)

    def _leave(self, fd: int, entry: list[Any]) -> None:
        with self._guard:
            entry[1] -= 1
            if entry[1] == 0 and self._locks.get(fd) is entry:
                del self._locks[fd]


class HeldDescriptor:
    __slots__ = ("table", "fd", "entry")

    def __init__(self, table: DescriptorLocks, fd: int, entry: list[Any]) -> None:
        self.table = table
        self.fd = fd
        self.entry = entry

    def __enter__(self) -> None:
        try:
            self.entry[0].acquire()
        except BaseException:
            self.table._leave(self.fd, self.entry)
            raise

    def __exit__(self, *exc_info: Any) -> None:
        self.entry[0].release()
        self.table._leave(self.fd, self.entry)


_mode_locks = DescriptorLocks()


def mode_locks() -> DescriptorLocks:
    """The per-descriptor locks of the socket mode switches (made again after fork)."""
    return _mode_locks


@_fork.on_child
def _reset_after_fork() -> None:
    global _mode_locks
    _mode_locks = DescriptorLocks()  # a vanished thread may have held its table lock


def run_nonblocking(sock: Any, call: Callable[[], Any]) -> Any:
    """Runs ``call()`` with ``sock`` at timeout 0 (its TLS engine reads that timeout).

    Another OS thread sees the socket at timeout 0 meanwhile: only the TLS layer uses
    this, for one engine call at a time."""
    with _mode_locks.hold(sock.fileno()):
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return call()
        finally:
            sock.settimeout(timeout)
