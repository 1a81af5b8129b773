"""``socket.socket`` methods that park an intercepting virtual thread on the ring.

The C methods of ``_socket.socket`` block inside the interpreter, so each patched method
(set on the Python subclass ``socket.socket``) turns the wait into a ring poll and leaves
the syscall itself to the stock method:

- a blocking socket (``gettimeout() is None``): ``recv``, ``recv_into``, ``send`` and
  ``sendall`` are one native call each (``src/sock.rs``): the syscall with
  ``MSG_DONTWAIT``, a ring poll on ``EAGAIN``, and again; ``recvfrom*`` and ``sendto``
  try the stock call with ``MSG_DONTWAIT`` and park in ``wait_fd`` on
  ``BlockingIOError``.
- ``accept`` and ``connect`` take no flags: their one syscall runs on a throwaway
  ``_socket.socket`` over the same descriptor (no timeout, descriptor in O_NONBLOCK for
  that call only, under a lock never held across a park), for any timeout > 0 or None;
  the virtual thread parks until ready, within the deadline. The socket object itself
  is never switched to another timeout, so other virtual threads see its own.
- recv*/send* on a socket with a timeout (> 0): CPython polls inside the C call before
  the syscall, so the virtual thread parks first, with what is left of the deadline,
  then makes the syscall on a throwaway ``_socket.socket`` at timeout 0 over the same
  descriptor (already O_NONBLOCK, as CPython keeps every socket with a timeout), so a
  reader that loses a race for the same data parks again instead of waiting in the
  stock poll. A timed-out call raises the stock ``TimeoutError('timed out')``.
- a non-blocking socket (timeout 0), or flags with ``MSG_DONTWAIT``: the stock call.

Outside intercepting virtual threads every method is the stock one.
"""

from __future__ import annotations

import _socket
import errno
import os
import select as _select
import socket as _socket_mod
from time import monotonic
from typing import Any, Callable

from ringloom import _native, monkey
from ringloom.green._common import dress_as_stock, intercepting, mode_locks

_sock = _socket.socket
_MSG_DONTWAIT = int(_socket_mod.MSG_DONTWAIT)  # a plain int: IntFlag arithmetic is slow
_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT

stock: dict[str, Callable[..., Any]] = {
    "connect": _sock.connect,
    "connect_ex": _sock.connect_ex,
    "recv": _sock.recv,
    "recv_into": _sock.recv_into,
    "recvfrom": _sock.recvfrom,
    "recvfrom_into": _sock.recvfrom_into,
    "send": _sock.send,
    "sendall": _sock.sendall,
    "sendto": _sock.sendto,
    "accept": _socket_mod.socket.accept,
    "sendfile": _socket_mod.socket.sendfile,
}
stock_resolvers = {
    name: getattr(_socket_mod, name)
    for name in (
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
    )
}


def _timed_out() -> OSError:
    return _socket_mod.timeout("timed out")


def _left(deadline: float) -> float:
    return max(0.0, deadline - monotonic())


def _wait(sock: Any, events: int, deadline: float | None) -> None:
    """Parks until ``sock`` is ready for ``events``; raises the stock timeout at the deadline."""
    if deadline is None:
        _native.wait_fd(sock.fileno(), events)
    elif not _native.wait_fd(sock.fileno(), events, _left(deadline)):
        raise _timed_out()


def _io(sock: Any, events: int, flags: int, call: Callable[[Any, int], Any]) -> Any:
    """Runs ``call(target, flags)`` (a syscall that takes flags) the parking way."""
    timeout = sock.gettimeout()
    if timeout == 0 or flags & _MSG_DONTWAIT:
        return call(sock, flags)
    if timeout is None:
        while True:
            try:
                return call(sock, flags | _MSG_DONTWAIT)
            except BlockingIOError:
                pass
            _native.wait_fd(sock.fileno(), events)
    deadline = monotonic() + timeout
    with _at_timeout_zero(sock) as target:
        while True:
            _wait(sock, events, deadline)
            try:
                return call(target, flags)
            except BlockingIOError:
                pass  # another reader or writer won the race: park again


class _at_timeout_zero:  # noqa: N801 - used as a context manager, like a function
    """A throwaway ``_socket.socket`` at timeout 0 over the descriptor of ``sock`` (a
    socket with a timeout, so its descriptor is O_NONBLOCK already and stays so)."""

    __slots__ = ("shadow",)

    def __init__(self, sock: Any) -> None:
        self.shadow = _sock(sock.family, sock.type, sock.proto, fileno=sock.fileno())

    def __enter__(self) -> Any:
        self.shadow.settimeout(0.0)
        return self.shadow

    def __exit__(self, *exc_info: Any) -> None:
        self.shadow.detach()


