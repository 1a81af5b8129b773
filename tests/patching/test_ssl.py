"""TLS sockets (ssl.SSLSocket, http.client.HTTPSConnection) park intercepting virtual
threads: the TLS engine runs at timeout 0 and want-read/want-write become ring polls."""

from __future__ import annotations

import http.client
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import ringloom
from http_stub import Server, handler
from ringloom import Loom


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return d


def server_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    return ctx


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert / "cert.pem"))


def test_tls_echo_both_ends_in_virtual_threads(loom: Loom, cert: Path) -> None:
    n = 200
    listener = server_context(cert).wrap_socket(
        socket.create_server(("127.0.0.1", 0), backlog=1024), server_side=True
    )
    port = listener.getsockname()[1]

    def handle(conn: ssl.SSLSocket) -> None:
        with conn:
            data = conn.recv(1 << 16)
            while not data.endswith(b"\n"):
                data += conn.recv(1 << 16)
            conn.sendall(data.upper())

    def serve() -> None:
        for _ in range(n):
            conn, _ = listener.accept()  # handshake here, parked
            ringloom.submit(loom, handle, conn)

    def client(i: int) -> bytes:
        ctx = client_context(cert)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"hello %d" % i * 100 + b"\n")
                out = b""
                while not out.endswith(b"\n"):
                    chunk = tls.recv(1 << 16)
                    if not chunk:
                        break
                    out += chunk
                return out

    serving = ringloom.submit(loom, serve)
    futures = [ringloom.submit(loom, client, i) for i in range(n)]
    assert [f.result(timeout=120) for f in futures] == [
        b"HELLO %d" % i * 100 + b"\n" for i in range(n)
    ]
    serving.result(timeout=30)
    listener.close()


def test_tls_read_timeout(loom: Loom, cert: Path) -> None:
    listener = server_context(cert).wrap_socket(
        socket.create_server(("127.0.0.1", 0)), server_side=True
    )
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
    thread.start()

    def silent_peer() -> str:
        raw = socket.create_connection(("127.0.0.1", port))
        with client_context(cert).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.settimeout(0.05)
            try:
                tls.recv(10)
            except TimeoutError as err:
                return str(err)
            return "no timeout"

    assert ringloom.submit(loom, silent_peer).result(timeout=30) == ("The read operation timed out")
    thread.join(10)
    for conn in accepted:
        conn.close()
    listener.close()


Handler = handler("secure")


def test_https_client_from_virtual_threads(loom: Loom, cert: Path) -> None:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.socket = server_context(cert).wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    port = srv.server_address[1]
    try:

        def fetch(i: int) -> bytes:
            conn = http.client.HTTPSConnection(
                "localhost", port, context=client_context(cert), timeout=30
            )
            try:
                conn.request("GET", f"/{i}")
                return conn.getresponse().read()
            finally:
                conn.close()

        futures = [ringloom.submit(loom, fetch, i) for i in range(100)]
        assert [f.result(timeout=120) for f in futures] == [
            f"secure /{i}".encode() for i in range(100)
        ]
        assert fetch(3) == b"secure /3"  # stock, outside
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_tls_callback_that_parks_holds_back_no_other_socket(cert: Path) -> None:
    # The TLS engine runs Python callbacks (here the message callback, on every
    # handshake record) inside the call ringloom makes at timeout 0. A callback that
    # parks must not leave anything held that another virtual thread's TLS call on the
    # same worker then blocks the worker on (one worker: that would be a deadlock).
    listener = server_context(cert).wrap_socket(
        socket.create_server(("127.0.0.1", 0), backlog=64), server_side=True
    )
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(4):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(conn.recv(64))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    parked = [0]

    def on_message(*_args: object) -> None:
        parked[0] += 1
        ringloom.sleep(0.001)

    def client(i: int) -> bytes:
        ctx = client_context(cert)
        ctx._msg_callback = on_message  # type: ignore[attr-defined]
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"%d" % i)
                return tls.recv(64)

    with Loom(workers=1) as one_worker:
        futures = [ringloom.submit(one_worker, client, i) for i in range(4)]
        replies = [f.result(timeout=60) for f in futures]
    assert sorted(replies) == [b"0", b"1", b"2", b"3"]
    assert parked[0] > 0
    server.join(timeout=60)
    listener.close()
