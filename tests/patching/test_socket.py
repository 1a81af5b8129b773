"""Plain `socket` code parks intercepting virtual threads on the ring."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Callable

import pytest
import ringloom
from ringloom import Loom
from support import os_threads, wait_until


def payload(i: int) -> bytes:
    return (b"%06d:" % i) * (1 + i % 50)


def test_two_thousand_connection_echo(loom: Loom) -> None:
    n = 2_000
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    baseline = os_threads()

    def handle(conn: socket.socket) -> int:
        with conn:
            size = int(conn.recv(8))
            data = b""
            while len(data) < size:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data)
            return len(data)

    def server() -> list:
        handlers = []
        for _ in range(n):
            conn, _addr = listener.accept()
            handlers.append(ringloom.submit(loom, handle, conn))
        return handlers

    def client(i: int) -> bool:
        data = payload(i)
        with socket.socket() as sock:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"%08d" % len(data) + data)
            received = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        return received == data

    serving = ringloom.submit(loom, server)
    clients = [ringloom.submit(loom, client, i) for i in range(n)]
    results = [c.result(timeout=120) for c in clients]
    handlers = serving.result(timeout=60)
    listener.close()
    assert all(results)
    sizes = [h.result(timeout=60) for h in handlers]
    assert sorted(sizes) == sorted(len(payload(i)) for i in range(n))
    assert os_threads() <= baseline + 4


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_recvs_parked_at_once_hold_no_buffer_each_and_get_their_own_bytes(loom: Loom) -> None:
    """400 virtual threads wait in ``recv(256 KiB)``: waiting costs no buffer of that size
    (400 of them would be 100 MiB), and the bytes each finally gets are its own."""
    n, bufsize = 400, 256 * 1024
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        before = _rss_bytes()
        futures = [ringloom.submit(loom, a.recv, bufsize) for a, _b in pairs]
        wait_until(lambda: loom.stats()["parked"] == n)
        grown = _rss_bytes() - before
        assert grown < 40 * 1024 * 1024, f"{n} parked recvs grew the process by {grown} bytes"
        for i, (_a, b) in enumerate(pairs):
            b.sendall(payload(i))
        assert [f.result(timeout=30) for f in futures] == [payload(i) for i in range(n)]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_recv_timeout_on_a_silent_peer(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def reader() -> str:
            a.settimeout(0.05)
            try:
                a.recv(10)
            except TimeoutError as err:
                assert isinstance(err, socket.timeout)
                return str(err)
            return "no timeout"

        assert ringloom.submit(loom, reader).result(timeout=10) == "timed out"
        # and the stock message outside, for comparison
        a.settimeout(0.05)
        with pytest.raises(TimeoutError, match="^timed out$"):
            a.recv(10)


def _recv_into(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    return bytes(buffer[: sock.recv_into(buffer)])


@pytest.mark.parametrize("read", [socket.socket.recv, _recv_into], ids=["recv", "recv_into"])
def test_timeout_socket_gets_its_data(
    loom: Loom, read: Callable[[socket.socket, int], bytes]
) -> None:
    a, b = socket.socketpair()
    with a, b:

        def reader() -> bytes:
            a.settimeout(5)
            return read(a, 10)

        future = ringloom.submit(loom, reader)
        ringloom.submit(loom, lambda: (ringloom.sleep(0.02), b.sendall(b"late"))).result(10)
        assert future.result(timeout=10) == b"late"


def test_a_timeout_bounds_a_whole_sendall(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def writer() -> str:
            a.settimeout(0.2)
            try:
                a.sendall(b"x" * 50_000_000)  # more than both buffers hold; b never reads
            except TimeoutError as err:
                return str(err)
            return "sent"

        assert ringloom.submit(loom, writer).result(timeout=10) == "timed out"


def test_default_timeout_applies(loom: Loom) -> None:
    def reader() -> str:
        socket.setdefaulttimeout(0.05)
        try:
            a, b = socket.socketpair()
        finally:
            socket.setdefaulttimeout(None)
        with a, b:
            try:
                a.recv(1)
            except TimeoutError as err:
                return str(err)
        return "no timeout"

    assert ringloom.submit(loom, reader).result(timeout=10) == "timed out"


def test_create_connection_to_a_closed_port(loom: Loom) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=2)

    with pytest.raises(ConnectionRefusedError):
        ringloom.submit(loom, connect).result(timeout=10)
    with pytest.raises(ConnectionRefusedError):
        connect()

    def connect_ex() -> int:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port))

    assert ringloom.submit(loom, connect_ex).result(timeout=10) == errno.ECONNREFUSED
    assert connect_ex() == errno.ECONNREFUSED


def test_accept_timeout(loom: Loom) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def accept() -> str:
            listener.settimeout(0.05)
            try:
                listener.accept()
            except socket.timeout as err:
                return str(err)
            return "accepted"

        assert ringloom.submit(loom, accept).result(timeout=10) == "timed out"
        assert listener.gettimeout() == 0.05


def test_nonblocking_socket_is_stock(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def reader() -> str:
            a.setblocking(False)
            try:
                a.recv(10)
            except BlockingIOError as err:
                return type(err).__name__
            return "data"

        assert ringloom.submit(loom, reader).result(timeout=10) == "BlockingIOError"

        def flagged() -> str:
            b.setblocking(True)
            try:
                b.recv(10, socket.MSG_DONTWAIT)
            except BlockingIOError as err:
                return type(err).__name__
            return "data"

        assert ringloom.submit(loom, flagged).result(timeout=10) == "BlockingIOError"


def test_blocking_mode_survives_accept_and_connect(loom: Loom) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def pair() -> tuple:
            client = socket.socket()
            accepting = ringloom.submit(loom, listener.accept)
            client.connect(("127.0.0.1", port))
            conn, _ = accepting.result()
            modes = (
                client.gettimeout(),
                conn.gettimeout(),
                listener.gettimeout(),
                os.get_blocking(client.fileno()),
                os.get_blocking(conn.fileno()),
                os.get_blocking(listener.fileno()),
            )
            client.close()
            conn.close()
            return modes

        assert ringloom.submit(loom, pair).result(timeout=10) == (
            None,
            None,
            None,
            True,
            True,
            True,
        )


def test_timeout_mode_survives_accept_and_connect(loom: Loom) -> None:
    """A socket with a timeout has its descriptor non-blocking already: its connect and
    accept take the short path, which must leave timeout and mode as they were."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(10.0)
        port = listener.getsockname()[1]

        def pair() -> tuple:
            client = socket.socket()
            client.settimeout(10.0)
            accepting = ringloom.submit(loom, listener.accept)
            client.connect(("127.0.0.1", port))
            conn, _ = accepting.result()
            client.sendall(b"ping")
            got = conn.recv(4)
            modes = (
                got,
                client.gettimeout(),
                listener.gettimeout(),
                os.get_blocking(client.fileno()),
                os.get_blocking(listener.fileno()),
            )
            client.close()
            conn.close()
            # Bound and not listening: a connection there is refused.
            with socket.socket() as bound, socket.socket() as refused:
                bound.bind(("127.0.0.1", 0))
                refused.settimeout(10.0)
                error = refused.connect_ex(bound.getsockname())
            return (*modes, error)

        result = ringloom.submit(loom, pair).result(timeout=20)
        assert result == (b"ping", 10.0, 10.0, False, False, errno.ECONNREFUSED)


