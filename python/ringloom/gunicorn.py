"""A gunicorn worker that serves each connection in a virtual thread.

``gunicorn -k ringloom.gunicorn.Worker app:app`` runs a WSGI app (Flask, Django, ...)
unmodified: each connection is handled in a virtual thread, so a view that sleeps,
queries a database or calls another service with ``requests`` parks on the ring instead
of holding an OS thread, and one worker process serves thousands of connections at once.

What the worker does, in gunicorn's terms:

- **Patching**: ``ringloom.monkey.patch_all()`` in the worker process before the app is
  imported (stock locks, queues, events and ``threading.local`` become cooperative). With
  ``--preload`` the app is imported in the master first, so objects it makes at import
  stay stock: patch in ``gunicorn.conf.py`` then (``import ringloom.monkey;
  ringloom.monkey.patch_all()`` at its top), as with gevent.
- **worker_connections**: at most that many connections are served at once per worker;
  beyond it the worker stops accepting and the kernel's backlog holds the rest.
- **Keep-alive**: an idle connection is closed after ``keepalive`` seconds.
- **timeout**: the worker's main thread heartbeats every second while requests are in
  flight (a view parked for minutes is not a stuck worker), and exits if its master
  goes away.
- **Shutdown**: SIGTERM (and ``max_requests``, and a SIGHUP reload in the master) stops
  accepting, lets the requests in flight finish for up to ``graceful_timeout``, then exits;
  SIGQUIT and SIGINT exit at once.

Example::

    gunicorn -k ringloom.gunicorn.Worker --worker-connections 2000 -w 2 app:app
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
from typing import Any

from gunicorn.sock import ssl_wrap_socket
from gunicorn.workers.base_async import AsyncWorker

from ringloom import monkey
from ringloom.sync import Semaphore
from ringloom.virtual_thread import VirtualThreadPool

__all__ = ["Worker", "platform_threads"]

#: How long an acceptor waits in ``accept`` before it looks whether the worker is
#: stopping, and how often the main thread heartbeats.
TICK = 1.0

# accept() errors that concern one connection, not the listener: try the next one.
_TRANSIENT_ACCEPT_ERRORS = (errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN, errno.EINTR)
# Out of descriptors or memory: wait a tick for connections to close, then accept again.
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def platform_threads() -> int:
    """Runtime workers (OS threads) per gunicorn worker: ``RINGLOOM_GUNICORN_THREADS``,
    default 1. A worker process has one GIL: a second OS thread mostly waits for it, so
    scale with gunicorn's ``-w`` as with gevent; more threads help views that spend long
    in C code that releases the GIL."""
    value = os.environ.get("RINGLOOM_GUNICORN_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"RINGLOOM_GUNICORN_THREADS must be a positive integer, not {value!r}")
    return threads


class Worker(AsyncWorker):  # type: ignore[misc]
    """gunicorn's async worker with virtual threads for connections (see the module)."""

    def init_process(self) -> None:
        # Before gunicorn imports the app (super().init_process loads it).
        monkey.patch_all()
        self._pool = VirtualThreadPool(
            max_platform_threads=platform_threads(), watchdog_threshold=None
        )
        self._slots = Semaphore(self.worker_connections)
        # One token per connection being served (set.add and discard are atomic).
        self._active: set[object] = set()
        super().init_process()

    def timeout_ctx(self) -> contextlib.AbstractContextManager[Any]:
        # The wait for the next request on a kept-alive connection: a timeout there ends
        # the connection quietly (the request stays None), as gevent's worker does.
        return contextlib.suppress(TimeoutError)

    def run(self) -> None:
        for listener in self.sockets:
            listener.settimeout(TICK)
            self._pool.submit(self._accept_loop, listener)
        try:
            while self.alive:
                self._heartbeat()
                time.sleep(TICK)
            self._drain()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _heartbeat(self) -> None:
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    def _drain(self) -> None:
        """Stops accepting (the acceptors see ``alive`` within a tick) and waits, up to
        ``graceful_timeout``, for the connections in flight to end."""
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self._active and time.monotonic() < deadline:
            self._heartbeat()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if self._active:
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)

    def _accept_loop(self, listener: Any) -> None:
        """One per listening socket, in a virtual thread: a slot, then a connection."""
        while self.alive:
            if not self._slots.acquire(timeout=TICK):
                continue
            try:
                client, address = listener.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError as err:
                self._slots.release()
                if not self.alive:
                    return
                if err.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue
                if err.errno in _RESOURCE_ERRORS:
                    self.log.error("accept() failed (%s); trying again in %ss", err, TICK)
                    time.sleep(TICK)
                    continue
                raise
            token = object()
            self._active.add(token)
            self._pool.submit(self._serve, listener, client, address, token)

    def _serve(self, listener: Any, client: socket.socket, address: Any, token: object) -> None:
        try:
            # The wait for a request is bounded by keepalive, the rest blocks (parks)
            # as stock.
            client.settimeout(self.cfg.keepalive or None)
            if self.cfg.is_ssl:
                client = ssl_wrap_socket(client, self.cfg)
            self.handle(listener, client, address)
        except OSError as err:
            # A TLS setup that failed: the connection's problem, not the worker's.
            self.log.debug("Connection from %s failed: %s", address, err)
            client.close()
        finally:
            self._active.discard(token)
            self._slots.release()

    def handle_request(self, listener_name: Any, req: Any, sock: socket.socket, addr: Any) -> bool:
        # The app reads the body and writes the response without the keep-alive bound.
        sock.settimeout(None)
        try:
            handled: bool = super().handle_request(listener_name, req, sock, addr)
        except SystemExit:
            # A view that calls sys.exit ends its connection, not the worker.
            return False
        if self.cfg.keepalive:
            sock.settimeout(self.cfg.keepalive)
        return handled
