"""Workload py.gunicorn: gunicorn serving a Flask view that calls a 20 ms upstream.

    python benches/python/gunicorn_wsgi.py PEER [--workers W] [--conns N] [--seconds S]
        [--upstream-ms M] [--server-cpu C] [--load-cpu L]

PEER is the gunicorn worker: ``ringloom`` (``-k ringloom.gunicorn.Worker``), ``gevent``
(``-k gevent``), ``gthread`` (``-k gthread --threads 100``) or ``sync``. The view
(``wsgi_app.py``) makes one ``requests.get`` to a loopback upstream that answers after
``--upstream-ms`` (an asyncio server in its own process). gunicorn's master and workers
are pinned to ``--server-cpu``; the upstream and ``wrk`` (``-t1 -c N``, from the
distribution) to ``--load-cpu``. ``req_per_s`` and ``p99_ms`` are wrk's; ``rss_mib_per_worker``
is each worker's resident size under load, read from ``/proc`` every half second from 30%
to 90% of the run (at least once), the median of each worker's readings averaged over the
workers: one reading moved by 10 MiB between runs as requests came and went; ``errors``
counts wrk's socket errors and non-2xx answers.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as h

HERE = Path(__file__).resolve().parent
PEERS = ("ringloom", "gevent", "gthread", "sync")

UPSTREAM = """
import asyncio, sys
DELAY = float(sys.argv[2]) / 1000
BODY = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok"

async def serve(reader, writer):
    try:
        await reader.readuntil(b"\\r\\n\\r\\n")
        await asyncio.sleep(DELAY)
        writer.write(BODY)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def worker_args(peer: str, conns: int) -> list[str]:
    if peer == "ringloom":
        return ["-k", "ringloom.gunicorn.Worker", "--worker-connections", str(conns + 200)]
    if peer == "gevent":
        return ["-k", "gevent", "--worker-connections", str(conns + 200)]
    if peer == "gthread":
        return ["-k", "gthread", "--threads", "100"]
    return ["-k", "sync"]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker_rss(master: int, seconds: float) -> list[float]:
    """Each worker's median resident size (MiB) over readings every half second from 30%
    to 90% of a load of ``seconds`` that starts now (at least one reading)."""
    start = time.monotonic()
    time.sleep(seconds * 0.3)
    readings: dict[int, list[float]] = {}
    while True:
        for pid in children(master):
            readings.setdefault(pid, []).append(rss_mib(pid))
        if time.monotonic() - start + 0.5 > seconds * 0.9:
            break
        time.sleep(0.5)
    return [statistics.median(values) for values in readings.values()]


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                if b" 200 " in conn.recv(64):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing answered on port {port}")
        time.sleep(0.1)


def parse_wrk(text: str) -> dict[str, float]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
    if rate is None or p99 is None:
        raise SystemExit(f"unexpected wrk output:\n{text}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    return {
        "req_per_s": float(rate.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "errors": float(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--upstream-ms", type=float, default=20)
    parser.add_argument("--server-cpu", type=int, default=None)
    parser.add_argument("--load-cpu", type=int, default=None)
    args = parser.parse_args()
    h.raise_nofile(4 * args.conns + 1024)  # inherited by the servers and wrk

    upstream_port, port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(upstream_port), str(args.upstream_ms)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: h.pin(args.load_cpu),
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == b"ready"
        env = {**os.environ, "UPSTREAM": f"http://127.0.0.1:{upstream_port}/"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *worker_args(args.peer, args.conns),
                "-w",
                str(args.workers),
                "-b",
                f"127.0.0.1:{port}",
                "--chdir",
                str(HERE),
                "--backlog",
                "4096",
                "--timeout",
                "120",
                "--log-level",
                "warning",
                "wsgi_app:app",
            ],
            env=env,
            preexec_fn=lambda: h.pin(args.server_cpu),
        )
        wait_http(port, "/")
        # Warm-up: every worker has imported requests and made a connection.
        subprocess.run(
            [
                "wrk",
                "-t1",
                "-c",
                str(min(args.conns, 100)),
                "-d",
                "2s",
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            check=True,
            preexec_fn=lambda: h.pin(args.load_cpu),
        )
        wrk = subprocess.Popen(
            [
                "wrk",
                "-t1",
                "-c",
                str(args.conns),
                "-d",
                f"{args.seconds}s",
                "--latency",
                "--timeout",
                "10s",
                f"http://127.0.0.1:{port}/",
            ],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: h.pin(args.load_cpu),
        )
        rss = worker_rss(server.pid, args.seconds)
        workers = children(server.pid)
        out, _ = wrk.communicate(timeout=args.seconds + 60)
        metrics: dict[str, Any] = parse_wrk(out)
        metrics["rss_mib_per_worker"] = sum(rss) / max(1, len(rss))
        info = {
            "workers": args.workers,
            "conns": args.conns,
            "upstream_ms": args.upstream_ms,
            "worker_pids_seen": len(workers),
            **h.versions("gunicorn", "flask", "requests", "gevent", "greenlet"),
        }
        h.emit(metrics, info)
    finally:
        for process in (server, upstream):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM if process is server else signal.SIGKILL)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    main()
