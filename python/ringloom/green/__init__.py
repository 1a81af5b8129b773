"""Interception of blocking stdlib calls for virtual threads.

``patch_all()`` installs, once and process-wide, patched versions of ``time.sleep``, the
blocking ``socket.socket`` methods, the ``ssl.SSLSocket`` calls that run the TLS
engine (read, write, send, do_handshake, unwrap), the resolvers (``socket.getaddrinfo``
and friends),
``select.select``, ``select.poll`` and ``selectors.DefaultSelector``, ``open()`` and
``io.open`` (so ``pathlib``), ``os.read``, ``os.write`` and ``os.waitpid``, and the event
``concurrent.futures.wait`` and ``as_completed`` block on. Each patched
function decides at call time: inside a virtual thread whose calls are intercepted it
parks the virtual thread on the ring (or runs the call on the blocking pool, for the
resolvers); everywhere else it is the stock function, with the stock behaviour.

``import ringloom`` calls ``patch_all()`` (set ``RINGLOOM_NO_PATCH=1`` to skip it): a
virtual thread can be started by any entry point of the package, and the patches must be
in place before the first one runs; patching that early also catches most modules that
copy a function at import (``from time import sleep`` after ``import ringloom``).
"""

from __future__ import annotations

import threading

from ringloom import _fork
from ringloom.green import file as _file
from ringloom.green import futures as _futures
from ringloom.green import os as _os
from ringloom.green import select as _select
from ringloom.green import socket as _socket
from ringloom.green import ssl as _ssl
from ringloom.green import time as _time
from ringloom.green._common import intercepting

__all__ = ["intercepting", "patch_all", "unpatch_all", "patched"]

_lock = threading.Lock()
_patched = False


@_fork.on_child
def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a vanished thread may have held it


def patch_all() -> None:
    """Installs every patch (idempotent)."""
    global _patched
    with _lock:
        if _patched:
            return
        _time.patch()
        _socket.patch()
        _ssl.patch()
        _select.patch()
        _file.patch()
        _os.patch()
        _futures.patch()
        _patched = True


def unpatch_all() -> None:
    """Puts the stock functions back (idempotent)."""
    global _patched
    with _lock:
        if not _patched:
            return
        _futures.unpatch()
        _os.unpatch()
        _file.unpatch()
        _select.unpatch()
        _ssl.unpatch()
        _socket.unpatch()
        _time.unpatch()
        _patched = False


def patched() -> bool:
    """Whether the patches are installed."""
    return _patched
