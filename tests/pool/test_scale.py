"""The issue's numbers: 10,000 sleepers, 2,000 `requests` clients, a 10,000-connection
echo, and memory over 3 rounds of 100,000 tasks.

Every test checks what it gets back and what it holds (OS threads, connections,
memory), never how long it took. The echo servers run in subprocesses (this file run
as a script, see the bottom): see "10,000 connections" for the descriptor budget.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, cast

import pytest
import ringloom
from http_stub import handler
from ringloom import VirtualThreadPool
from scale_tools import LONG, Gate, ThreadBudget, all_done, os_threads, run_gated
from support import open_fds, script_env


def first_failure(futures: list[concurrent.futures.Future[Any]]) -> BaseException | None:
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            return future.exception()
    return None


# -- 10,000 sleepers ------------------------------------------------------------------


def test_ten_thousand_time_sleeps_at_once_on_two_platform_threads() -> None:
    n = 10_000
    pool = VirtualThreadPool(max_platform_threads=2)
    budget = ThreadBudget(pool)
    gate = Gate(n)

    def sleeper(i: int) -> int:
        gate.arrive()
        gate.wait()
        time.sleep(0.5)
        return i

    try:
        futures = [pool.submit(sleeper, i) for i in range(n)]
        done = all_done(futures)
        assert budget.watch(gate.all_arrived, LONG), budget
        # All n parked at once (on the gate): none holds an OS thread.
        assert budget.watch_until(lambda: pool.get_stats()["parked"] == n, LONG), (
            pool.get_stats(),
            budget,
        )
        gate.open()
        assert budget.watch(done, LONG), budget
        assert [f.result() for f in futures] == list(range(n))
        stats = pool.get_stats()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert budget.over == [], budget
    assert budget.peak_parked == n, budget
    assert stats["completed_threads"] == n and stats["failed"] == 0, stats
    assert stats["platform_threads"] == 2, stats
    assert stats["parks"] >= 2 * n, stats  # the gate, then time.sleep


# -- 2,000 concurrent `requests` clients ----------------------------------------------


@contextlib.contextmanager
def http_server(greeting: str) -> Iterator[tuple[str, VirtualThreadPool]]:
    """A loopback HTTP server run by virtual threads: an acceptor, and one
    ``http.server`` handler (tests/http_stub.py) per connection."""
    handler_class = handler(greeting)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(65535)  # the kernel caps it at net.core.somaxconn
    port = listener.getsockname()[1]
    pool = VirtualThreadPool(max_platform_threads=2)
    stopping = threading.Event()
    server = cast(Any, None)  # the stub's handler never looks at its server

    def handle(conn: socket.socket, address: Any) -> None:
        with conn:
            handler_class(conn, address, server)

    def acceptor() -> None:
        while True:
            conn, address = listener.accept()
            if stopping.is_set():
                conn.close()
                return
            pool.submit(handle, conn, address)

    try:
        accepting = pool.submit(acceptor)
        yield f"127.0.0.1:{port}", pool
        stopping.set()
        socket.create_connection(("127.0.0.1", port), timeout=LONG).close()
        accepting.result(timeout=LONG)
        pool.shutdown(wait=True)  # the handlers end as their clients close
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        listener.close()


def test_requests_from_two_thousand_concurrent_virtual_threads() -> None:
    requests = pytest.importorskip("requests")
    n = 2_000
    with http_server("scale") as (address, server_pool):
        pool = VirtualThreadPool()
        budget = ThreadBudget(pool)
        gate = Gate(n)

        def fetch(i: int) -> tuple[int, str]:
            gate.arrive()
            gate.wait()  # all n start their request together
            response = requests.get(f"http://{address}/r{i}", timeout=LONG)
            return response.status_code, response.text

        try:
            results, stats = run_gated(pool, fetch, n, gate, budget)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    # read once the server is shut down: a handler ends only after its client closed,
    # which can be after the client's future is done
    server_stats = server_pool.get_stats()
    assert results == [(200, f"scale /r{i}") for i in range(n)]
    assert stats["completed_threads"] == n and stats["failed"] == 0, stats
    # n parks on the gate; the network waits park too (not each request: a reply can be
    # there before the read)
    assert stats["parks"] > n, stats
    assert budget.over == [], budget
    # one handler per request (plus the acceptor), none failed
    assert server_stats["completed_threads"] >= n and server_stats["failed"] == 0, server_stats


# -- 10,000 connections ---------------------------------------------------------------
#
# Descriptors: a virtual thread parked on a socket holds a duplicate of its descriptor
# while the wait is in the ring (src/waits.rs: the op owns it, so Python may close the
# socket meanwhile), so a parked connection costs two. With a hard RLIMIT_NOFILE of
# 20,000 (here; raising it needs CAP_SYS_RESOURCE), the servers' side runs in two
# processes of 5,000 connections each, all of them parked in recv at once; the
# clients' side, all 10,000 in this process, bounds how many of them wait on a
# descriptor at once (connecting, or reading the echo). All 10,000 connections are
# open at once, on both sides, while the clients wait at the gate (an Event: no
# descriptor).

SERVERS = 2


def raise_nofile() -> tuple[int, int]:
    """Raises the soft descriptor limit to the hard one; returns the old limits."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (old[1], old[1]))
    return old


