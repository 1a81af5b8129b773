"""The event loops the ``py.aio.*`` workloads compare, by name: ``asyncio`` (the stock
unix selector loop over epoll), ``uvloop``, ``rloop`` and ``ringloom``
(``ringloom.asyncio.RingEventLoop``, on the calling OS thread).

rsloop, which the issue also names, is not among them: it does not install here (its
source build wants a different nightly Rust than the machine has).
"""

from __future__ import annotations

import asyncio
import sys

LOOPS = ("asyncio", "uvloop", "rloop", "ringloom")


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop of the named kind; exits with the reason if that loop's package
    is not installed (the runner then records the row as unavailable, with that line)."""
    try:
        if name == "asyncio":
            return asyncio.SelectorEventLoop()
        if name == "uvloop":
            import uvloop

            return uvloop.new_event_loop()
        if name == "rloop":
            import rloop

            return rloop.new_event_loop()  # type: ignore[no-any-return]
        if name == "ringloom":
            import ringloom.asyncio

            return ringloom.asyncio.new_event_loop()
    except ImportError as err:
        sys.exit(f"{name} unavailable: {err} (the suite's pip install of it failed or did not run)")
    raise SystemExit(f"unknown loop {name!r} (one of {', '.join(LOOPS)})")


def loop_versions() -> dict[str, str]:
    """The versions of the loops' packages that import here."""
    out: dict[str, str] = {}
    for module in ("uvloop", "rloop"):
        try:
            out[module] = str(getattr(__import__(module), "__version__", "?"))
        except ImportError:
            out[module] = "not installed"
    return out


async def serve_until_stdin_closes(server: asyncio.AbstractServer) -> None:
    """Serves until the driver closes this process's stdin (how it says stop), then
    closes ``server``."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    class Stdin(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            closed.set_result(None)

    await loop.connect_read_pipe(Stdin, sys.stdin)
    await closed
    server.close()
