"""The servers of py.echo: echo every byte back, one process, until stdin closes.

    python benches/python/echo_server.py PEER [--cpu C]

Prints its port first. Peers: ``ringloom`` (the plain blocking ``socket`` module: an
accept loop and one virtual thread per connection, ``recv``/``sendall``), ``threads``
(the same code, one OS thread per connection), ``gevent`` (``gevent.server.StreamServer``
with the same handler on gevent sockets), ``asyncio`` and ``uvloop-streams``
(``asyncio.start_server``, ``read``/``write``/``drain``), ``uvloop-protocol`` (a raw
Protocol: ``transport.write`` in ``data_received``); ``tcpserver-ringloom``,
``tcpserver-gevent``, ``tcpserver-threads``: the stock ``socketserver.ThreadingTCPServer``
after ringloom's, gevent's or no monkey-patching; ``aio-LOOP-protocol`` and
``aio-LOOP-streams`` (py.aio.echo): the same Protocol and streams servers on each loop of
``_aio_loops.LOOPS``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, Callable, cast

import _harness as h
from _aio_loops import LOOPS, serve_until_stdin_closes

BACKLOG = 4096


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    return sock


def announce(sock: socket.socket) -> None:
    print(sock.getsockname()[1], flush=True)


def handle(conn: socket.socket) -> None:
    """The blocking echo handler both ringloom and threads run. A reset (the load
    generator closes with bytes in flight) ends it quietly."""
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except ConnectionError:
            return


def serve_ringloom() -> None:
    from ringloom.virtual_thread import VirtualThreadPool

    sock = listener()
    pool = VirtualThreadPool()

    def acceptor() -> None:
        while True:
            conn, _ = sock.accept()  # parks the virtual thread
            pool.submit(handle, conn)

    pool.submit(acceptor)
    announce(sock)
    sys.stdin.buffer.read()


def serve_threads() -> None:
    import threading

    sock = listener()

    def acceptor() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()
    announce(sock)
    sys.stdin.buffer.read()


def serve_gevent() -> None:
    import gevent.os
    import gevent.socket
    from gevent.server import StreamServer

    sock = gevent.socket.socket(fileno=listener().detach())

    # The same blocking handler, on gevent's cooperative socket.
    server = StreamServer(sock, lambda conn, _address: handle(conn))
    server.start()
    announce(sock)
    fd = sys.stdin.fileno()
    gevent.os.make_nonblocking(fd)
    while gevent.os.nb_read(fd, 65536):
        pass
    server.stop(timeout=0)


def _asyncio_serve(streams: bool) -> Any:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def stream_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = listener()
        port = sock.getsockname()[1]  # rloop's create_server takes the socket's descriptor
        if streams:
            server = await asyncio.start_server(stream_handle, sock=sock, backlog=BACKLOG)
        else:
            server = await loop.create_server(Echo, sock=sock, backlog=BACKLOG)
        print(port, flush=True)
        await serve_until_stdin_closes(server)

    return main()


def serve_asyncio() -> None:
    import asyncio

    asyncio.run(_asyncio_serve(streams=True))


def _uvloop(streams: bool) -> Callable[[], None]:
    def serve() -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        loop.run_until_complete(_asyncio_serve(streams))

    return serve


def _tcpserver(patch: str) -> Callable[[], None]:
    """``socketserver.ThreadingTCPServer`` with a ``StreamRequestHandler`` echo: stock
    code, after ``patch``'s monkey-patching (``ringloom``, ``gevent``, or none: one OS
    thread per connection)."""

    def serve() -> None:
        if patch == "ringloom":
            from ringloom import monkey

            monkey.patch_all()
        elif patch == "gevent":
            from gevent import monkey as gevent_monkey

            gevent_monkey.patch_all()
        import socketserver
        import threading

        class Echo(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    while data := self.request.recv(65536):
                        self.request.sendall(data)
                except ConnectionError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = BACKLOG

        server = Server(("127.0.0.1", 0), Echo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(server.server_address[1], flush=True)
        if patch == "gevent":
            # The main greenlet must wait cooperatively, or the server never runs.
            import gevent.os

            fd = sys.stdin.fileno()
            gevent.os.make_nonblocking(fd)
            while gevent.os.nb_read(fd, 65536):
                pass
        else:
            sys.stdin.buffer.read()

    return serve


def _aio(loop_name: str, streams: bool) -> Callable[[], None]:
    """The Protocol or streams server above on one of ``_aio_loops.LOOPS`` (py.aio.echo)."""

    def serve() -> None:
        from _aio_loops import new_loop

        loop = new_loop(loop_name)
        loop.run_until_complete(_asyncio_serve(streams))

    return serve


PEERS: dict[str, Callable[[], None]] = {
    "tcpserver-ringloom": _tcpserver("ringloom"),
    "tcpserver-gevent": _tcpserver("gevent"),
    "tcpserver-threads": _tcpserver("threads"),
    "ringloom": serve_ringloom,
    "threads": serve_threads,
    "gevent": serve_gevent,
    "asyncio": serve_asyncio,
    "uvloop-streams": _uvloop(streams=True),
    "uvloop-protocol": _uvloop(streams=False),
}
for _loop in LOOPS:
    PEERS[f"aio-{_loop}-protocol"] = _aio(_loop, streams=False)
    PEERS[f"aio-{_loop}-streams"] = _aio(_loop, streams=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    h.raise_nofile(1 << 16)
    PEERS[args.peer]()
    sys.stdout.flush()
    os._exit(0)  # connection handlers may still be parked: no orderly shutdown


if __name__ == "__main__":
    main()