@pytest.fixture
def nofile() -> Iterator[int]:
    old = raise_nofile()
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def echo_payload(i: int) -> bytes:
    """Distinct for each ``i``; most are short, every 97th is 16 KiB."""
    size = 16 * 1024 if i % 97 == 0 else 6 * (1 + i % 64)
    return ((b"%05d:" % i) * (size // 6 + 1))[:size]


def read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """One line of ``proc``'s stdout, waiting until ``deadline`` at most."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from the server in time (got {line!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"the server exited (got {line!r}, code {proc.poll()})")
        line += chunk
    return line.decode().strip()


def test_ten_thousand_connection_echo(nofile: int) -> None:
    n = 10_000
    per_server = n // SERVERS
    # Each client socket, plus a duplicate for each one waiting on its descriptor.
    waiting = nofile - open_fds() - n - 200
    assert waiting >= 1_000, f"RLIMIT_NOFILE {nofile} is too low for {n} connections"
    servers = [
        subprocess.Popen(
            [sys.executable, __file__, "echo-server", str(per_server)],
            env=script_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(SERVERS)
    ]
    pool = VirtualThreadPool()
    reports: list[str] = []
    codes: list[int] = []
    try:
        ports = [int(read_line(server, time.monotonic() + 60)) for server in servers]
        budget = ThreadBudget(pool)
        gate = Gate(n)
        fd_waits = ringloom.BoundedSemaphore(waiting)

        def client(i: int) -> bytes:
            sock = socket.socket()
            try:
                with fd_waits:
                    sock.connect(("127.0.0.1", ports[i % SERVERS]))
            finally:
                gate.arrive()  # also when connect failed: the test then reports it
            with sock:
                gate.wait()  # until all n are connected, here and at the servers
                with fd_waits:
                    sock.sendall(echo_payload(i))
                    sock.shutdown(socket.SHUT_WR)
                    chunks = []
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
            return b"".join(chunks)

        futures = [pool.submit(client, i) for i in range(n)]
        done = all_done(futures)
        try:
            assert budget.watch(gate.all_arrived, LONG), budget
            failure = first_failure(futures)
            assert failure is None, f"a client failed to connect: {failure!r}"
            # Each server holds all its connections at once, and the clients all theirs.
            for server in servers:
                assert read_line(server, time.monotonic() + LONG) == f"connected {per_server}"
            assert budget.watch_until(lambda: pool.get_stats()["parked"] == n, LONG), budget
            connected_fds = open_fds()
        finally:
            gate.open()
        assert budget.watch(done, LONG), budget
        echoed = [f.result() for f in futures]
        stats = pool.get_stats()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for server in servers:
            assert server.stdin is not None
            server.stdin.close()
        try:
            for server in servers:
                reports.append(read_line(server, time.monotonic() + 60))
                codes.append(server.wait(timeout=60))
        finally:
            for server in servers:
                server.kill()
                server.wait()
    mismatched = [i for i, data in enumerate(echoed) if data != echo_payload(i)]
    assert mismatched == [], f"{len(mismatched)} echoes differ, first at {mismatched[:5]}"
    assert stats["completed_threads"] == n and stats["failed"] == 0, stats
    assert budget.over == [], budget
    assert connected_fds >= n, connected_fds  # every client socket open at once
    assert codes == [0] * SERVERS
    for report in map(json.loads, reports):
        assert report["accepted"] == per_server, report
        assert report["peak_connections"] == per_server, report
        assert report["failed"] == 0, report
        assert report["threads_at_peak"] <= report["thread_budget"], report
    print(f"clients: {budget}, fd waits at once <= {waiting}; servers: {reports}")


def echo_server(n: int) -> None:
    """The connection test's server (run as ``python test_scale.py echo-server N``):
    prints its port; then ``connected N`` once N connections are open at once (each
    in its own virtual thread, parked in recv); then, when stdin closes, a JSON line of
    its numbers, and exits."""
    raise_nofile()
    before = os_threads()  # the main thread (and any the interpreter started)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(65535)  # the kernel caps it at net.core.somaxconn
    pool = VirtualThreadPool(max_platform_threads=2)
    lock = threading.Lock()  # held for counting only, never across a park
    counts = {"accepted": 0, "live": 0, "peak": 0}
    at_peak: dict[str, Any] = {}

    def echo(conn: socket.socket) -> None:
        with lock:
            counts["live"] += 1
            counts["peak"] = max(counts["peak"], counts["live"])
            reached = counts["live"] == n
        if reached:
            stats = pool.get_stats()
            at_peak["threads"] = os_threads()
            at_peak["budget"] = before + 2 + 1 + stats["blocking_pool_threads"]
            print(f"connected {n}", flush=True)
        try:
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
        finally:
            with lock:
                counts["live"] -= 1

    def acceptor() -> None:
        while True:
            conn, _ = listener.accept()
            with lock:
                counts["accepted"] += 1
            pool.submit(echo, conn)

    for _ in range(2):
        pool.submit(acceptor)
    print(listener.getsockname()[1], flush=True)
    sys.stdin.buffer.read()  # until the test closes our stdin
    stats = pool.get_stats()
    report = {
        "accepted": counts["accepted"],
        "peak_connections": counts["peak"],
        "threads_at_peak": at_peak.get("threads"),
        "thread_budget": at_peak.get("budget"),
        "failed": stats["failed"],
        "parks": stats["parks"],
        "driver": stats["driver"],
    }
    print(json.dumps(report), flush=True)
    os._exit(0)  # the acceptors park for ever: nothing to wait for


# -- memory ----------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    """Collects garbage and hands the allocator's free pages back to the OS, so RSS
    counts what is live (not what glibc keeps cached after a 1 GB round)."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def ten_kib(i: int) -> bytes:
    return ((b"%08d" % i) * 1280)[:10240]


def one_round(tasks: int) -> None:
    pool = VirtualThreadPool()
    futures = [pool.submit(ten_kib, i) for i in range(tasks)]
    for i, future in enumerate(futures):
        result = future.result(timeout=LONG)
        assert len(result) == 10240 and result[:8] == b"%08d" % i
    pool.shutdown(wait=True)
    stats = pool.get_stats()
    assert stats["completed_threads"] == tasks and stats["failed"] == 0, stats
    pool_ref = weakref.ref(pool)
    del pool, futures, future, result
    gc.collect()
    assert pool_ref() is None, "the pool outlived its round"


def test_memory_returns_after_rounds_of_100k_tasks() -> None:
    tasks = 100_000
    rss = []
    for _ in range(3):
        one_round(tasks)  # 100,000 results of 10 KiB: about 1 GB live at its end
        release_free_memory()
        rss.append(rss_bytes())
    growth = rss[2] - rss[0]
    print(f"rss after each round (MiB): {[r >> 20 for r in rss]}")
    # Keeping 1 KiB per task (a tenth of each result) would add 195 MiB over the two
    # rounds; what the allocator leaves fragmented stays well under this.
    assert growth < 128 << 20, f"RSS grew {growth >> 20} MiB: {[r >> 20 for r in rss]} MiB"


if __name__ == "__main__":
    if sys.argv[1:2] == ["echo-server"]:
        echo_server(int(sys.argv[2]))
    else:
        sys.exit(f"usage: {sys.argv[0]} echo-server N")