def _shadow_call(sock: Any, name: str, *args: Any) -> Any:
    """Runs the ``_socket.socket`` method ``name`` once, non-blocking, on a throwaway
    socket object over the same descriptor: ``sock`` itself (its timeout, what other
    virtual threads read) is never touched. The descriptor is in O_NONBLOCK only for the
    call, under a lock, so concurrent callers cannot leave it in the wrong mode."""
    fd = sock.fileno()
    with mode_locks().hold(fd):
        shadow = _sock(sock.family, sock.type, sock.proto, fileno=fd)
        was_blocking = os.get_blocking(fd)
        try:
            if shadow.gettimeout() is not None:  # a default timeout was set
                shadow.settimeout(None)  # (this clears O_NONBLOCK: set next)
            os.set_blocking(fd, False)
            return getattr(shadow, name)(*args)
        finally:
            os.set_blocking(fd, was_blocking)
            shadow.detach()


def _nonblocking_call(sock: Any, timeout: float | None, name: str, *args: Any) -> Any:
    """``_shadow_call`` for any socket; one with a timeout (``timeout`` is its
    ``gettimeout()``) has its descriptor in O_NONBLOCK already, so the call goes to a
    throwaway socket at timeout 0 without the mode lock and the ``fcntl`` calls."""
    if timeout is None:
        return _shadow_call(sock, name, *args)
    with _at_timeout_zero(sock) as target:
        return getattr(target, name)(*args)


def recv(self: Any, bufsize: int, flags: int = 0, /) -> bytes:
    data = _native.socket_recv(self, bufsize, flags)
    if data is not None:
        return data
    if not intercepting():
        return stock["recv"](self, bufsize, flags)
    return _io(self, _POLLIN, flags, lambda t, f: stock["recv"](t, bufsize, f))


