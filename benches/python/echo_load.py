"""The load generator of py.echo: a raw uvloop Protocol client, one process.

    python benches/python/echo_load.py --port P [--conns N] [--size B] [--seconds S]
        [--warmup W] [--cpu C]

Opens N connections; each sends B bytes, waits until B bytes came back, checks that
they are the bytes it sent, and sends again; a wrong byte or a connection the server
closed fails the run (exit status not 0). Round trips completed between the end of the
warm-up and the end of the run are counted. The last stdout line is JSON: ``req_per_s``,
``requests``, ``seconds``, ``cpu_share`` (this process's CPU time over the run; near 1.0
means the load generator, not the server, may be the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from typing import cast

import _harness as h


class Client(asyncio.Protocol):
    """Sends the payload, checks that what comes back is the payload, byte for byte (a
    reply may arrive in several chunks), and sends it again."""

    def __init__(self, payload: bytes, counter: list[int], failures: list[str]) -> None:
        self.payload = payload
        self.size = len(payload)
        self.counter = counter
        self.failures = failures
        self.received = 0
        self.closing = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        if not self.payload.startswith(data, self.received):
            self.failures.append(
                f"{len(data)} bytes at offset {self.received} are not the payload's"
            )
            assert self.transport is not None
            self.transport.abort()
            return
        self.received += len(data)
        if self.received == self.size:
            self.counter[0] += 1
            self.received = 0
            assert self.transport is not None
            self.transport.write(self.payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.failures.append(f"the server closed a connection ({exc!r})")


async def run(port: int, conns: int, size: int, seconds: float, warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    base = os.urandom(size)
    counter = [0]
    failures: list[str] = []
    clients: list[Client] = []

    def client() -> Client:
        # Each connection's payload starts with its number: a reply sent on the wrong
        # connection does not pass for the right one.
        number = len(clients).to_bytes(8, "little")[:size]
        clients.append(Client(number + base[len(number) :], counter, failures))
        return clients[-1]

    transports = []
    for start in range(0, conns, 100):  # a burst of 100 at a time: no backlog overflow
        batch = [
            loop.create_connection(client, "127.0.0.1", port)
            for _ in range(min(100, conns - start))
        ]
        transports += [t for t, _ in await asyncio.gather(*batch)]
    await asyncio.sleep(warmup)
    first, t0, cpu0 = counter[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    done, elapsed = counter[0] - first, time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for each in clients:
        each.closing = True
    for transport in transports:
        transport.close()
    if failures:
        raise SystemExit(f"{len(failures)} failures, the first: {failures[0]}")
    return {
        "req_per_s": done / elapsed,
        "requests": done,
        "seconds": round(elapsed, 3),
        "cpu_share": round(cpu / elapsed, 3),
        "conns": conns,
        "size": size,
        "client": "echo_load.py (uvloop Protocol)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=1, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    h.pin(args.cpu)
    h.raise_nofile(args.conns + 1024)
    import uvloop

    loop = uvloop.new_event_loop()
    result = loop.run_until_complete(
        run(args.port, args.conns, args.size, args.seconds, args.warmup)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
