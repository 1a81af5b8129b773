"""Fixtures: ``serve`` starts a real gunicorn master with ringloom's worker (stopped
after the test), ``upstream`` a blocking server for views to call."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from served import GUNICORN, HERE, TIMEOUT, Server, Upstream, free_port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(*gunicorn_args, env=...)`` starts a master serving ``app:app`` and
    returns once it answers."""
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        argv = [
            *GUNICORN,
            "-k",
            "ringloom.gunicorn.Worker",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(HERE),
            "--access-logfile",
            "-",
            *args,
            "app:app",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        server = Server(process, port, log)
        servers.append(server)
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{server.output()}"
            try:
                if server.get("/pid", timeout=5)[0] == 200:
                    return server
            except OSError:
                pass
            assert time.monotonic() < deadline, f"gunicorn never answered:\n{server.output()}"
            time.sleep(0.05)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


# Kept-alive connections by the thousand: this process and the server (which inherits
# the limit) need descriptors.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < 8192 <= _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, _hard))
