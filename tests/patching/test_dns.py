"""Resolvers and ringloom.blocking run on the blocking pool while the virtual thread parks."""

from __future__ import annotations

import socket
import sys
import threading

import pytest
import ringloom
from ringloom import Loom, _native


def test_getaddrinfo_in_virtual_threads(loom: Loom) -> None:
    expected = socket.getaddrinfo("localhost", 80)
    futures = [ringloom.submit(loom, socket.getaddrinfo, "localhost", 80) for _ in range(50)]
    assert all(f.result(timeout=30) == expected for f in futures)
    assert ringloom.submit(loom, socket.gethostbyname, "localhost").result(10) == (
        socket.gethostbyname("localhost")
    )


def test_getaddrinfo_errors_keep_their_type(loom: Loom) -> None:
    with pytest.raises(socket.gaierror):
        ringloom.submit(loom, socket.getaddrinfo, "no-such-host.invalid", 80).result(30)
    with pytest.raises(TypeError):
        ringloom.submit(loom, socket.getaddrinfo, 42, 80).result(30)


def test_blocking_runs_off_the_worker(loom: Loom) -> None:
    gate = threading.Event()

    def worker_free() -> str:
        # runs in the pool: the worker that parked us is free to run others
        assert gate.wait(10)
        return threading.current_thread().name

    waiting = ringloom.submit(loom, ringloom.blocking, worker_free)
    others = [ringloom.submit(loom, _native.sleep, 0.01) for _ in range(20)]
    for other in others:
        other.result(timeout=10)
    assert not waiting.done()
    gate.set()
    name = waiting.result(timeout=10)
    assert name != threading.current_thread().name


def test_blocking_args_kwargs_and_exceptions(loom: Loom) -> None:
    def f(a: int, b: int = 0, *, c: int = 0) -> int:
        if a < 0:
            raise KeyError(a)
        return a + b + c

    assert ringloom.submit(loom, ringloom.blocking, f, 1, 2, c=3).result(10) == 6
    assert ringloom.blocking(f, 1, b=5) == 6  # outside: a plain call
    with pytest.raises(KeyError):
        ringloom.submit(loom, ringloom.blocking, f, -1).result(10)
    with pytest.raises(TypeError):
        ringloom.blocking(42)


def test_resolvers_outside_are_stock() -> None:
    from ringloom.green import socket as green_socket

    original = green_socket.stock_resolvers["getaddrinfo"]
    assert socket.getaddrinfo.__wrapped__ is original  # type: ignore[attr-defined]
    assert socket.getaddrinfo("127.0.0.1", 80) == original("127.0.0.1", 80)


def test_numeric_hosts_need_no_pool_thread(loom: Loom, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = _native.blocking

    def counting(fn: object, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_native, "blocking", counting)
    for host in ("127.0.0.1", "::1", None, b"10.1.2.3"):
        expected = socket.getaddrinfo(host, 80)
        assert ringloom.submit(loom, socket.getaddrinfo, host, 80).result(10) == expected
    assert ringloom.submit(loom, socket.gethostbyname, "127.0.0.1").result(10) == ("127.0.0.1")
    assert calls == []
    ringloom.submit(loom, socket.getaddrinfo, "localhost", "80").result(10)
    assert calls == [("localhost", "80")]


@pytest.mark.parametrize("call", ["connect", "connect_ex"])
def test_connect_to_a_host_name_resolves_it_the_parking_way(
    loom: Loom, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    # The stock connect resolves a host name in C, on the calling thread: in a virtual
    # thread that held its worker for the whole lookup. It goes through the patched
    # resolver first (which parks), so the connect itself does no lookup.
    looked_up: list[str] = []
    resolver = socket.getaddrinfo

    def recording(host: str, *args: object, **kwargs: object) -> object:
        looked_up.append(host)
        return resolver(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def dial() -> object:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            return getattr(sock, call)(("localhost", port))

    with server:
        assert ringloom.submit(loom, dial).result(timeout=30) in (None, 0)
    assert looked_up == ["localhost"]


def test_a_failed_lookup_does_not_keep_its_arguments(loom: Loom) -> None:
    # The traceback of the error keeps the patched resolver's frame; its arguments must
    # not stay alive with it, as they do not with the stock C function.
    def refs_kept() -> int:
        name = "not-a-tuple-" + str(threading.get_ident())
        before = sys.getrefcount(name)
        try:
            socket.getnameinfo(name, 0)  # type: ignore[arg-type]
        except TypeError:
            return sys.getrefcount(name) - before
        raise AssertionError("getnameinfo took a str")

    assert refs_kept() == 0
    assert ringloom.submit(loom, refs_kept).result(timeout=30) == 0
