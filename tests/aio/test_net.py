"""``ringloom.asyncio``: sockets, streams, transports and protocols, datagrams, unix
sockets and TLS, each on the main thread and in a virtual thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

# The ``run_loop`` fixture (conftest.py): runs a coroutine function on a new loop.
RunLoop = Callable[..., Any]

LOCALHOST = "127.0.0.1"


def test_sock_methods_echo(run_loop: RunLoop) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        listener.listen()
        listener.setblocking(False)

        async def serve() -> None:
            conn, _ = await loop.sock_accept(listener)
            with conn:
                while data := await loop.sock_recv(conn, 1024):
                    await loop.sock_sendall(conn, data.upper())

        server = asyncio.ensure_future(serve())
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        replies = []
        buf = bytearray(1024)
        for word in (b"one", b"two", b"three" * 1000):
            await loop.sock_sendall(client, word)
            got = b""
            while len(got) < len(word):
                n = await loop.sock_recv_into(client, buf)
                got += bytes(buf[:n])
            replies.append(got)
        client.close()
        await server
        listener.close()
        return replies

    assert run_loop(main) == [b"ONE", b"TWO", b"THREE" * 1000]


def test_streams_echo_with_1000_connections(run_loop: RunLoop) -> None:
    connections = 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port: int, k: int) -> bytes:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"hello %d\n" % k)
        await writer.drain()
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    async def main() -> list[bytes]:
        server = await asyncio.start_server(handle, LOCALHOST, 0, backlog=connections)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return list(await asyncio.gather(*(client(port, k) for k in range(connections))))

    assert run_loop(main) == [b"hello %d\n" % k for k in range(connections)]


class Echo(asyncio.Protocol):
    """Echoes what it receives and closes when the peer does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> None:
        self.transport.close()


