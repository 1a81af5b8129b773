"""Unmodified uvicorn, aiohttp (server and client) and httpx on the ringloom loop, on the
main thread and in a virtual thread."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

import aiohttp
import httpx
import uvicorn
from aiohttp import web

# The ``run_loop`` fixture (conftest.py): runs a coroutine function on a new loop.
RunLoop = Callable[..., Any]

REQUESTS = 50


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``/n`` with ``n*2`` and the loop's class name."""
    if scope["type"] != "http":
        return
    n = int(scope["path"].strip("/") or 0)
    body = f"{n * 2} {type(asyncio.get_running_loop()).__name__}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_uvicorn_served_to_httpx_and_aiohttp(run_loop: RunLoop) -> None:
    async def main() -> tuple[list[str], list[str]]:
        port = _free_port()
        config = uvicorn.Config(
            _asgi_app, host="127.0.0.1", port=port, loop="none", log_level="warning"
        )
        server = uvicorn.Server(config)
        # Signal handlers are the caller's (and only the main thread may install any).
        server.install_signal_handlers = lambda: None
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.001)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            replies = await asyncio.gather(*(client.get(f"/{n}") for n in range(REQUESTS)))
            via_httpx = [r.text for r in replies]
        async with aiohttp.ClientSession(base) as session:

            async def fetch(n: int) -> str:
                async with session.get(f"/{n}") as response:
                    return str(await response.text())

            via_aiohttp = list(await asyncio.gather(*(fetch(n) for n in range(REQUESTS))))
        server.should_exit = True
        await serving
        return via_httpx, via_aiohttp

    via_httpx, via_aiohttp = run_loop(main)
    expected = [f"{n * 2} RingEventLoop" for n in range(REQUESTS)]
    assert via_httpx == expected
    assert via_aiohttp == expected


def test_aiohttp_server_and_client(run_loop: RunLoop) -> None:
    async def handler(request: Any) -> Any:
        data = await request.read()
        loop = type(asyncio.get_running_loop()).__name__
        return web.Response(body=data[::-1] + b" " + loop.encode())

    async def main() -> list[bytes]:
        app = web.Application()
        app.router.add_post("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = _free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def post(n: int) -> bytes:
                    url = f"http://127.0.0.1:{port}/"
                    async with session.post(url, data=b"abc%d" % n) as response:
                        return bytes(await response.read())

                return list(await asyncio.gather(*(post(n) for n in range(REQUESTS))))
        finally:
            await runner.cleanup()

    assert run_loop(main) == [(b"abc%d" % n)[::-1] + b" RingEventLoop" for n in range(REQUESTS)]
