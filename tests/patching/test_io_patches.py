"""patch_all()/unpatch_all(): process-wide, idempotent, stock functions back on unpatch."""

from __future__ import annotations

import select
import selectors
import socket
import ssl
import subprocess
import sys
import time

import ringloom
from ringloom import green
from ringloom.green import select as green_select
from ringloom.green import socket as green_socket
from ringloom.green import ssl as green_ssl
from ringloom.green import time as green_time


def test_import_patches() -> None:
    assert green.patched()
    assert time.sleep is green_time.sleep
    assert socket.socket.recv is green_socket.recv
    assert socket.getaddrinfo is not green_socket.stock_resolvers["getaddrinfo"]
    assert ssl.SSLSocket.read is green_ssl.read
    assert selectors.DefaultSelector is green_select.DefaultSelector


def test_unpatch_and_patch_again() -> None:
    try:
        green.unpatch_all()
        green.unpatch_all()  # idempotent
        assert not green.patched()
        assert time.sleep is green_time.stock_sleep
        assert socket.socket.recv is socket._socket.socket.recv  # type: ignore[attr-defined]
        assert socket.socket.accept is green_socket.stock["accept"]
        assert socket.getaddrinfo is green_socket.stock_resolvers["getaddrinfo"]
        assert select.select is green_select.stock_select
        assert select.poll is green_select.stock_poll
        assert selectors.DefaultSelector is green_select.stock_default_selector
        assert ssl.SSLSocket.read is green_ssl.stock["read"]
        a, b = socket.socketpair()
        with a, b:
            b.send(b"x")
            assert a.recv(1) == b"x"
    finally:
        green.patch_all()
        green.patch_all()  # idempotent
    assert green.patched()
    assert time.sleep is green_time.sleep


def test_opt_out_by_environment() -> None:
    code = "import time, ringloom, ringloom.green as g; print(g.patched(), time.sleep.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"RINGLOOM_NO_PATCH": "1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "time"]


def test_public_names() -> None:
    assert ringloom.blocking is ringloom._native.blocking
    assert ringloom.wait_fds is ringloom._native.wait_fds
