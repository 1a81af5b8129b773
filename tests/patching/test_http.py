"""Unmodified HTTP clients (http.client, urllib, requests) in virtual threads."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import ringloom
from http_stub import Server, handler
from ringloom import Loom

Handler = handler("hello")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_client_from_500_virtual_threads(loom: Loom, server: str) -> None:
    def fetch(i: int) -> bytes:
        conn = http.client.HTTPConnection(server, timeout=30)
        try:
            conn.request("GET", f"/{i}")
            response = conn.getresponse()
            assert response.status == 200
            return response.read()
        finally:
            conn.close()

    futures = [ringloom.submit(loom, fetch, i) for i in range(500)]
    assert [f.result(timeout=120) for f in futures] == [f"hello /{i}".encode() for i in range(500)]


def test_urllib_from_virtual_threads(loom: Loom, server: str) -> None:
    def fetch(i: int) -> bytes:
        with urllib.request.urlopen(f"http://{server}/u{i}", timeout=30) as response:
            return response.read()

    futures = [ringloom.submit(loom, fetch, i) for i in range(200)]
    assert [f.result(timeout=120) for f in futures] == [f"hello /u{i}".encode() for i in range(200)]
    assert fetch(7) == b"hello /u7"  # and the same outside


def test_keep_alive_connection(loom: Loom, server: str) -> None:
    def fetch_many() -> list[bytes]:
        conn = http.client.HTTPConnection(server)
        out = []
        for i in range(20):
            conn.request("GET", f"/k{i}")
            out.append(conn.getresponse().read())
        conn.close()
        return out

    assert ringloom.submit(loom, fetch_many).result(timeout=60) == [
        f"hello /k{i}".encode() for i in range(20)
    ]


def test_requests_from_virtual_threads(loom: Loom, server: str) -> None:
    # 2,000 concurrent clients: tests/pool/test_scale.py.
    requests = pytest.importorskip("requests")

    def fetch(i: int) -> str:
        response = requests.get(f"http://{server}/r{i}", timeout=60)
        response.raise_for_status()
        return response.text

    futures = [ringloom.submit(loom, fetch, i) for i in range(100)]
    assert [f.result(timeout=300) for f in futures] == [f"hello /r{i}" for i in range(100)]

    def session_fetch() -> list[str]:
        with requests.Session() as session:
            return [session.get(f"http://{server}/s{i}").text for i in range(10)]

    assert ringloom.submit(loom, session_fetch).result(timeout=60) == [
        f"hello /s{i}" for i in range(10)
    ]