def test_udp_sendto_recvfrom(loom: Loom) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        address = server.getsockname()

        def serve() -> bytes:
            data, peer = server.recvfrom(100)
            server.sendto(data.upper(), 0, peer)
            buf = bytearray(100)
            n, _peer = server.recvfrom_into(buf)
            return bytes(buf[:n])

        serving = ringloom.submit(loom, serve)

        def talk() -> bytes:
            client.sendto(b"ping", address)
            reply = bytearray(16)
            n = client.recv_into(reply)
            client.sendto(b"second", address)
            return bytes(reply[:n])

        assert ringloom.submit(loom, talk).result(timeout=10) == b"PING"
        assert serving.result(timeout=10) == b"second"


def test_makefile_reads_and_writes(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def echo_lines() -> list[bytes]:
            with a.makefile("rwb") as f:
                lines = [f.readline() for _ in range(3)]
                f.write(b"".join(lines))
                f.flush()
            return lines

        future = ringloom.submit(loom, echo_lines)
        b.sendall(b"one\ntwo\nthree\n")
        assert future.result(timeout=10) == [b"one\n", b"two\n", b"three\n"]
        assert b.recv(100) == b"one\ntwo\nthree\n"


def test_big_sendall_against_a_slow_reader(loom: Loom) -> None:
    a, b = socket.socketpair()
    data = os.urandom(4 << 20)
    with a, b:
        sending = ringloom.submit(loom, a.sendall, data)

        def read_all() -> bytes:
            chunks = []
            got = 0
            while got < len(data):
                chunk = b.recv(1 << 16)
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)

        assert ringloom.submit(loom, read_all).result(timeout=60) == data
        sending.result(timeout=10)


