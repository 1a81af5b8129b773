"""Workload py.echo: an echo server per peer, 1,000 connections, 1 KiB round trips.

    python benches/python/echo.py PEER [--conns N] [--size B] [--seconds S] [--warmup W]
        [--server-cpu C] [--load-cpu L]

Starts ``echo_server.py PEER`` pinned to ``--server-cpu`` and the load generator
``echo_load.py`` (raw uvloop Protocol) pinned to ``--load-cpu``; the same generator runs
against every peer. (The Rust load generator, ``rbench echo``, starts and drives its own
server child only: it has no mode for a server it did not start.) ``req_per_s`` is the
generator's; ``peak_rss_mib`` (``VmHWM``) and ``os_threads`` (peak, sampled every 20 ms)
are the server's, read from ``/proc``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as h
from echo_server import PEERS

HERE = Path(__file__).resolve().parent


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def load_argv(args: argparse.Namespace, port: int) -> list[str]:
    return [
        sys.executable,
        str(HERE / "echo_load.py"),
        "--port",
        str(port),
        "--conns",
        str(args.conns),
        "--size",
        str(args.size),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--cpu",
        str(args.load_cpu),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args()
    h.pin(args.load_cpu)  # this driver only samples /proc: it stays off the server's CPU
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), args.peer, "--cpu", str(args.server_cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    info: dict[str, Any] = {"peer": args.peer}
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip():
            sys.exit(f"the {args.peer} server did not start (its error is above)")
        port = int(line)
        load = subprocess.Popen(load_argv(args, port), stdout=subprocess.PIPE, text=True)
        peak_threads = 0
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        while load.poll() is None:
            peak_threads = max(peak_threads, len(os.listdir(f"/proc/{server.pid}/task")))
            time.sleep(0.02)
        cpu1, elapsed = cpu_seconds(server.pid), time.perf_counter() - t0
        server_user, server_sys = ((b - a) / elapsed for a, b in zip(cpu0, cpu1))
        status = proc_status(server.pid)
        assert load.stdout is not None
        out = load.stdout.read().strip().splitlines()
        if load.returncode != 0 or not out:
            sys.exit(f"the load generator failed (exit {load.returncode})")
        result = json.loads(out[-1])
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    info.update(
        load_generator="echo_load.py (uvloop Protocol)",
        load=result,
        # CPU share of the server process from its start to the load's end (warm-up
        # included): user and system time over wall time.
        server_user_share=round(server_user, 3),
        server_sys_share=round(server_sys, 3),
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
    )
    info.update(h.versions("gevent", "uvloop", "greenlet"))
    h.emit(
        {
            "req_per_s": float(result["req_per_s"]),
            "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
            "os_threads": peak_threads,
        },
        info,
    )


if __name__ == "__main__":
    main()
