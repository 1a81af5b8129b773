"""Unmodified redis-py against a real redis-server on loopback, from 1,000 virtual
threads.

The fixture starts ``redis-server`` itself on a free loopback port (no persistence)
and stops it afterwards. ``make test`` installs redis-server and redis-py and sets
``RINGLOOM_REQUIRE_REDIS=1``: missing, they fail the test there; elsewhere they skip it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ringloom import VirtualThreadPool
from scale_tools import LONG, Gate, ThreadBudget, run_gated

REQUIRED = os.environ.get("RINGLOOM_REQUIRE_REDIS") == "1"


def unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why} (RINGLOOM_REQUIRE_REDIS=1)")
    pytest.skip(f"{why}; `make test` installs it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(binary: str, directory: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """A redis-server on a free loopback port, once it answers PING; None if it
    exited first (the port was taken meanwhile, say)."""
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if answers_ping(port):
            return proc, port
        time.sleep(0.02)  # until it listens: a bounded wait for a condition
    proc.kill()
    proc.wait()
    return None


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    assert binary is not None
    for _ in range(3):
        started = start_redis(binary, tmp_path_factory.mktemp("redis"))
        if started is not None:
            break
    else:
        pytest.fail("redis-server did not start (3 tries)")
    proc, port = started
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_module() -> Any:
    try:
        import redis
    except ImportError:
        unavailable("redis-py (`pip install redis`) is not installed")
    return redis


def test_redis_py_from_1000_virtual_threads(redis_module: Any, redis_port: int) -> None:
    n = 1_000
    rounds = 5
    # One client shared by every virtual thread, as threaded code shares one: its
    # connection pool hands each a connection of its own while it waits for a reply
    # (up to max_connections: redis-py 6+ refuses more than 100 by default).
    client = redis_module.Redis(
        host="127.0.0.1", port=redis_port, socket_timeout=LONG, max_connections=n
    )
    client.flushall()
    pool = VirtualThreadPool()
    budget = ThreadBudget(pool)
    gate = Gate(n)

    def value(i: int, r: int) -> bytes:
        return b"%d/%d:" % (i, r) + bytes([i % 251]) * (i % 300)

    def round_trips(i: int) -> list[bytes]:
        gate.arrive()
        gate.wait()  # all n start together
        got = []
        for r in range(rounds):
            assert client.set(f"vt:{i}:{r}", value(i, r)) is True
            got.append(client.get(f"vt:{i}:{r}"))
        client.incr("vt:count")
        return got

    try:
        results, stats = run_gated(pool, round_trips, n, gate, budget)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    wrong = [i for i in range(n) if results[i] != [value(i, r) for r in range(rounds)]]
    assert wrong == [], f"{len(wrong)} virtual threads read other values, first {wrong[:5]}"
    assert int(client.get("vt:count")) == n
    assert client.dbsize() == n * rounds + 1
    connections = client.info("stats")["total_connections_received"]
    client.close()
    assert stats["completed_threads"] == n and stats["failed"] == 0, stats
    assert stats["parks"] > n, stats  # the gate, and replies waited for on the ring
    assert budget.over == [], budget
    print(f"redis: {connections} connections; {budget}; parks {stats['parks']}")