def test_sendall_timeout(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def stuff() -> str:
            a.settimeout(0.05)
            try:
                a.sendall(b"x" * (16 << 20))
            except TimeoutError as err:
                return str(err)
            return "sent"

        assert ringloom.submit(loom, stuff).result(timeout=10) == "timed out"


def test_outside_virtual_threads_sockets_are_stock() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(conn.recv(100)[::-1])

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"abc")
            assert sock.recv(100) == b"cba"
        thread.join(10)


def test_sendfile_parks(loom: Loom, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(1 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    a, b = socket.socketpair()
    with a, b:

        def send() -> int:
            with open(path, "rb") as f:
                return a.sendfile(f)

        sending = ringloom.submit(loom, send)

        def read_all() -> bytes:
            got = bytearray()
            while len(got) < len(data):
                got += b.recv(1 << 16)
            return bytes(got)

        assert ringloom.submit(loom, read_all).result(timeout=30) == data
        assert sending.result(timeout=10) == len(data)


def test_several_acceptors_share_a_listener(loom: Loom) -> None:
    n = 200
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        port = listener.getsockname()[1]

        def acceptor() -> int:
            served = 0
            while True:
                conn, _ = listener.accept()
                with conn:
                    data = conn.recv(16)
                    if data == b"stop":
                        return served
                    conn.sendall(data)
                    served += 1

        acceptors = [ringloom.submit(loom, acceptor) for _ in range(4)]

        def client(i: int) -> bool:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"%d" % i)
                return sock.recv(16) == b"%d" % i

        clients = [ringloom.submit(loom, client, i) for i in range(n)]
        assert all(c.result(timeout=60) for c in clients)
        for _ in acceptors:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"stop")
        assert sum(a.result(timeout=30) for a in acceptors) == n
        assert listener.gettimeout() is None and os.get_blocking(listener.fileno())


def test_accept_on_a_timeout_listener_gives_a_blocking_socket(loom: Loom) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def accept() -> tuple:
            conn, _ = listener.accept()
            with conn:
                return conn.gettimeout(), os.get_blocking(conn.fileno()), conn.recv(4)

        accepting = ringloom.submit(loom, accept)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"ping")
            assert accepting.result(timeout=10) == (None, True, b"ping")
        assert listener.gettimeout() == 5
        assert not os.get_blocking(listener.fileno())  # as stock: a timeout socket is O_NONBLOCK


def test_reader_that_loses_the_race_on_a_timeout_socket_parks_again() -> None:
    """Two readers wake for one chunk: the loser must park again, not wait in the stock
    poll (which would hold the only worker, so the winner could never send the second
    chunk and the loser would time out)."""
    a, b = socket.socketpair()
    a.settimeout(10)
    with Loom(workers=1) as loom:

        def reader() -> bytes:
            got = a.recv(1)
            if got == b"x":
                time.sleep(0.1)  # the other reader resumes meanwhile, to find nothing
                b.send(b"y")
            return got

        futures = [ringloom.submit(loom, reader) for _ in range(2)]
        deadline = time.monotonic() + 10
        while loom.stats()["parked"] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert loom.stats()["parked"] == 2
        b.send(b"x")
        assert sorted(f.result(timeout=30) for f in futures) == [b"x", b"y"]
    a.close()
    b.close()


