"""Descriptors run out in the middle of a 10,000-connection run: the server's
``accept`` gets a plain ``OSError(EMFILE)``, and once descriptors free up the same pool
goes on serving, every connection answered.

The server is a child process (this file as a script, see the bottom) with a low
``RLIMIT_NOFILE``: an echo server in a ``VirtualThreadPool``, written with stock
``socket`` and ``threading`` under ``ringloom.monkey.patch_all()``, that retries an
accept refused with EMFILE as user code would. Its handlers hold each connection until
the first EMFILE, so the limit is met with a thousand connections open, not at the
run's edges. The clients are virtual threads of this process.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import ringloom
from scale_tools import LONG
from support import script_env

CONNECTIONS = 10_000
# Clients connecting at once: far more than the server's limit, and fewer than its
# listen backlog, so that no SYN is dropped and retried after a second.
CLIENTS_AT_ONCE = 3_000
# The server's descriptor limit: a tenth of the connections.
SERVER_NOFILE = 1_024


def payload(i: int) -> bytes:
    return (b"%06d;" % i) * (1 + i % 13)


def test_emfile_mid_run_is_a_clear_error_and_the_pool_goes_on_serving() -> None:
    server = subprocess.Popen(
        [sys.executable, __file__],
        env=script_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pool = ringloom.VirtualThreadPool()
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        at_once = ringloom.BoundedSemaphore(CLIENTS_AT_ONCE)

        def client(i: int) -> bytes:
            data = payload(i)
            with at_once, socket.create_connection(("127.0.0.1", port), timeout=LONG) as sock:
                sock.sendall(len(data).to_bytes(4, "big") + data)
                return recv_exactly(sock, len(data))

        futures = [pool.submit(client, i) for i in range(CONNECTIONS)]
        echoed = [f.result(timeout=LONG) for f in futures]
        out, err = server.communicate(timeout=LONG)  # closes stdin: the server stops
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err[-4000:]
    report = json.loads(out.strip().splitlines()[-1])
    mismatched = [i for i, data in enumerate(echoed) if data != payload(i)]
    assert mismatched == [], f"{len(mismatched)} echoes differ, first at {mismatched[:5]}"
    # The limit was met while connections were open; the server said so plainly and
    # accepted every connection once descriptors came back.
    assert report["emfile"] > 0, report
    assert report["emfile_messages"] == ["[Errno 24] Too many open files"], report
    assert report["open_at_first_emfile"] > SERVER_NOFILE // 2, report
    assert report["accepted"] == CONNECTIONS, report
    assert report["failed"] == [], report
    assert report["after"] == "served", report
    assert report["fds_end"] == report["fds_start"], report
    assert "Traceback" not in err and "ringloom" not in err, err[-4000:]


def test_a_process_out_of_descriptors_still_parks_on_its_open_socket_and_file() -> None:
    """A wait and a file read need no descriptor of their own: with every descriptor
    taken, a virtual thread's ``recv`` parks and returns, and its ``read`` reads, as stock
    calls on those open objects would (no EMFILE)."""
    child = subprocess.run(
        [sys.executable, __file__, "exhausted"],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=LONG,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report == {"recv": "ping", "read": "contents " * 1000, "free_fds": 0}, report


def exhausted() -> dict[str, Any]:
    """The child of the test above: takes every descriptor, then waits and reads."""
    import tempfile

    pool = ringloom.VirtualThreadPool()
    pool.submit(lambda: None).result()  # the workers and their rings are up
    a, b = socket.socketpair()
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("contents " * 1000)
    file = open(f.name)  # noqa: SIM115 - closed below
    filler: list[int] = []
    try:
        while True:
            filler.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as err:
        assert err.errno == errno.EMFILE, err
    try:

        def wait_then_read() -> tuple[str, str]:
            return a.recv(4).decode(), file.read()

        future = pool.submit(wait_then_read)
        deadline = time.monotonic() + LONG
        while pool.get_stats()["parked"] != 1:  # in recv, nothing sent yet
            assert time.monotonic() < deadline and not future.done(), future
            time.sleep(0.001)
        b.sendall(b"ping")
        received, read = future.result(timeout=LONG)
        try:
            free = os.open("/dev/null", os.O_RDONLY)
            os.close(free)
            free_fds = 1
        except OSError:
            free_fds = 0
    finally:
        for fd in filler:
            os.close(fd)
        file.close()
        os.unlink(f.name)
    pool.shutdown(wait=True)
    return {"recv": received, "read": read, "free_fds": free_fds}


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def serve() -> dict[str, Any]:
    """The child: an echo server under a descriptor limit its clients exceed. Prints
    its port, serves until stdin closes, then returns its report."""
    pool = ringloom.VirtualThreadPool()
    pool.submit(lambda: None).result()  # the workers and their rings are up
    fds_start = len(os.listdir("/proc/self/fd"))
    tally = threading.Lock()
    report: dict[str, Any] = {"emfile": 0, "accepted": 0, "open_at_first_emfile": 0}
    messages: set[str] = set()
    failed: list[str] = []
    open_now = 0
    ran_out = threading.Event()
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)

    def handle(conn: socket.socket) -> None:
        nonlocal open_now
        try:
            with conn:
                size = int.from_bytes(recv_exactly(conn, 4), "big")
                data = recv_exactly(conn, size)
                # Held until the limit has been met at least once.
                ran_out.wait(LONG)
                conn.sendall(data)
                while conn.recv(1):  # until the client closes
                    pass
        except Exception as err:  # noqa: BLE001 - reported, and the test fails on it
            with tally:
                failed.append(repr(err))
        finally:
            with tally:
                open_now -= 1

    def accept_loop() -> None:
        nonlocal open_now
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError as err:
                if err.errno != errno.EMFILE:
                    raise
                with tally:
                    if not ran_out.is_set():
                        report["open_at_first_emfile"] = open_now
                    report["emfile"] += 1
                    messages.add(str(err))
                ran_out.set()
                time.sleep(0.002)  # until a handler gives a descriptor back
                continue
            if stop.is_set():  # the wake-up connection
                conn.close()
                return
            with tally:
                report["accepted"] += 1
                open_now += 1
            pool.submit(handle, conn)

    accepting = pool.submit(accept_loop)
    print(listener.getsockname()[1], flush=True)
    sys.stdin.read()
    stop.set()
    socket.create_connection(listener.getsockname()).close()  # wakes the accept
    accepting.result(timeout=LONG)
    listener.close()
    while open_now:
        time.sleep(0.01)
    report["after"] = pool.submit(lambda: "served").result(timeout=LONG)
    report["fds_end"] = len(os.listdir("/proc/self/fd"))
    report["fds_start"] = fds_start
    report["emfile_messages"] = sorted(messages)
    report["failed"] = failed[:10]
    pool.shutdown(wait=True)
    return report


if __name__ == "__main__":
    import ringloom.monkey

    ringloom.monkey.patch_all()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_NOFILE, hard))
    print(json.dumps(exhausted() if sys.argv[1:] == ["exhausted"] else serve()))
