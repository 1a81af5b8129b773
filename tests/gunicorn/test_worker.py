"""``gunicorn -k ringloom.gunicorn.Worker`` serving a Flask app whose views block the
stock way: a real master on loopback, real clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time

from served import TIMEOUT, Server, Upstream

CLIENTS = 2000


async def _keepalive_client(port: int, client: int, met: asyncio.Event, ready: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for round_ in range(3):
            text = f"c{client}r{round_}"
            writer.write(f"GET /echo/{text} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = (await reader.readexactly(length)).decode()
            assert body.split()[0] == text, (text, body)
            assert b"connection: close" not in head.lower()
            if round_ == 0:
                # Every client holds its connection open until all have had an answer.
                ready[0] += 1
                if ready[0] == CLIENTS:
                    met.set()
                await met.wait()
    finally:
        writer.close()


def test_thousands_of_kept_alive_clients_each_get_their_own_answers(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("--worker-connections", "3000", "--keep-alive", "60", "-w", "2")

    async def main() -> None:
        met, ready = asyncio.Event(), [0]
        clients = [_keepalive_client(server.port, i, met, ready) for i in range(CLIENTS)]
        await asyncio.wait_for(asyncio.gather(*clients), TIMEOUT * 2)

    asyncio.run(main())


def test_requests_rendezvous_inside_one_worker(serve) -> None:  # type: ignore[no-untyped-def]
    """500 requests all inside one view of one worker process at once: a worker that
    served a connection at a time (or a few) would never let the barrier open."""
    parties = 500
    server = serve("--worker-connections", "1000", "-w", "1")
    with concurrent.futures.ThreadPoolExecutor(parties) as clients:
        answers = list(clients.map(lambda _: server.get(f"/rendezvous/{parties}"), range(parties)))
    assert answers == [(200, "met")] * parties


def test_a_slow_view_and_an_upstream_call_hold_back_no_one(serve, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    server = serve("-w", "1", "--graceful-timeout", "1", env={"UPSTREAM": upstream.url})
    with concurrent.futures.ThreadPoolExecutor(4) as clients:
        slow = clients.submit(server.get, "/sleep/3600.0")
        calling = clients.submit(server.get, "/upstream")
        # The view is parked in requests, waiting on the upstream.
        assert upstream.arrived.acquire(timeout=TIMEOUT)
        quick = [server.get(f"/echo/q{i}") for i in range(50)]
        assert [body.split()[0] for _, body in quick] == [f"q{i}" for i in range(50)]
        assert not calling.done() and not slow.done()
        upstream.released.set()
        assert calling.result(TIMEOUT) == (200, "upstream said hello from upstream")
        assert not slow.done()
        server.stop()  # the sleeper outlasts graceful_timeout: its connection closes
        assert isinstance(slow.exception(TIMEOUT), OSError)


def test_a_view_that_raises_gives_500_and_the_worker_lives(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("-w", "1")
    pid = server.get("/pid")
    status, _ = server.get("/boom")
    assert status == 500
    assert server.get("/pid") == pid
    assert "a view that fails" in server.output()


def test_the_heartbeat_goes_on_while_a_view_is_parked(serve) -> None:  # type: ignore[no-untyped-def]
    """A view parked longer than ``--timeout``: the master keeps the worker."""
    server = serve("-w", "1", "--timeout", "2")
    _, pid = server.get("/pid")
    status, body = server.get("/sleep/5.0")
    assert status == 200
    assert body == f"slept 5.0 {pid}"
    assert "WORKER TIMEOUT" not in server.output()


def test_max_requests_restarts_the_worker_without_failing_a_request(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("-w", "1", "--max-requests", "20")
    pids = set()
    for i in range(70):
        status, body = server.get(f"/echo/m{i}")
        assert status == 200
        assert body.split()[0] == f"m{i}"
        pids.add(body.split()[1])
    assert len(pids) >= 3
    assert "Autorestarting worker after current request" in server.output()


def test_sigterm_lets_the_requests_in_flight_finish(serve, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    server = serve("-w", "1", "--graceful-timeout", "60", env={"UPSTREAM": upstream.url})
    with concurrent.futures.ThreadPoolExecutor(1) as client:
        in_flight = client.submit(server.get, "/upstream")
        assert upstream.arrived.acquire(timeout=TIMEOUT)  # it is inside the view
        server.signal(signal.SIGTERM)
        # Stopping: new connections are no longer served...
        assert not in_flight.done()
        upstream.released.set()
        # ...but the one in flight finishes.
        assert in_flight.result(TIMEOUT) == (200, "upstream said hello from upstream")
    assert server.stop() == 0


def test_a_reload_under_load_drops_no_request(serve) -> None:  # type: ignore[no-untyped-def]
    server: Server = serve("-w", "2", "--graceful-timeout", "30")
    old = server.await_workers(2)
    failures: list[BaseException] = []
    answered = [0]
    stop = threading.Event()

    def load(client: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                status, body = server.get(f"/echo/l{client}-{i}")
                assert status == 200 and body.split()[0] == f"l{client}-{i}", body
                answered[0] += 1
            except BaseException as err:  # noqa: BLE001 - every failure is the test's
                failures.append(err)
            i += 1

    threads = [threading.Thread(target=load, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    try:
        before = answered[0]
        server.signal(signal.SIGHUP)
        # Done once the master's workers are two new ones, and they have served.
        deadline = time.monotonic() + TIMEOUT
        while (workers := server.workers()) & old or len(workers) != 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        reloaded = answered[0]
        while answered[0] < reloaded + 100:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        assert "Handling signal: hup" in server.output()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    assert answered[0] > before


def test_preload_with_patching_in_the_config_file(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--preload`` imports the app in the master: patching in gunicorn.conf.py makes
    the locks and barriers it creates at import cooperative too."""
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("import ringloom.monkey\n\nringloom.monkey.patch_all()\n")
    server = serve("-c", str(config), "--preload", "-w", "1", "--worker-connections", "200")
    parties = 100
    with concurrent.futures.ThreadPoolExecutor(parties) as clients:
        answers = list(clients.map(lambda _: server.get(f"/rendezvous/{parties}"), range(parties)))
    assert answers == [(200, "met")] * parties
    assert "GET /rendezvous/100" in server.output()  # the access log
