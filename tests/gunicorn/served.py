"""What the gunicorn worker tests drive: a gunicorn master process on a loopback port,
one-request clients, and an upstream whose answers wait until the test releases them."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUNICORN = [sys.executable, "-m", "gunicorn"]
#: Seconds a test waits for the server before it fails.
TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str, timeout: float = TIMEOUT) -> tuple[int, str]:
    """One request on a new connection: the status and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class Server:
    """A gunicorn master process; ``stop`` ends it with SIGTERM."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def get(self, path: str, timeout: float = TIMEOUT) -> tuple[int, str]:
        return get(self.port, path, timeout)

    def workers(self) -> set[int]:
        """The master's worker processes now."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(child) for child in children}

    def await_workers(self, count: int) -> set[int]:
        """The master's workers once there are ``count`` of them: the master forks them
        one at a time, a little apart, so the first may answer before the last exists."""
        deadline = time.monotonic() + TIMEOUT
        while len(workers := self.workers()) != count:
            assert time.monotonic() < deadline, (workers, self.output())
            time.sleep(0.05)
        return workers

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"gunicorn did not stop:\n{self.output()}") from None
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Upstream:
    """A threaded HTTP server whose answers wait for ``release`` (then answer at once)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.arrived = threading.Semaphore(0)
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.arrived.release()
                upstream.released.wait(TIMEOUT)
                body = b"hello from upstream"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
