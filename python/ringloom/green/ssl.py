"""``ssl.SSLSocket`` calls that park an intercepting virtual thread.

The TLS engine runs inside the C ``_ssl`` module, which waits on the socket itself. A
patched call runs the stock one with the socket at timeout 0 for that call (under the
socket layer's lock, never held across a park): the engine then raises
``SSLWantReadError``/``SSLWantWriteError`` instead of waiting, the virtual thread parks
on the descriptor (with what is left of the socket's timeout) and the call is retried. A
timed-out call raises the stock message (``The read operation timed out``, ...). Sockets
with timeout 0 and calls outside intercepting virtual threads are stock. Every other
``SSLSocket`` method (recv, recv_into, sendall, makefile, connect, accept) goes through
these or through the patched ``socket.socket`` methods.
"""

from __future__ import annotations

import select as _select
import ssl as _ssl
from time import monotonic
from typing import Any, Callable

from ringloom import _native, monkey
from ringloom.green._common import dress_as_stock, intercepting, run_nonblocking

_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT
_SSLSocket = _ssl.SSLSocket

stock: dict[str, Callable[..., Any]] = {
    "read": _SSLSocket.read,
    "write": _SSLSocket.write,
    "send": _SSLSocket.send,
    "do_handshake": _SSLSocket.do_handshake,
    "unwrap": _SSLSocket.unwrap,
}


def _call(sock: Any, timeout: float | None, call: Callable[[], Any], what: str) -> Any:
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        try:
            return run_nonblocking(sock, call)
        except _ssl.SSLWantReadError:
            events = _POLLIN
        except _ssl.SSLWantWriteError:
            events = _POLLOUT
        if deadline is None:
            _native.wait_fd(sock.fileno(), events)
        elif not _native.wait_fd(sock.fileno(), events, max(0.0, deadline - monotonic())):
            raise TimeoutError(f"The {what} operation timed out")


def _parks(sock: Any) -> bool:
    return intercepting() and getattr(sock, "_sslobj", None) is not None and sock.gettimeout() != 0


def read(self: Any, len: int = 1024, buffer: Any = None) -> Any:
    if not _parks(self):
        return stock["read"](self, len, buffer)
    return _call(self, self.gettimeout(), lambda: stock["read"](self, len, buffer), "read")


def write(self: Any, data: Any) -> int:
    if not _parks(self):
        return stock["write"](self, data)
    return _call(self, self.gettimeout(), lambda: stock["write"](self, data), "write")


def send(self: Any, data: Any, flags: int = 0) -> int:
    if not _parks(self) or flags:
        return stock["send"](self, data, flags)
    return _call(self, self.gettimeout(), lambda: stock["send"](self, data), "write")


def do_handshake(self: Any, block: bool = False) -> None:
    timeout = self.gettimeout()
    if not intercepting() or getattr(self, "_sslobj", None) is None or (timeout == 0 and not block):
        return stock["do_handshake"](self, block)
    self._check_connected()
    _call(
        self,
        None if timeout == 0 else timeout,
        self._sslobj.do_handshake,
        "handshake",
    )
    return None


def unwrap(self: Any) -> Any:
    if not _parks(self):
        return stock["unwrap"](self)
    sslobj = self._sslobj
    result = _call(self, self.gettimeout(), sslobj.shutdown, "shutdown")
    self._sslobj = None
    return result


_methods = {
    "read": read,
    "write": write,
    "send": send,
    "do_handshake": do_handshake,
    "unwrap": unwrap,
}
dress_as_stock(_methods, stock, "SSLSocket")


def patch() -> None:
    for name, method in _methods.items():
        monkey.replace(_SSLSocket, name, method)


def unpatch() -> None:
    for name in _methods:
        monkey.restore(_SSLSocket, name)