class Collect(asyncio.Protocol):
    """Collects what it receives until the connection is lost."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(bytes(self.data))


class CollectBuffered(asyncio.BufferedProtocol):
    """A BufferedProtocol that collects into small buffers it hands out."""

    def __init__(self) -> None:
        self.buffer = bytearray(256)
        self.data = bytearray()
        self.calls = 0
        self.lost: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.calls += 1
        self.data += self.buffer[:nbytes]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(bytes(self.data))


@pytest.mark.parametrize("protocol", [Collect, CollectBuffered])
def test_create_server_and_create_connection(run_loop: RunLoop, protocol: type) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB: many reads into a 256-byte buffer

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(protocol, LOCALHOST, port)
        transport.write(payload)
        transport.write_eof()
        data: bytes = await proto.lost
        server.close()
        await server.wait_closed()
        return data

    assert run_loop(main) == payload


def test_datagram_endpoints(run_loop: RunLoop) -> None:
    class Upper(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data.upper(), addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[bytes] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.got.put_nowait(data)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Upper, local_addr=(LOCALHOST, 0))
        addr = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        replies = []
        for word in (b"a", b"bb", b"ccc"):
            client.sendto(word)
            replies.append(await proto.got.get())
        client.close()
        server.close()
        return replies

    assert run_loop(main) == [b"A", b"BB", b"CCC"]


def test_unix_sockets(run_loop: RunLoop) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main(path: str) -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"stream\n")
        first = await reader.readline()
        writer.close()
        transport, proto = await loop.create_unix_connection(Collect, path)
        transport.write(b"protocol\n")
        second = await proto.lost
        server.close()
        await server.wait_closed()
        return first, second

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "sock")
        assert run_loop(main, path) == (b"STREAM\n", b"PROTOCOL\n")


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context: a certificate for 127.0.0.1 from a CA made now."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOCALHOST).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_tls_streams(run_loop: RunLoop, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line[:-1][::-1] + b"\n")
            await writer.drain()
        writer.close()

    async def main() -> tuple[list[bytes], str]:
        server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOCALHOST, port, ssl=client_ctx)
        version = writer.get_extra_info("ssl_object").version()
        lines = []
        for k in range(20):
            writer.write(b"line %d\n" % k)
            lines.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return lines, version

    lines, version = run_loop(main)
    assert lines == [(b"line %d" % k)[::-1] + b"\n" for k in range(20)]
    assert version.startswith("TLS")


def test_start_tls_upgrades_a_plain_connection(
    run_loop: RunLoop, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        writer.write(b"secret " + await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, bool]:
        server = await asyncio.start_server(handle, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname=LOCALHOST)
        writer.write(b"hello\n")
        reply = await reader.readline()
        encrypted = writer.get_extra_info("ssl_object") is not None
        writer.close()
        server.close()
        await server.wait_closed()
        return reply, encrypted

    assert run_loop(main) == (b"secret hello\n", True)


def test_transport_extras_match_the_stock_loop(run_loop: RunLoop) -> None:
    # The ring loop's transports make `socket` and `sockname` when asked (or as the
    # socket closes): asked before, during and after the connection, they are the stock
    # loop's answers.
    async def main() -> list[Any]:
        seen: list[Any] = []
        lost = asyncio.get_running_loop().create_future()

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                sock = transport.get_extra_info("socket")
                seen.append((sock.family, sock.type, sock.getsockname()))
                seen.append(transport.get_extra_info("sockname"))

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[attr-defined]

            def connection_lost(self, exc: BaseException | None) -> None:
                lost.set_result(self.transport)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        # A client transport never asked before it closes.
        seen.append(writer.get_extra_info("peername"))
        writer.write(b"x")
        await reader.readexactly(1)
        client = writer.transport
        writer.close()
        await writer.wait_closed()
        seen.append(client.get_extra_info("sockname")[0])
        seen.append(client.get_extra_info("socket") is not None)
        served = await lost
        seen.append(served.get_extra_info("sockname"))
        seen.append(served.get_extra_info("nothing", "default"))
        server.close()
        await server.wait_closed()
        return [port, *seen]

    port, *seen = run_loop(main)
    assert seen == [
        (socket.AF_INET, socket.SOCK_STREAM, (LOCALHOST, port)),
        (LOCALHOST, port),
        (LOCALHOST, port),
        LOCALHOST,
        True,
        (LOCALHOST, port),
        "default",
    ]


def test_accepted_transports_share_the_peer_host_and_switch_to_a_buffered_protocol(
    run_loop: RunLoop,
) -> None:
    # What an idle connection holds is trimmed (see `_RingSocketTransport`): the peer's
    # address is still the stock one, with one host string for connections from one host;
    # the read path follows `set_protocol` from a plain to a buffered protocol and back.
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        served: list[asyncio.Transport] = []
        got: list[bytes] = []

        class Plain(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                served.append(transport)  # type: ignore[arg-type]

            def data_received(self, data: bytes) -> None:
                got.append(b"plain:" + data)

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self) -> None:
                self.buffer = bytearray(16)

            def get_buffer(self, sizehint: int) -> bytearray:
                return self.buffer

            def buffer_updated(self, nbytes: int) -> None:
                got.append(b"buffered:" + bytes(self.buffer[:nbytes]))

        server = await loop.create_server(Plain, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await asyncio.open_connection(LOCALHOST, port) for _ in range(2)]
        while len(served) < 2:
            await asyncio.sleep(0.001)
        peers = [t.get_extra_info("peername") for t in served]
        names = [w.get_extra_info("sockname") for _, w in clients]

        async def send(data: bytes, count: int) -> None:
            clients[0][1].write(data)
            while len(got) < count:
                await asyncio.sleep(0.001)

        await send(b"a", 1)
        served[0].set_protocol(Buffered())
        await send(b"b", 2)
        served[0].set_protocol(Plain())
        await send(b"c", 3)
        for _, writer in clients:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return [sorted(peers) == sorted(names), peers[0][0] is peers[1][0], got]

    assert run_loop(main) == [True, True, [b"plain:a", b"buffered:b", b"plain:c"]]
