"""The loopback HTTP server of py.scrape: a raw ``uvloop`` Protocol, one process.

    python benches/python/http_server.py [--cpu C]

Prints its port, serves ``GET /item/<i>`` (HTTP/1.1, keep-alive unless the request says
``Connection: close``) with ``body_for(i)``, and exits when its stdin closes. It parses
only what it needs (the request line and the end of the headers); the client's CPU use,
not this server's, is what py.scrape measures (the client reports this process's CPU
time over the run beside its rate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import cast

import _harness as h
from _harness import body_for


class HttpProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        transport = self.transport
        assert transport is not None
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            path = parts[1] if len(parts) == 3 else b""
            if parts[0] == b"GET" and path.startswith(b"/item/") and path[6:].isdigit():
                status, body = b"200 OK", body_for(int(path[6:]))
            else:
                status, body = b"404 Not Found", b"not found\n"
            close = b"connection: close" in head.lower()
            transport.write(
                b"HTTP/1.1 %s\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n%s\r\n%s"
                % (status, len(body), b"Connection: close\r\n" if close else b"", body)
            )
            if close:
                transport.close()
                return


async def serve() -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await loop.create_server(HttpProtocol, sock=sock, backlog=65535)
    print(sock.getsockname()[1], flush=True)
    stdin_closed = loop.create_future()

    class Stdin(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            stdin_closed.set_result(None)

    await loop.connect_read_pipe(Stdin, sys.stdin)
    await stdin_closed
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, default=1, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    h.raise_nofile(1 << 20)
    import uvloop

    loop = uvloop.new_event_loop()
    loop.run_until_complete(serve())
    os._exit(0)


if __name__ == "__main__":
    main()
