"""A loopback HTTP server for tests: answers ``GET /path`` with ``<greeting> /path``."""

from __future__ import annotations

import http.server

__all__ = ["Server", "handler"]


class Server(http.server.ThreadingHTTPServer):
    # A listen backlog for hundreds of clients connecting at once (the default 5 makes
    # the kernel drop SYNs, and each retry waits a second or more).
    request_queue_size = 1024


def handler(greeting: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A keep-alive handler whose body is ``f"{greeting} {path}"``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            body = f"{greeting} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