def test_a_parked_socket_costs_no_extra_descriptor_under_io_uring(loom: Loom) -> None:
    """io_uring polls hold the file, so parking lends the number instead of a dup; the
    fallback driver (epoll deregisters by number) still holds a duplicate per wait."""
    n = 500
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        before = len(os.listdir("/proc/self/fd"))
        futures = [ringloom.submit(loom, a.recv, 10) for a, _ in pairs]
        deadline = time.monotonic() + 30
        while loom.stats()["parked"] < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert loom.stats()["parked"] == n
        extra = len(os.listdir("/proc/self/fd")) - before
        if loom.stats()["driver"] == "io_uring":
            assert extra < n // 10, extra
        else:
            assert extra >= n, extra
        for _, b in pairs:
            b.send(b"x")
        assert [f.result(timeout=30) for f in futures] == [b"x"] * n
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_blocking_calls_keep_the_stock_contract(loom: Loom) -> None:
    """recv, recv_into, send and sendall of a blocking socket in a virtual thread: the
    values, errors and buffer kinds of the stock methods."""
    import array

    def body() -> dict:
        a, b = socket.socketpair()
        out: dict = {}
        with a, b:
            out["empty"] = b.recv(0)
            a.sendall(memoryview(array.array("i", [1, 2, 3])))
            out["array"] = b.recv(64)
            assert a.send(bytearray(b"xyz")) == 3
            buf = bytearray(8)
            out["into"] = (b.recv_into(buf, nbytes=2), bytes(buf[:2]))
            out["rest"] = (b.recv_into(memoryview(buf)[2:]), bytes(buf[2:3]))
            errors = []
            for call in (
                lambda: b.recv(-1),
                lambda: b.recv_into(bytearray(2), 5),
                lambda: b.recv_into(bytearray(2), -1),
                lambda: a.sendall("text"),
                lambda: b.recv_into(b"read-only"),
                lambda: b.recv(bufsize=4),
            ):
                try:
                    call()
                except Exception as err:  # noqa: BLE001 - the kind is what is checked
                    errors.append(type(err).__name__)
            out["errors"] = errors
            a.close()
            out["eof"] = b.recv(10)
        return out

    out = ringloom.submit(loom, body).result(timeout=30)
    assert out["empty"] == b""
    assert out["array"] == bytes(array.array("i", [1, 2, 3]))
    assert out["into"] == (2, b"xy") and out["rest"] == (1, b"z")
    assert out["errors"] == [
        "ValueError",
        "ValueError",
        "ValueError",
        "TypeError",
        "TypeError",
        "TypeError",
    ]
    assert out["eof"] == b""


def test_recv_parked_on_a_socket_another_thread_closes_fails_cleanly(loom: Loom) -> None:
    """The descriptor is read anew after each park: a socket closed while its reader
    was parked fails with EBADF (or reads end of file), never from a reused number."""
    a, b = socket.socketpair()
    reading = ringloom.submit(loom, b.recv, 10)
    # A reader parked: nothing to read yet. Closing b from here (an OS thread), then
    # opening a new socket that may take its number and writing into it.
    assert not reading.done()
    b.close()
    c, d = socket.socketpair()
    with a, c, d:
        d.sendall(b"not for b")  # c may have b's old number
        try:
            a.sendall(b"wake")
        except BrokenPipeError:
            pass  # b was gone before its reader's poll held it
        try:
            got = reading.result(timeout=30)
        except OSError as err:
            assert err.errno == errno.EBADF
        else:
            assert got in (b"", b"wake")


def test_a_reset_peer_raises_connection_reset_with_its_errno(loom: Loom) -> None:
    import struct

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:

            def read() -> tuple[str, int | None]:
                try:
                    server.recv(10)
                except OSError as err:
                    return type(err).__name__, err.errno
                return "no error", None

            reading = ringloom.submit(loom, read)
            # Close with a zero linger: the peer gets a reset, not an end of file.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            assert reading.result(timeout=30) == ("ConnectionResetError", errno.ECONNRESET)
