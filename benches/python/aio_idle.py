"""Workload py.aio.idle_memory: the memory an event loop's server spends per idle
connection.

    python benches/python/aio_idle.py LOOP [--conns N] [--server-cpu C] [--load-cpu L]
    python benches/python/aio_idle.py serve LOOP N     (the server, run by the above)

The server (LOOP, one of ``_aio_loops.LOOPS``, pinned to ``--server-cpu``) listens with
``loop.create_server`` and a Protocol per connection that keeps its transport and echoes
what it gets. Once listening it collects garbage and reads its resident size
(``/proc/self/statm``, ``base_rss_mib``), and does both again when the (N/10)-th and
the N-th connections' ``connection_made`` have run. This driver (pinned to
``--load-cpu``) opens the N connections with plain blocking sockets, 100 at a time (the
next 100 once the last of these has echoed a byte: the server holds idle connections,
not an accept backlog, whose transient objects would make the reading depend on how
fast the loop drains it), and leaves them idle. ``kib_per_conn`` is the growth between
the two last readings over the 0.9 N connections made between them, so that what a loop
makes once (ringloom's helper runtime at its first wait, the first accept's imports) is
not counted per connection: the transport, the protocol, the loop's registration of the
socket, and the kernel's socket as far as it counts in the process's RSS (it mostly does
not: socket buffers are kernel memory).

Checked: after the reading, one byte sent on every connection comes back on every one
(each was accepted and served); a missing or wrong byte fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import subprocess
import sys
from typing import Any, cast

import _harness as h
from _aio_loops import LOOPS, loop_versions, new_loop, serve_until_stdin_closes

#: Connections opened at once; the next batch waits until the server has taken these.
BATCH = 100


def serve_main(loop_name: str, conns: int) -> None:
    h.raise_nofile(conns + 1024)
    loop = new_loop(loop_name)
    protocols: list[asyncio.Protocol] = []

    first = max(1, conns // 10)
    readings: list[int] = []

    def reading() -> None:
        gc.collect()
        readings.append(h.rss_kib())

    async def serve() -> None:
        full = loop.create_future()

        class Idle(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.Transport, transport)
                protocols.append(self)
                if len(protocols) == first:
                    reading()
                if len(protocols) == conns:
                    full.set_result(None)

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        port = sock.getsockname()[1]  # rloop's create_server takes the socket's descriptor
        server = await loop.create_server(Idle, sock=sock, backlog=4096)
        reading()
        print(port, readings[0], flush=True)
        await full
        reading()
        print(readings[1], readings[2], flush=True)
        await serve_until_stdin_closes(server)

    loop.run_until_complete(serve())


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve_main(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loop", choices=LOOPS)
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args()
    h.pin(args.load_cpu)
    h.raise_nofile(args.conns + 1024)
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", args.loop, str(args.conns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: h.pin(args.server_cpu),
    )
    assert server.stdin is not None and server.stdout is not None
    conns: list[socket.socket] = []
    try:
        first = server.stdout.readline().split()
        if len(first) != 2:
            sys.exit("the server did not start")
        port, base_kib = int(first[0]), int(first[1])
        while len(conns) < args.conns:
            batch = [
                socket.create_connection(("127.0.0.1", port), timeout=60)
                for _ in range(min(BATCH, args.conns - len(conns)))
            ]
            conns += batch
            # The server has accepted the batch when its last connection echoes.
            batch[-1].sendall(b"\xff")
            if batch[-1].recv(16) != b"\xff":
                sys.exit(f"connection {len(conns) - 1} did not echo")
        line = server.stdout.readline().split()
        if len(line) != 2:
            sys.exit("the server ended before it had every connection")
        tenth_kib, full_kib = int(line[0]), int(line[1])
        for i, conn in enumerate(conns):
            conn.sendall(bytes([i & 0xFF]))
        for i, conn in enumerate(conns):
            got = conn.recv(16)
            if got != bytes([i & 0xFF]):
                sys.exit(f"connection {i} echoed {got!r}, not {bytes([i & 0xFF])!r}")
    finally:
        for conn in conns:
            conn.close()
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    first = max(1, args.conns // 10)
    metrics = {
        "kib_per_conn": (full_kib - tenth_kib) / max(1, args.conns - first),
        "rss_mib": full_kib / 1024,
        "base_rss_mib": base_kib / 1024,
    }
    info: dict[str, Any] = {"loop": args.loop, "conns": args.conns}
    info.update(loop_versions())
    info.update(h.versions())
    h.emit(metrics, info)


if __name__ == "__main__":
    main()
