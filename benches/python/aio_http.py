"""Workload py.aio.http: a small HTTP/1.1 server on each event loop, under wrk.

    python benches/python/aio_http.py LOOP [--conns N] [--seconds S] [--warmup W]
        [--server-cpu C] [--load-cpu L]
    python benches/python/aio_http.py serve LOOP      (the server, run by the above)

The server is a raw ``asyncio.Protocol`` on LOOP (one of ``_aio_loops.LOOPS``) that
answers every request head (up to its blank line) with the same keep-alive
``200 OK`` of 13 bytes, in one ``transport.write`` per ``data_received`` (pipelined
heads get their answers together). It runs pinned to ``--server-cpu``; ``wrk -t1 -c N``
(from the distribution, as py.gunicorn runs it) to ``--load-cpu``, for ``--warmup``
seconds unmeasured, then ``--seconds`` measured. ``req_per_s`` and ``p99_ms`` are wrk's;
``peak_rss_mib`` is the server's ``VmHWM``.

Checked: before the load, three pipelined requests on one connection get exactly three
copies of the response; during it, any wrk socket error or non-2xx answer fails the run,
as does a server that answered fewer requests than wrk counted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import _harness as h
from _aio_loops import LOOPS, loop_versions, new_loop, serve_until_stdin_closes
from echo import proc_status
from gunicorn_wsgi import parse_wrk

HERE = Path(__file__).resolve().parent
BODY = b"Hello, world!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)
END = b"\r\n\r\n"


async def serve(answered: list[int]) -> None:
    """Serves on a free loopback port (printed first) until stdin closes."""
    loop = asyncio.get_running_loop()

    class Http(asyncio.Protocol):
        def __init__(self) -> None:
            self.pending = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            data = self.pending + data if self.pending else data
            heads = data.count(END)
            if heads:
                self.transport.write(RESPONSE * heads)
                answered[0] += heads
                data = data[data.rindex(END) + len(END) :]
            self.pending = data

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]  # rloop's create_server takes the socket's descriptor
    server = await loop.create_server(Http, sock=sock, backlog=4096)
    print(port, flush=True)
    await serve_until_stdin_closes(server)


def serve_main(loop_name: str) -> None:
    h.raise_nofile(1 << 16)
    answered = [0]
    loop = new_loop(loop_name)
    try:
        loop.run_until_complete(serve(answered))
    finally:
        print(answered[0], flush=True)


def check_responses(port: int) -> None:
    """Three pipelined requests on one connection: three exact responses."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request * 3)
        got = b""
        while len(got) < 3 * len(RESPONSE):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    if got != RESPONSE * 3:
        sys.exit(f"the server answered {got[:200]!r}, not three copies of {RESPONSE!r}")


def wrk(port: int, conns: int, seconds: int, cpu: int) -> str:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c",
            str(conns),
            "-d",
            f"{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        preexec_fn=lambda: h.pin(cpu),
    )
    if done.returncode != 0:
        tail = (done.stderr + done.stdout).strip()[-300:]
        sys.exit(f"wrk failed (exit {done.returncode}): {tail}")
    return done.stdout


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loop", choices=LOOPS)
    parser.add_argument("--conns", type=int, default=1000)
    # wrk takes whole seconds.
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args()
    h.raise_nofile(args.conns + 1024)  # inherited by wrk
    h.pin(args.load_cpu)  # this driver waits on wrk: it stays off the server's CPU
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", args.loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: h.pin(args.server_cpu),
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line.strip():
            sys.exit("the server did not start")
        port = int(line)
        check_responses(port)
        if args.warmup > 0:
            wrk(port, args.conns, args.warmup, args.load_cpu)
        out = wrk(port, args.conns, args.seconds, args.load_cpu)
        status = proc_status(server.pid)
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    answered = int(server.stdout.read().split()[-1])
    metrics: dict[str, Any] = parse_wrk(out)
    total = re.search(r"(\d+) requests in", out)
    if total is None:
        sys.exit(f"unexpected wrk output:\n{out}")
    if metrics["errors"] or answered < int(total.group(1)):
        sys.exit(
            f"{metrics['errors']:.0f} wrk errors; the server answered {answered} requests "
            f"(wrk counted {total.group(1)} in the measured run):\n{out}"
        )
    metrics["peak_rss_mib"] = int(status["VmHWM"].split()[0]) / 1024
    info: dict[str, Any] = {
        "loop": args.loop,
        "conns": args.conns,
        "wrk_requests": int(total.group(1)),
        "server_answered": answered,
        "server_cpu": args.server_cpu,
        "load_cpu": args.load_cpu,
    }
    info.update(loop_versions())
    info.update(h.versions())
    h.emit(metrics, info)


if __name__ == "__main__":
    main()