def recv_into(self: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    got = _native.socket_recv_into(self, buffer, nbytes, flags)
    if got is not None:
        return got
    if not intercepting():
        return stock["recv_into"](self, buffer, nbytes, flags)
    return _io(self, _POLLIN, flags, lambda t, f: stock["recv_into"](t, buffer, nbytes, f))


def recvfrom(self: Any, *args: Any, **kwargs: Any) -> Any:
    if not intercepting() or kwargs:
        return stock["recvfrom"](self, *args, **kwargs)
    return _recvfrom(self, *args)


def _recvfrom(self: Any, bufsize: int, flags: int = 0) -> Any:
    return _io(self, _POLLIN, flags, lambda t, f: stock["recvfrom"](t, bufsize, f))


def recvfrom_into(self: Any, *args: Any, **kwargs: Any) -> Any:
    if not intercepting():
        return stock["recvfrom_into"](self, *args, **kwargs)
    return _recvfrom_into(self, *args, **kwargs)


def _recvfrom_into(self: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> Any:
    return _io(
        self,
        _POLLIN,
        flags,
        lambda t, f: stock["recvfrom_into"](t, buffer, nbytes, f),
    )


def send(self: Any, data: Any, flags: int = 0, /) -> int:
    sent = _native.socket_send(self, data, flags)
    if sent is not None:
        return sent
    if not intercepting():
        return stock["send"](self, data, flags)
    return _io(self, _POLLOUT, flags, lambda t, f: stock["send"](t, data, f))


def sendto(self: Any, *args: Any, **kwargs: Any) -> int:
    if not intercepting() or kwargs or len(args) not in (2, 3):
        return stock["sendto"](self, *args, **kwargs)
    if len(args) == 2:
        data, flags, address = args[0], 0, args[1]
    else:
        data, flags, address = args
    return _io(self, _POLLOUT, flags, lambda t, f: stock["sendto"](t, data, f, address))


def sendall(self: Any, data: Any, flags: int = 0, /) -> None:
    if _native.socket_sendall(self, data, flags):
        return None
    if not intercepting():
        return stock["sendall"](self, data, flags)
    timeout = self.gettimeout()
    if timeout == 0 or flags & _MSG_DONTWAIT:
        return stock["sendall"](self, data, flags)
    with memoryview(data) as view, view.cast("B") as rest:
        sent = 0
        total = len(rest)
        # The stock timeout bounds the whole call, not each send.
        deadline = monotonic() + timeout
        with _at_timeout_zero(self) as target:
            while True:
                _wait(self, _POLLOUT, deadline)
                try:
                    sent += stock["send"](target, rest[sent:], flags)
                except BlockingIOError:
                    continue
                if sent >= total:
                    return None


def accept(self: Any) -> Any:
    if not intercepting():
        return stock["accept"](self)
    timeout = self.gettimeout()
    if timeout == 0:
        return stock["accept"](self)
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        try:
            fd, address = _nonblocking_call(self, timeout, "_accept")
        except BlockingIOError:
            _wait(self, _POLLIN, deadline)
            continue
        # What the stock accept does with the new descriptor.
        conn = _socket_mod.socket(self.family, self.type, self.proto, fileno=fd)
        if _socket_mod.getdefaulttimeout() is None and timeout:
            conn.setblocking(True)
        return conn, address


def _resolved(sock: Any, address: Any) -> Any:
    """``address`` with its host name resolved the parking way (on the blocking pool),
    as the stock connect would resolve it in C: the first address of the socket's
    family. The syscall then made under the socket's mode lock does no lookup."""
    if (
        sock.family not in (_socket_mod.AF_INET, _socket_mod.AF_INET6)
        or not isinstance(address, tuple)
        or len(address) < 2
        or _numeric_host(address[0])
    ):
        return address
    infos = _socket_mod.getaddrinfo(address[0], address[1], sock.family, sock.type)
    if not infos:
        return address  # let the stock call report what is wrong
    resolved = infos[0][4]
    return (resolved[0], *address[1:]) if len(address) > 2 else resolved


def _connect(self: Any, address: Any) -> int:
    """Connects the parking way; returns the error number (0 when connected)."""
    address = _resolved(self, address)
    timeout = self.gettimeout()
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        err = _nonblocking_call(self, timeout, "connect_ex", address)
        if err == errno.EAGAIN:  # AF_UNIX: the listener's backlog is full; try again
            try:
                _wait(self, _POLLOUT, deadline)
            except TimeoutError:
                return errno.EAGAIN
            continue
        if err not in (errno.EINPROGRESS, errno.EALREADY):
            return err
        try:
            _wait(self, _POLLOUT, deadline)
        except TimeoutError:
            return errno.EAGAIN  # the stock connect_ex's answer to a timeout
        return self.getsockopt(_socket_mod.SOL_SOCKET, _socket_mod.SO_ERROR)


def connect(self: Any, *args: Any, **kwargs: Any) -> None:
    if not intercepting() or kwargs or len(args) != 1 or self.gettimeout() == 0:
        return stock["connect"](self, *args, **kwargs)
    address = _resolved(self, args[0])
    timeout = self.gettimeout()
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        err = _nonblocking_call(self, timeout, "connect_ex", address)
        if err == 0 or err == errno.EISCONN:
            return None
        if err == errno.EAGAIN:
            _wait(self, _POLLOUT, deadline)
            continue
        if err not in (errno.EINPROGRESS, errno.EALREADY):
            raise OSError(err, _strerror(err))
        _wait(self, _POLLOUT, deadline)
        err = self.getsockopt(_socket_mod.SOL_SOCKET, _socket_mod.SO_ERROR)
        if err:
            raise OSError(err, _strerror(err))
        return None


def connect_ex(self: Any, *args: Any, **kwargs: Any) -> int:
    if not intercepting() or kwargs or len(args) != 1 or self.gettimeout() == 0:
        return stock["connect_ex"](self, *args, **kwargs)
    return _connect(self, args[0])


def _strerror(err: int) -> str:
    return os.strerror(err)


def sendfile(self: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    if not intercepting():
        return stock["sendfile"](self, file, offset, count)
    # os.sendfile would block the worker: the send() path parks instead.
    return self._sendfile_use_send(file, offset, count)


def _numeric_host(host: Any) -> bool:
    """Whether resolving ``host`` needs no lookup (None, or an IP address literal)."""
    if host is None:
        return True
    if isinstance(host, (bytes, bytearray)):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (_socket_mod.AF_INET, _socket_mod.AF_INET6):
        try:
            _socket_mod.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _no_lookup(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether the call answers without a lookup, so it needs no pool thread."""
    if name == "getaddrinfo":
        host = args[0] if args else kwargs.get("host")
        port = args[1] if len(args) > 1 else kwargs.get("port")
        numeric_port = (
            port is None
            or isinstance(port, int)
            or (isinstance(port, (str, bytes)) and port.isdigit())
        )
        return numeric_port and _numeric_host(host)
    if name == "gethostbyname":
        return len(args) == 1 and not kwargs and _numeric_host(args[0])
    return False


def _resolver(name: str) -> Callable[..., Any]:
    original = stock_resolvers[name]

    def resolve(*args: Any, **kwargs: Any) -> Any:
        try:
            if not intercepting() or _no_lookup(name, args, kwargs):
                return original(*args, **kwargs)
            return _native.blocking(original, *args, **kwargs)
        except BaseException:
            # The traceback keeps this frame: not its arguments, which the stock C
            # function would not hold after failing (CPython's refcount test checks).
            args = kwargs = None  # type: ignore[assignment]
            raise

    resolve.__name__ = resolve.__qualname__ = name
    resolve.__doc__ = original.__doc__
    resolve.__wrapped__ = original  # type: ignore[attr-defined]
    return resolve


_methods = {
    "connect": connect,
    "connect_ex": connect_ex,
    "recv": recv,
    "recv_into": recv_into,
    "recvfrom": recvfrom,
    "recvfrom_into": recvfrom_into,
    "send": send,
    "sendall": sendall,
    "sendto": sendto,
    "accept": accept,
    "sendfile": sendfile,
}
_resolvers = {name: _resolver(name) for name in stock_resolvers}

dress_as_stock(_methods, stock, "socket")


def patch() -> None:
    for name, method in _methods.items():
        monkey.replace(_socket_mod.socket, name, method)
    for name, resolve in _resolvers.items():
        monkey.replace(_socket_mod, name, resolve)


def unpatch() -> None:
    for name in _methods:
        monkey.restore(_socket_mod.socket, name)
    for name in _resolvers:
        monkey.restore(_socket_mod, name)
